// Planning for one InferenceTask: observed state in, desired status and the writes that get
// there out. Pure (no I/O, the clock is an argument) so every transition is a table test.
import {
  type Condition,
  type InferenceTask,
  type InferenceTaskStatus,
  type Step,
  type StepPhase,
  type StepStatus,
  TASK_FINALIZER,
  type TaskPhase,
} from "../api/v1alpha1/index.ts";
import type { AuditEventKind, AuditOutcome } from "../audit/facts.ts";
import { cachedBool } from "../expr/cel.ts";
import { jobName } from "../jobs/job-builder.ts";
import { scrubOutputs } from "../jobs/trust.ts";
import { MISSING_OUTPUT, missingOutputMessage, missingOutputs } from "./required-outputs.ts";
import { planReview, REVIEW_TIMEOUT, reviewCondition, reviewEvents } from "./review.ts";

export const FINALIZER = TASK_FINALIZER;

/** What the Job informer tells about a step's Job. */
export interface JobView {
  name: string;
  step: string;
  active: number;
  succeeded: number;
  failed: number;
  suspended: boolean;
  deleting: boolean;
  /** when the Job was created (RFC 3339) */
  created?: string;
  complete?: { reason?: string; message?: string; at?: string };
  failedCondition?: { reason?: string; message?: string };
}

/** What the Pod informer tells about a step's pods. */
export interface PodView {
  name: string;
  step: string;
  phase: string; // Pending | Running | Succeeded | Failed | Unknown
  created: string;
  unschedulable?: string; // the scheduler's message
  /** when the model container started running (RFC 3339) */
  runningSince?: string;
  /** when the scheduler bound the pod to a node (RFC 3339): the kubelet's clock to start it runs from here */
  scheduledAt?: string;
  /** why the kubelet has not started the model container (ImagePullBackOff…) */
  waiting?: { reason: string; message?: string };
  terminated?: { exitCode: number; reason?: string; message?: string };
}

export interface PlanInput {
  task: InferenceTask;
  jobs: JobView[];
  pods: PodView[];
  now: number;
  /** how many new step Jobs this task may start now (the dispatcher's answer) */
  capacity: number;
  /** the extended resource that GPUs are (nvidia.com/gpu) */
  gpuResource?: string;
  /** results must be published before a finished task may be deleted by its TTL */
  resultsRequired?: boolean;
  terminationMessageMaxBytes?: number;
  /** how long a scheduled pod may fail to start its container (image pull, config) before the step fails */
  startTimeoutSeconds?: number;
  /** a finished task's TTL when its workflow sets none; undefined or 0: kept */
  defaultTtlSeconds?: number;
  /** steps whose Job name is held by an object that is not this task's Job (step → what holds it) */
  jobConflicts?: Record<string, string>;
  /** steps whose Job create the API server refused (step → why, no PHI; permanent: it never will accept it) */
  jobCreateFailures?: Record<string, { message: string; permanent: boolean }>;
  /** why the task's storage may not be used (src/jobs/trust.ts): a step that would start fails instead */
  storageRefusal?: string;
}

export interface PlannedEvent {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

export interface PlannedAudit {
  kind: AuditEventKind;
  outcome: AuditOutcome;
  step?: string;
  reason?: string;
  description?: string;
}

export interface Plan {
  status: InferenceTaskStatus;
  create: { step: Step; inputs: Record<string, Record<string, unknown>> }[];
  deleteJobs: string[];
  /** steps that are ready but were not admitted (capacity 0) */
  waitingForCapacity: boolean;
  requeueAfterMs?: number;
  events: PlannedEvent[];
  audits: PlannedAudit[];
  addFinalizer: boolean;
  removeFinalizer: boolean;
  deleteTask: boolean;
  publishResults: boolean;
  /** a complete Job's pod is missing from the cache: plan again with pods read from the API server */
  needsLivePods?: boolean;
}

/** Waiting reasons of a scheduled container that will not go away by themselves (a wrong image,
 * a missing Secret, a root image under runAsNonRoot): shown at once, failed after the start timeout.
 * ContainerCreating and PodInitializing are normal progress and not here. */
export const START_FAILURES: ReadonlySet<string> = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
]);

export const DEFAULT_START_TIMEOUT_SECONDS = 300;

/** Step names for status.currentStep, which holds at most 256 characters: "a,b +5" when they do not fit. */
export function summariseSteps(names: readonly string[], max = 256): string {
  const all = names.join(",");
  if (all.length <= max) return all;
  let out = `+${names.length}`;
  for (let i = 1; i < names.length; i++) {
    const candidate = `${names.slice(0, i).join(",")} +${names.length - i}`;
    if (candidate.length > max) break;
    out = candidate;
  }
  return out;
}

const TERMINAL_TASK: ReadonlySet<TaskPhase> = new Set(["Succeeded", "Failed", "Canceled"]);
/** Step failure reasons that name the task's failure too (otherwise it is StepFailed). */
const PROPAGATED_REASONS: ReadonlySet<string> = new Set([
  "DeadlineExceeded",
  "ConditionError",
  "JobNameConflict",
  "OutputsLost",
  "StorageNotAllowed",
  MISSING_OUTPUT,
  REVIEW_TIMEOUT,
]);
const DONE_STEP: ReadonlySet<StepPhase> = new Set(["Succeeded", "Skipped"]);
const FINISHED_STEP: ReadonlySet<StepPhase> = new Set(["Succeeded", "Skipped", "Failed", "Canceled"]);

export function isTerminal(phase: TaskPhase | undefined): boolean {
  return phase !== undefined && TERMINAL_TASK.has(phase);
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export function formatDuration(ms: number): string {
  let s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}

/** A step's termination message → outputs: a JSON object of at most maxBytes, or an error. */
export function parseOutputs(
  message: string | undefined,
  maxBytes: number,
): { ok: true; outputs: Record<string, unknown> } | { ok: false; error: string } {
  const m = (message ?? "").trim();
  if (m === "") return { ok: true, outputs: {} };
  if (Buffer.byteLength(m, "utf8") > maxBytes) {
    return { ok: false, error: `termination message is larger than ${maxBytes} bytes` };
  }
  let v: unknown;
  try {
    v = JSON.parse(m);
  } catch (e) {
    // V8's message quotes the text around the error, and a model may print patient data there;
    // this error goes to status, an Event and an audit description (no PHI): keep the position only
    const where = /at position \d+/.exec((e as Error).message)?.[0];
    return { ok: false, error: `termination message is not valid JSON${where ? ` (${where})` : ""}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { ok: false, error: "termination message must be a JSON object" };
  }
  return scrubOutputs(v as Record<string, unknown>); // no allowed Secret value, bounded depth (src/jobs/trust.ts)
}

/** A step's state as its Job and pods show it; undefined when the step has no Job. */
/** How long a complete Job may wait for its Succeeded pod to show in the cache before the step
 * is concluded without outputs (the pod was garbage-collected while radflow was away). */
const POD_VISIBILITY_GRACE_MS = 60_000;

type Observed = Pick<StepStatus, "phase" | "reason" | "message" | "outputs" | "attempts"> & {
  /** a pod of the step has run: the queue timeout no longer applies */
  ran: boolean;
  /** when to look at the step again without an informer event (epoch ms): a run deadline, a pod awaited */
  recheckAt?: number;
  /** the Job is complete but its Succeeded pod is not in the cache */
  awaitingPod?: boolean;
};

/** A step's state as its Job and pods show it; undefined when the step has no Job. */
function observeStep(
  job: JobView | undefined,
  pods: PodView[],
  before: StepStatus | undefined,
  now: number,
  maxBytes: number,
  timeoutSeconds: number,
  gpuResource: string,
  startTimeoutSeconds: number,
): Observed | undefined {
  if (!job) return undefined;
  const attempts = Math.max(pods.length, job.active + job.succeeded + job.failed);
  const ran = job.succeeded + job.failed > 0 || pods.some((p) => p.phase !== "Pending");
  if (job.complete) {
    if (before?.phase === "Succeeded") return { ...before, ran: true }; // outputs were recorded: keep them
    const pod = pods.find((p) => p.phase === "Succeeded");
    if (!pod) {
      // The Job's update can arrive before its pod's: wait for the termination message.
      const since = job.complete.at ? Date.parse(job.complete.at) : now;
      if (now - since < POD_VISIBILITY_GRACE_MS) {
        // look again soon, reading pods from the API server (the cache may have missed one)
        const recheckAt = Math.min(now + 2_000, since + POD_VISIBILITY_GRACE_MS);
        return {
          phase: "Running",
          reason: "Completing",
          message: "reading the model's outputs",
          attempts,
          ran,
          recheckAt,
          awaitingPod: true,
        };
      }
      // The pod (and its termination message) is gone: the outputs are unknown, not empty. A
      // success without outputs would publish "succeeded" with no findings and let later steps'
      // `when` read missing outputs as a negative result; fail loudly instead.
      return {
        phase: "Failed",
        reason: "OutputsLost",
        message:
          "the Job completed but its pod was deleted before radflow read the model's outputs (termination message); rerun the study",
        attempts,
        ran,
      };
    }
    const out = parseOutputs(pod.terminated?.message, maxBytes);
    if (!out.ok) return { phase: "Failed", reason: "InvalidOutput", message: out.error, attempts, ran };
    return { phase: "Succeeded", reason: "Completed", outputs: out.outputs, attempts, ran };
  }
  if (job.failedCondition) {
    const last = [...pods]
      .filter((p) => p.phase === "Failed")
      .sort((a, b) => a.created.localeCompare(b.created))
      .pop();
    const t = last?.terminated;
    const podPart = t
      ? `model container exited with code ${t.exitCode}${t.reason ? ` (${t.reason})` : ""}`
      : (job.failedCondition.message ?? "the Job failed");
    const reason =
      job.failedCondition.reason === "DeadlineExceeded"
        ? "DeadlineExceeded"
        : (t?.reason ?? job.failedCondition.reason ?? "JobFailed");
    return {
      phase: "Failed",
      reason,
      message: `${podPart}; ${attempts} attempt${attempts === 1 ? "" : "s"}; Job: ${job.failedCondition.reason ?? "Failed"}`,
      attempts,
      ran,
    };
  }
  if (job.suspended)
    return {
      phase: "Pending",
      reason: "AwaitingAdmission",
      message: "Job suspended until Kueue admits it",
      attempts,
      ran,
    };
  const running = pods.find((p) => p.phase === "Running");
  if (running) {
    // timeoutSeconds limits the model's run, not its wait for a GPU: measured from container start
    const since = running.runningSince ? Date.parse(running.runningSince) : now;
    if (now - since > timeoutSeconds * 1000) {
      return {
        phase: "Failed",
        reason: "DeadlineExceeded",
        message: `the model ran longer than timeoutSeconds=${timeoutSeconds}`,
        attempts,
        ran,
      };
    }
    return { phase: "Running", reason: "Running", attempts, ran, recheckAt: since + timeoutSeconds * 1000 };
  }
  // a pod finished and the Job controller has not decided yet (done, or a retry coming)
  if (pods.some((p) => p.phase === "Succeeded")) return { phase: "Running", reason: "Completing", attempts, ran };
  const waiting = pods.find((p) => p.phase === "Pending" && p.unschedulable);
  if (waiting) {
    // only a shortage of GPUs is a GPU wait; a missing volume or a selector nothing matches is
    // something else, and saying "GPU" would send the on-call engineer to the wrong place
    const gpu = (waiting.unschedulable as string).includes(gpuResource);
    return {
      phase: gpu ? "WaitingForGPU" : "Pending",
      reason: "Unschedulable",
      message: waiting.unschedulable,
      attempts,
      ran,
    };
  }
  const stuck = pods.find((p) => p.phase === "Pending" && p.waiting && START_FAILURES.has(p.waiting.reason));
  if (stuck?.waiting) {
    // the kubelet cannot start the container: say why at once, fail when it has had long enough
    const since = Date.parse(stuck.scheduledAt ?? stuck.created) || now;
    const what = `${stuck.waiting.reason}${stuck.waiting.message ? `: ${stuck.waiting.message}` : ""}`;
    const waited = Math.round((now - since) / 1000);
    if (now - since >= startTimeoutSeconds * 1000) {
      return {
        phase: "Failed",
        reason: stuck.waiting.reason,
        message:
          `the model container did not start within ${waited}s (start timeout ${startTimeoutSeconds}s): ${what}`.slice(
            0,
            1024,
          ),
        attempts,
        ran,
      };
    }
    return {
      phase: "Pending",
      reason: stuck.waiting.reason,
      message: `the model container cannot start: ${what}`.slice(0, 1024),
      attempts,
      ran,
      recheckAt: since + startTimeoutSeconds * 1000,
    };
  }
  if (ran)
    return { phase: "Running", reason: "Retrying", message: "an attempt failed; the Job is retrying", attempts, ran };
  return { phase: "Pending", reason: "Starting", message: "Job created; pod not running yet", attempts, ran };
}

function condition(
  prev: Condition[] | undefined,
  type: string,
  status: Condition["status"],
  reason: string,
  message: string,
  now: number,
  generation: number | undefined,
): Condition {
  const old = prev?.find((c) => c.type === type);
  return {
    type,
    status,
    reason,
    message: message.slice(0, 1024),
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : iso(now),
    observedGeneration: generation,
  };
}

export function planTask(input: PlanInput): Plan {
  const { task, now } = input;
  const maxBytes = input.terminationMessageMaxBytes ?? 4096;
  const prev = task.status ?? {};
  const prevSteps = new Map((prev.steps ?? []).map((s) => [s.name, s]));
  const jobsByStep = new Map(input.jobs.map((j) => [j.step, j]));
  const podsByStep = new Map<string, PodView[]>();
  for (const p of input.pods) podsByStep.set(p.step, [...(podsByStep.get(p.step) ?? []), p]);

  const plan: Plan = {
    status: prev,
    create: [],
    deleteJobs: [],
    waitingForCapacity: false,
    events: [],
    audits: [],
    addFinalizer: false,
    removeFinalizer: false,
    deleteTask: false,
    publishResults: false,
  };
  const liveJobs = input.jobs.filter((j) => !j.deleting);
  const activeJobs = liveJobs.filter((j) => !j.complete && !j.failedCondition);
  const finalizers = task.metadata.finalizers ?? [];

  // Deleted: remove the Jobs (the finalizer holds the task until they are gone).
  if (task.metadata.deletionTimestamp) {
    plan.deleteJobs = liveJobs.map((j) => j.name);
    plan.removeFinalizer = input.jobs.length === 0 && finalizers.includes(FINALIZER);
    if (!isTerminal(prev.phase) && plan.removeFinalizer) {
      plan.audits.push({ kind: "TaskCanceled", outcome: "minorFailure", reason: "Deleted" });
    }
    return plan;
  }
  plan.addFinalizer = !finalizers.includes(FINALIZER);

  // Already ended: clean up, make sure results went out, honour the TTL.
  if (isTerminal(prev.phase)) {
    plan.deleteJobs = activeJobs.map((j) => j.name);
    plan.publishResults = !prev.resultsPublished;
    const ttl = effectiveTtl(task, input.defaultTtlSeconds);
    const publishPending = input.resultsRequired === true && !prev.resultsPublished;
    if (ttl !== undefined && prev.completionTime && !publishPending) {
      const due = Date.parse(prev.completionTime) + ttl * 1000;
      if (now >= due) plan.deleteTask = true;
      else plan.requeueAfterMs = due - now;
    }
    return plan;
  }

  const generation = task.metadata.generation;
  const steps: StepStatus[] = [];
  const byName = new Map<string, StepStatus>();
  let capacity = input.capacity;
  const bindings = () => ({
    study: task.spec.study,
    steps: Object.fromEntries([...byName].map(([n, s]) => [n, { phase: s.phase, outputs: s.outputs ?? {} }])),
  });

  const hasRun = new Set<string>();
  const rechecks: number[] = [];
  const reviewed: { step: string; verdict: string; reviewer?: string; reason?: string }[] = [];
  // Plan in dependency order (the list may name a step before the steps it depends on);
  // status keeps the order the workflow lists them in.
  for (const step of topologicalOrder(task.spec.steps)) {
    const before = prevSteps.get(step.name);
    const job = jobsByStep.get(step.name);
    let observed = observeStep(
      job,
      podsByStep.get(step.name) ?? [],
      before,
      now,
      maxBytes,
      step.timeoutSeconds ?? 3600,
      input.gpuResource ?? "nvidia.com/gpu",
      input.startTimeoutSeconds ?? DEFAULT_START_TIMEOUT_SECONDS,
    );
    let s: StepStatus;
    // --- mandatory outputs (src/controllers/required-outputs.ts): a success without one fails
    if (observed?.phase === "Succeeded" && before?.phase !== "Succeeded") {
      const missing = missingOutputs(step, observed.outputs);
      if (missing.length > 0)
        observed = { ...observed, phase: "Failed", reason: MISSING_OUTPUT, message: missingOutputMessage(missing) };
    }
    // --- end mandatory outputs
    if (observed) {
      const { ran, recheckAt, awaitingPod, ...seen } = observed;
      if (awaitingPod) plan.needsLivePods = true;
      if (ran) hasRun.add(step.name);
      if (recheckAt !== undefined) rechecks.push(recheckAt);
      s = {
        name: step.name,
        jobName: job?.name,
        // the Job's creation is the step's start when no status recorded it (status-writes.ts)
        startTime: before?.startTime ?? job?.created ?? iso(now),
        ...seen,
      };
      if (FINISHED_STEP.has(observed.phase)) s.completionTime = before?.completionTime ?? iso(now);
    } else if (input.jobConflicts?.[step.name] !== undefined) {
      // our create met a Job that is not ours: waiting for it would wait forever (it carries another
      // task's labels, so no informer event ever reaches this task)
      s = {
        name: step.name,
        phase: "Failed",
        reason: "JobNameConflict",
        message: `cannot create Job ${jobName(task.metadata.name as string, step.name)}: ${input.jobConflicts[step.name]}`,
        startTime: before?.startTime ?? iso(now),
        completionTime: iso(now),
      };
    } else if (before && FINISHED_STEP.has(before.phase)) {
      s = before; // decided earlier (Skipped, a condition error) or its Job is gone: keep what was recorded
    } else {
      const deps = step.dependsOn ?? [];
      const depStates = deps.map((d) => byName.get(d)?.phase);
      if (!depStates.every((p) => p !== undefined && DONE_STEP.has(p))) {
        s = {
          name: step.name,
          phase: "Pending",
          reason: "WaitingForDependencies",
          message: `waiting for ${deps.join(", ")}`,
        };
      } else {
        let run = true;
        let failure: string | undefined;
        if (step.when) {
          let r: ReturnType<ReturnType<typeof cachedBool>>;
          try {
            r = cachedBool(step.when)(bindings());
          } catch (e) {
            r = { ok: false, error: (e as Error).message };
          }
          if (!r.ok) failure = r.error;
          else run = r.value;
        }
        if (failure !== undefined) {
          s = {
            name: step.name,
            phase: "Failed",
            reason: "ConditionError",
            message: `\`when\` could not be evaluated: ${failure}`.slice(0, 1024),
            completionTime: iso(now),
          };
        } else if (!run) {
          s = {
            name: step.name,
            phase: "Skipped",
            reason: "ConditionFalse",
            message: "`when` is false",
            completionTime: iso(now),
          };
        } else if (step.review) {
          // --- review gate (src/controllers/review.ts): no Job; waits for a verdict or its timeout
          const r = planReview(task, step, before, now);
          s = r.status;
          if (r.recheckAt !== undefined) rechecks.push(r.recheckAt);
          if (r.decided) reviewed.push({ step: step.name, ...r.decided });
          // --- end review gate
        } else if (input.storageRefusal !== undefined) {
          // an InferenceTask created directly (not from a Ready workflow) naming storage nobody allowed:
          // no Job is built, and the step says why rather than retrying forever
          s = {
            name: step.name,
            phase: "Failed",
            reason: "StorageNotAllowed",
            message: input.storageRefusal.slice(0, 1024),
            startTime: before?.startTime ?? iso(now),
            completionTime: iso(now),
          };
        } else if (input.jobCreateFailures?.[step.name] !== undefined) {
          // the create was refused: say so on the step (and in a Warning Event) instead of
          // claiming JobCreated; a refusal that can pass is tried again with backoff
          const f = input.jobCreateFailures[step.name] as { message: string; permanent: boolean };
          s = {
            name: step.name,
            phase: f.permanent ? "Failed" : "Pending",
            reason: f.permanent ? "JobRejected" : "JobCreateFailed",
            message: f.message.slice(0, 1024),
            startTime: before?.startTime ?? iso(now),
            ...(f.permanent ? { completionTime: iso(now) } : {}),
          };
        } else if (capacity > 0) {
          capacity -= 1;
          const inputs: Record<string, Record<string, unknown>> = {};
          for (const d of deps) inputs[d] = byName.get(d)?.outputs ?? {};
          plan.create.push({ step, inputs });
          s = {
            name: step.name,
            phase: "Pending",
            reason: "JobCreated",
            message: "Job created; waiting for its pod",
            startTime: before?.startTime ?? iso(now),
            attempts: 0,
          };
        } else {
          plan.waitingForCapacity = true;
          s = {
            name: step.name,
            phase: "Pending",
            reason: "Queued",
            message: "waiting for a free slot (concurrency limit)",
            startTime: before?.startTime ?? iso(now),
          };
        }
      }
    }
    if (plan.create.some((c) => c.step.name === step.name))
      s.jobName = jobName(task.metadata.name as string, step.name);
    else s.jobName = s.jobName ?? before?.jobName;
    steps.push(s);
    byName.set(step.name, s);
  }

  const order = new Map(task.spec.steps.map((st, i) => [st.name, i]));
  steps.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));

  // Phase of the task.
  let phase: TaskPhase;
  let reason: string;
  let message: string;
  const failed = steps.find((s) => s.phase === "Failed");
  // The queue timeout is about starting: a step that has run once (a retry waits again) is exempt.
  const waitingSteps = steps.filter(
    (s) => !hasRun.has(s.name) && (s.phase === "WaitingForGPU" || (s.phase === "Pending" && s.startTime !== undefined)),
  );
  const timeout = task.spec.queueTimeoutSeconds;
  const timedOut =
    timeout !== undefined
      ? waitingSteps.find((s) => now - Date.parse(s.startTime as string) >= timeout * 1000)
      : undefined;

  if (task.spec.cancel) {
    phase = "Canceled";
    reason = "Canceled";
    message = "canceled by spec.cancel";
  } else if (failed) {
    phase = "Failed";
    reason = PROPAGATED_REASONS.has(failed.reason ?? "") ? (failed.reason as string) : "StepFailed";
    message = `step ${failed.name} failed: ${failed.message ?? failed.reason ?? ""}`;
  } else if (timedOut) {
    phase = "Failed";
    reason = "QueueTimeout";
    const waited = Math.round((now - Date.parse(timedOut.startTime as string)) / 1000);
    message = `step ${timedOut.name} waited ${waited}s without starting (queueTimeoutSeconds=${timeout})${
      timedOut.phase === "WaitingForGPU" && timedOut.message ? `: ${timedOut.message}` : ""
    }`;
  } else if (steps.every((s) => DONE_STEP.has(s.phase))) {
    phase = "Succeeded";
    reason = "Succeeded";
    message = `${steps.filter((s) => s.phase === "Succeeded").length} step(s) succeeded, ${
      steps.filter((s) => s.phase === "Skipped").length
    } skipped`;
  } else if (steps.some((s) => s.phase === "Running" || s.phase === "Succeeded")) {
    phase = "Running";
    reason = "Running";
    message = "";
  } else {
    phase = "Pending";
    reason = steps.some((s) => s.phase === "WaitingForGPU") ? "WaitingForGPU" : "Queued";
    message = "";
  }

  if (isTerminal(phase)) {
    // nothing new starts once the task has ended; stop what runs
    plan.create = [];
    plan.waitingForCapacity = false;
    for (const s of steps) {
      if (!FINISHED_STEP.has(s.phase)) {
        s.phase = "Canceled";
        s.reason = phase === "Canceled" ? "Canceled" : reason;
        s.message = phase === "Canceled" ? "task canceled" : `task ended: ${reason}`;
        s.completionTime = iso(now);
      }
    }
    plan.deleteJobs = activeJobs.map((j) => j.name);
    plan.publishResults = !prev.resultsPublished;
  }

  const waitingForGpu = steps.filter((s) => s.phase === "WaitingForGPU");
  const conditions: Condition[] = [];
  const succeededStatus: Condition["status"] =
    phase === "Succeeded" ? "True" : phase === "Failed" || phase === "Canceled" ? "False" : "Unknown";
  conditions.push(
    condition(
      prev.conditions,
      "Succeeded",
      succeededStatus,
      phase === "Running" ? (waitingForGpu.length ? "WaitingForGPU" : "Running") : reason,
      message,
      now,
      generation,
    ),
  );
  if (waitingForGpu.length || prev.conditions?.some((c) => c.type === "WaitingForGPU")) {
    conditions.push(
      waitingForGpu.length
        ? condition(
            prev.conditions,
            "WaitingForGPU",
            "True",
            "Unschedulable",
            waitingForGpu.map((s) => `step ${s.name}: ${s.message ?? "unschedulable"}`).join("; "),
            now,
            generation,
          )
        : condition(
            prev.conditions,
            "WaitingForGPU",
            "False",
            "Scheduled",
            "no step is waiting for a GPU",
            now,
            generation,
          ),
    );
  }

  // A container the kubelet cannot start (bad image, missing Secret…) is shown on the task at once,
  // not only when the start timeout fails the step.
  const blocked = steps.filter((s) => s.phase === "Pending" && START_FAILURES.has(s.reason ?? ""));
  if (blocked.length || prev.conditions?.some((c) => c.type === "StartBlocked")) {
    conditions.push(
      blocked.length
        ? condition(
            prev.conditions,
            "StartBlocked",
            "True",
            blocked[0]?.reason as string,
            blocked.map((s) => `step ${s.name}: ${s.message ?? s.reason}`).join("; "),
            now,
            generation,
          )
        : condition(
            prev.conditions,
            "StartBlocked",
            "False",
            "NotBlocked",
            "no step is blocked from starting",
            now,
            generation,
          ),
    );
  }

  // --- review gate: the task's AwaitingReview condition
  const awaiting = reviewCondition(prev.conditions, steps, now, generation);
  if (awaiting) conditions.push(awaiting);
  // --- end review gate

  const startTime = prev.startTime ?? (phase === "Running" || isTerminal(phase) ? iso(now) : undefined);
  const completionTime = isTerminal(phase) ? iso(now) : undefined;
  const inProgress = steps.filter(
    (s) => s.phase === "Running" || s.phase === "WaitingForGPU" || (s.phase === "Pending" && s.startTime),
  );
  const lastDone = [...steps].reverse().find((s) => FINISHED_STEP.has(s.phase) && s.phase !== "Canceled");
  const status: InferenceTaskStatus = {
    observedGeneration: generation,
    phase,
    currentStep: inProgress.length ? summariseSteps(inProgress.map((s) => s.name)) : lastDone?.name,
    conditions,
    steps,
    startTime,
    completionTime,
    duration: completionTime
      ? formatDuration(
          Date.parse(completionTime) -
            Date.parse(startTime ?? (task.metadata.creationTimestamp as string) ?? completionTime),
        )
      : undefined,
    resultsPublished: prev.resultsPublished,
  };
  plan.status = status;

  // What changed, for Events and audit records. A one-step task's story is its task-level Events
  // (Succeeded, or a Warning): per-step Normal Events would only repeat them, and every Event is
  // an API write (the budget is five writes per single-step study).
  const multiStep = task.spec.steps.length > 1;
  for (const c of plan.create) {
    // re-sent create while the informer had not shown our Job yet: already announced
    if (prevSteps.get(c.step.name)?.reason === "JobCreated") continue;
    if (multiStep)
      plan.events.push({ type: "Normal", reason: "StepStarted", note: `step ${c.step.name}: Job created` });
    plan.audits.push({ kind: "StepStarted", outcome: "success", step: c.step.name });
  }
  for (const s of steps) {
    const wasStep = prevSteps.get(s.name);
    const was = wasStep?.phase;
    if (s.reason === "JobCreateFailed" && input.jobCreateFailures?.[s.name]) {
      plan.events.push({ type: "Warning", reason: "JobCreateFailed", note: `step ${s.name}: ${s.message ?? ""}` });
    }
    if (s.phase === "Pending" && START_FAILURES.has(s.reason ?? "") && wasStep?.reason !== s.reason) {
      plan.events.push({ type: "Warning", reason: s.reason as string, note: `step ${s.name}: ${s.message ?? ""}` });
    }
    if (s.phase === was) continue;
    if (s.phase === "WaitingForGPU") {
      plan.events.push({
        type: "Warning",
        reason: "WaitingForGPU",
        note: `step ${s.name}: ${s.message ?? "unschedulable"}`,
      });
      plan.audits.push({ kind: "GPUWait", outcome: "success", step: s.name, description: s.message });
    } else if (s.phase === "Succeeded") {
      if (multiStep) plan.events.push({ type: "Normal", reason: "StepSucceeded", note: `step ${s.name} succeeded` });
      plan.audits.push({ kind: "StepFinished", outcome: "success", step: s.name });
    } else if (s.phase === "Skipped") {
      plan.events.push({
        type: "Normal",
        reason: "StepSkipped",
        note: `step ${s.name} skipped: ${s.message ?? "`when` is false"}`,
      });
      plan.audits.push({ kind: "StepFinished", outcome: "success", step: s.name, reason: "Skipped" });
    } else if (s.phase === "Failed") {
      plan.events.push({ type: "Warning", reason: "StepFailed", note: `step ${s.name}: ${s.message ?? s.reason}` });
      plan.audits.push({
        kind: "StepFinished",
        outcome: "seriousFailure",
        step: s.name,
        reason: s.reason,
        description: s.message,
      });
    }
  }
  // --- review gate: Events for a review's start and its verdict (names and reviewers, never the note)
  plan.events.push(...reviewEvents(prevSteps, steps, reviewed));
  // --- end review gate
  if (phase !== prev.phase && isTerminal(phase)) {
    if (phase === "Succeeded") {
      plan.events.push({ type: "Normal", reason: "Succeeded", note: message });
      plan.audits.push({ kind: "TaskSucceeded", outcome: "success" });
    } else if (phase === "Canceled") {
      plan.events.push({ type: "Normal", reason: "Canceled", note: message });
      plan.audits.push({ kind: "TaskCanceled", outcome: "minorFailure", reason: "Canceled" });
    } else {
      plan.events.push({ type: "Warning", reason, note: message });
      plan.audits.push({
        kind: reason === "QueueTimeout" ? "TaskTimedOut" : "TaskFailed",
        outcome: "seriousFailure",
        reason,
        description: message,
      });
    }
  }

  // When to look again without an informer event: a queue timeout coming due, or the TTL.
  if (!isTerminal(phase) && timeout !== undefined) {
    const dues = waitingSteps.map((s) => Date.parse(s.startTime as string) + timeout * 1000 - now);
    if (dues.length) plan.requeueAfterMs = Math.max(50, Math.min(...dues));
  }
  if (!isTerminal(phase) && rechecks.length) {
    const due = Math.max(50, Math.min(...rechecks) - now + 50);
    plan.requeueAfterMs = Math.min(plan.requeueAfterMs ?? due, due);
  }
  const ttl = effectiveTtl(task, input.defaultTtlSeconds);
  if (isTerminal(phase) && ttl !== undefined) plan.requeueAfterMs = ttl * 1000;
  return plan;
}

/** Seconds a finished task is kept: its workflow's ttlSecondsAfterFinished, else the operator's
 * default (0 or unset: kept until deleted). The TTL never removes a task whose results are unpublished. */
export function effectiveTtl(task: InferenceTask, defaultTtlSeconds: number | undefined): number | undefined {
  return task.spec.ttlSecondsAfterFinished ?? (defaultTtlSeconds ? defaultTtlSeconds : undefined);
}

/** Steps ordered so that each comes after what it depends on; ties keep the listed order. */
export function topologicalOrder(steps: readonly Step[]): Step[] {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const out: Step[] = [];
  const state = new Map<string, 1 | 2>();
  const visit = (s: Step) => {
    if (state.get(s.name)) return; // done, or a cycle (the workflow controller rejects those)
    state.set(s.name, 1);
    for (const d of s.dependsOn ?? []) {
      const dep = byName.get(d);
      if (dep) visit(dep);
    }
    state.set(s.name, 2);
    out.push(s);
  };
  for (const s of steps) visit(s);
  return out;
}

/** Deep equality of JSON-like values, ignoring undefined members: write status only when it changed. */
export function sameJson(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(
          Object.keys(x)
            .sort()
            .filter((k) => (x as Record<string, unknown>)[k] !== undefined)
            .map((k) => [k, (x as Record<string, unknown>)[k]]),
        )
      : x,
  );
}
