// Policy 2, each step's phase: from what its Job shows, or — for a step with no Job — whether it
// may start (dependencies, `when`, a review gate, storage, a refused create, a free slot). Pure.

import { isForwardStep } from "../../api/v1alpha1/aiworkflow.ts";
import type { InferenceTask, Step, StepPhase, StepStatus } from "../../api/v1alpha1/index.ts";
import { cachedBool } from "../../expr/cel.ts";
import { jobName } from "../../jobs/job-builder.ts";
import { MISSING_OUTPUT, missingOutputMessage, missingOutputs } from "../required-outputs.ts";
import { planReview } from "../review.ts";
import { iso } from "./format.ts";
import { type Observed, type ObserveLimits, observeStep } from "./observe-step.ts";
import type { JobView, PodView } from "./types.ts";

export const DONE_STEP: ReadonlySet<StepPhase> = new Set(["Succeeded", "Skipped"]);
export const FINISHED_STEP: ReadonlySet<StepPhase> = new Set(["Succeeded", "Skipped", "Failed", "Canceled"]);

/** What one step's decision depends on besides the step itself. */
export interface StepContext {
  task: InferenceTask;
  now: number;
  /** the step's previous status */
  before?: StepStatus;
  job?: JobView;
  pods: readonly PodView[];
  /** the steps decided so far in this plan (its dependencies come first) */
  decided: ReadonlyMap<string, StepStatus>;
  limits: Omit<ObserveLimits, "timeoutSeconds">;
  /** what holds the step's Job name, when that is not this task's Job */
  jobConflict?: string;
  /** the API server refused the step's Job */
  createFailure?: { message: string; permanent: boolean };
  storageRefusal?: string;
  /** a slot is free for one more Job */
  slotFree: boolean;
}

export interface StepDecision {
  status: StepStatus;
  /** create the step's Job with these inputs (its dependencies' outputs); takes the free slot */
  create?: Record<string, Record<string, unknown>>;
  /** ready to start but no slot was free */
  queued?: boolean;
  /** a pod of the step has run (the queue timeout no longer applies) */
  ran?: boolean;
  /** plan again at this time (epoch ms) even without an informer event */
  recheckAt?: number;
  /** a complete Job's pod is missing from the cache */
  awaitingPod?: boolean;
  /** a review ended in this plan */
  reviewed?: { verdict: string; reviewer?: string; reason?: string };
}

/** The step's decision, with the name of its Job recorded once there is one. */
export function decideStep(step: Step, c: StepContext): StepDecision {
  const d = stepWithJob(step, c) ?? stepWithoutJob(step, c);
  const name =
    d.create !== undefined
      ? jobName(c.task.metadata.name as string, step.name)
      : (d.status.jobName ?? c.before?.jobName);
  return { ...d, status: { ...d.status, jobName: name } };
}

/** A step whose Job exists: what the Job shows, where a success lacking a mandatory output fails. */
function stepWithJob(step: Step, c: StepContext): StepDecision | undefined {
  let observed = observeStep(c.job, c.pods, c.before, c.now, {
    ...c.limits,
    timeoutSeconds: step.timeoutSeconds ?? 3600,
  });
  if (!observed) return undefined;
  if (observed.phase === "Succeeded" && c.before?.phase !== "Succeeded") observed = requireOutputs(step, observed);
  const { ran, recheckAt, awaitingPod, ...seen } = observed;
  const status: StepStatus = {
    name: step.name,
    jobName: c.job?.name,
    // the Job's creation is the step's start when no status recorded it (status-writes.ts)
    startTime: c.before?.startTime ?? c.job?.created ?? iso(c.now),
    ...seen,
  };
  if (FINISHED_STEP.has(observed.phase)) status.completionTime = c.before?.completionTime ?? iso(c.now);
  return { status, ran, recheckAt, awaitingPod };
}

/** A success without one of the step's mandatory outputs (src/controllers/required-outputs.ts) fails. */
export function requireOutputs(step: Step, observed: Observed): Observed {
  const missing = missingOutputs(step, observed.outputs);
  if (missing.length === 0) return observed;
  return { ...observed, phase: "Failed", reason: MISSING_OUTPUT, message: missingOutputMessage(missing) };
}

/** A step with no Job: refused, finished earlier, waiting, or ready (then gated or started). */
function stepWithoutJob(step: Step, c: StepContext): StepDecision {
  const { task, now, before } = c;
  if (c.jobConflict !== undefined) {
    // our create met a Job that is not ours: waiting for it would wait forever (it carries another
    // task's labels, so no informer event ever reaches this task)
    return {
      status: {
        name: step.name,
        phase: "Failed",
        reason: "JobNameConflict",
        message: `cannot create Job ${jobName(task.metadata.name as string, step.name)}: ${c.jobConflict}`,
        startTime: before?.startTime ?? iso(now),
        completionTime: iso(now),
      },
    };
  }
  // decided earlier (Skipped, a condition error) or its Job is gone: keep what was recorded
  if (before && FINISHED_STEP.has(before.phase)) return { status: before };
  const deps = step.dependsOn ?? [];
  if (!deps.every((d) => DONE_STEP.has(c.decided.get(d)?.phase as StepPhase))) {
    return {
      status: {
        name: step.name,
        phase: "Pending",
        reason: "WaitingForDependencies",
        message: `waiting for ${deps.join(", ")}`,
      },
    };
  }
  return readyStep(step, c);
}

/** `when` over the study and the steps decided so far: run, skip, or an error (never a skip). */
export function evaluateWhen(
  step: Step,
  task: InferenceTask,
  decided: ReadonlyMap<string, StepStatus>,
): { run: boolean } | { error: string } {
  if (!step.when) return { run: true };
  const bindings = {
    study: task.spec.study,
    steps: Object.fromEntries([...decided].map(([n, s]) => [n, { phase: s.phase, outputs: s.outputs ?? {} }])),
  };
  try {
    const r = cachedBool(step.when)(bindings);
    return r.ok ? { run: r.value } : { error: r.error };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Dependencies done: `when`, then the review gate, storage, a refused create, a slot. */
function readyStep(step: Step, c: StepContext): StepDecision {
  const { task, now, before } = c;
  const when = evaluateWhen(step, task, c.decided);
  if ("error" in when) {
    return {
      status: {
        name: step.name,
        phase: "Failed",
        reason: "ConditionError",
        message: `\`when\` could not be evaluated: ${when.error}`.slice(0, 1024),
        completionTime: iso(now),
      },
    };
  }
  if (!when.run) {
    return {
      status: {
        name: step.name,
        phase: "Skipped",
        reason: "ConditionFalse",
        message: "`when` is false",
        completionTime: iso(now),
      },
    };
  }
  if (step.review) {
    // review gate (src/controllers/review.ts): no Job; waits for a verdict or its timeout
    const r = planReview(task, step, before, now);
    return { status: r.status, recheckAt: r.recheckAt, reviewed: r.decided };
  }
  if (isForwardStep(step)) {
    // a forwarding step (no image, every export content: study) runs nothing: the gateway's export
    // of the received study, once the task has succeeded, is its whole work (src/export/plan.ts)
    const at = iso(now);
    const message = "no model to run: the study is exported as received";
    return {
      status: { name: step.name, phase: "Succeeded", reason: "Forwarding", message, startTime: at, completionTime: at },
    };
  }
  const startTime = before?.startTime ?? iso(now);
  if (c.storageRefusal !== undefined) {
    // an InferenceTask created directly (not from a Ready workflow) naming storage nobody allowed:
    // no Job is built, and the step says why rather than retrying forever
    return {
      status: {
        name: step.name,
        phase: "Failed",
        reason: "StorageNotAllowed",
        message: c.storageRefusal.slice(0, 1024),
        startTime,
        completionTime: iso(now),
      },
    };
  }
  if (c.createFailure !== undefined) {
    // the create was refused: say so on the step (and in a Warning Event) instead of
    // claiming JobCreated; a refusal that can pass is tried again with backoff
    const f = c.createFailure;
    return {
      status: {
        name: step.name,
        phase: f.permanent ? "Failed" : "Pending",
        reason: f.permanent ? "JobRejected" : "JobCreateFailed",
        message: f.message.slice(0, 1024),
        startTime,
        ...(f.permanent ? { completionTime: iso(now) } : {}),
      },
    };
  }
  if (c.slotFree) {
    const inputs: Record<string, Record<string, unknown>> = {};
    for (const d of step.dependsOn ?? []) inputs[d] = c.decided.get(d)?.outputs ?? {};
    return {
      create: inputs,
      status: {
        name: step.name,
        phase: "Pending",
        reason: "JobCreated",
        message: "Job created; waiting for its pod",
        startTime,
        attempts: 0,
      },
    };
  }
  return {
    queued: true,
    status: {
      name: step.name,
      phase: "Pending",
      reason: "Queued",
      message: "waiting for a free slot (concurrency limit)",
      startTime,
    },
  };
}
