// Policy 1, observe: a step's state as its Job and pods show it. Pure; one function per kind of
// Job (complete, failed, still on its way), each answering the step's phase, reason and message.
import type { StepStatus } from "../../api/v1alpha1/index.ts";
import { parseOutputs } from "./outputs.ts";
import type { JobView, PodView } from "./types.ts";

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

/** How long a complete Job may wait for its Succeeded pod to show in the cache before the step
 * is concluded without outputs (the pod was garbage-collected while radflow was away). */
export const POD_VISIBILITY_GRACE_MS = 60_000;

export type Observed = Pick<StepStatus, "phase" | "reason" | "message" | "outputs" | "attempts"> & {
  /** a pod of the step has run: the queue timeout no longer applies */
  ran: boolean;
  /** when to look at the step again without an informer event (epoch ms): a run deadline, a pod awaited */
  recheckAt?: number;
  /** the Job is complete but its Succeeded pod is not in the cache */
  awaitingPod?: boolean;
};

export interface ObserveLimits {
  /** terminationMessageMaxBytes */
  maxBytes: number;
  /** the step's timeoutSeconds: how long the model may run */
  timeoutSeconds: number;
  gpuResource: string;
  startTimeoutSeconds: number;
}

/** A step's state as its Job and pods show it; undefined when the step has no Job. */
export function observeStep(
  job: JobView | undefined,
  pods: readonly PodView[],
  before: StepStatus | undefined,
  now: number,
  limits: ObserveLimits,
): Observed | undefined {
  if (!job) return undefined;
  const attempts = Math.max(pods.length, job.active + job.succeeded + job.failed);
  const ran = job.succeeded + job.failed > 0 || pods.some((p) => p.phase !== "Pending");
  if (job.complete) return completedJob(job, pods, before, now, limits.maxBytes, attempts, ran);
  if (job.failedCondition) return failedJob(job.failedCondition, pods, attempts, ran);
  if (job.suspended)
    return {
      phase: "Pending",
      reason: "AwaitingAdmission",
      message: "Job suspended until Kueue admits it",
      attempts,
      ran,
    };
  return jobInProgress(pods, now, limits, attempts, ran);
}

/** The Job is Complete: the step's outputs are its Succeeded pod's termination message. */
export function completedJob(
  job: JobView,
  pods: readonly PodView[],
  before: StepStatus | undefined,
  now: number,
  maxBytes: number,
  attempts: number,
  ran: boolean,
): Observed {
  if (before?.phase === "Succeeded") return { ...before, ran: true }; // outputs were recorded: keep them
  const pod = pods.find((p) => p.phase === "Succeeded");
  if (!pod) {
    // The Job's update can arrive before its pod's: wait for the termination message.
    const since = job.complete?.at ? Date.parse(job.complete.at) : now;
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

/** The Job failed: the reason is the last pod's (OOMKilled, Error…) or the Job's (DeadlineExceeded). */
export function failedJob(
  failed: NonNullable<JobView["failedCondition"]>,
  pods: readonly PodView[],
  attempts: number,
  ran: boolean,
): Observed {
  const last = [...pods]
    .filter((p) => p.phase === "Failed")
    .sort((a, b) => a.created.localeCompare(b.created))
    .pop();
  const t = last?.terminated;
  const podPart = t
    ? `model container exited with code ${t.exitCode}${t.reason ? ` (${t.reason})` : ""}`
    : (failed.message ?? "the Job failed");
  const reason =
    failed.reason === "DeadlineExceeded" ? "DeadlineExceeded" : (t?.reason ?? failed.reason ?? "JobFailed");
  return {
    phase: "Failed",
    reason,
    message: `${podPart}; ${attempts} attempt${attempts === 1 ? "" : "s"}; Job: ${failed.reason ?? "Failed"}`,
    attempts,
    ran,
  };
}

/** The Job has not finished: running (within its timeout), waiting for a node, or unable to start. */
export function jobInProgress(
  pods: readonly PodView[],
  now: number,
  limits: ObserveLimits,
  attempts: number,
  ran: boolean,
): Observed {
  const running = pods.find((p) => p.phase === "Running");
  if (running) {
    // timeoutSeconds limits the model's run, not its wait for a GPU: measured from container start
    const since = running.runningSince ? Date.parse(running.runningSince) : now;
    if (now - since > limits.timeoutSeconds * 1000) {
      return {
        phase: "Failed",
        reason: "DeadlineExceeded",
        message: `the model ran longer than timeoutSeconds=${limits.timeoutSeconds}`,
        attempts,
        ran,
      };
    }
    return { phase: "Running", reason: "Running", attempts, ran, recheckAt: since + limits.timeoutSeconds * 1000 };
  }
  // a pod finished and the Job controller has not decided yet (done, or a retry coming)
  if (pods.some((p) => p.phase === "Succeeded")) return { phase: "Running", reason: "Completing", attempts, ran };
  const waiting = pods.find((p) => p.phase === "Pending" && p.unschedulable);
  if (waiting) {
    // only a shortage of GPUs is a GPU wait; a missing volume or a selector nothing matches is
    // something else, and saying "GPU" would send the on-call engineer to the wrong place
    const gpu = (waiting.unschedulable as string).includes(limits.gpuResource);
    return {
      phase: gpu ? "WaitingForGPU" : "Pending",
      reason: "Unschedulable",
      message: waiting.unschedulable,
      attempts,
      ran,
    };
  }
  const stuck = pods.find((p) => p.phase === "Pending" && p.waiting && START_FAILURES.has(p.waiting.reason));
  if (stuck?.waiting) return cannotStart(stuck, stuck.waiting, now, limits.startTimeoutSeconds, attempts, ran);
  if (ran)
    return { phase: "Running", reason: "Retrying", message: "an attempt failed; the Job is retrying", attempts, ran };
  return { phase: "Pending", reason: "Starting", message: "Job created; pod not running yet", attempts, ran };
}

/** The kubelet cannot start the container: say why at once, fail when it has had long enough. */
function cannotStart(
  pod: PodView,
  waiting: NonNullable<PodView["waiting"]>,
  now: number,
  startTimeoutSeconds: number,
  attempts: number,
  ran: boolean,
): Observed {
  const since = Date.parse(pod.scheduledAt ?? pod.created) || now;
  const what = `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`;
  const waited = Math.round((now - since) / 1000);
  if (now - since >= startTimeoutSeconds * 1000) {
    return {
      phase: "Failed",
      reason: waiting.reason,
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
    reason: waiting.reason,
    message: `the model container cannot start: ${what}`.slice(0, 1024),
    attempts,
    ran,
    recheckAt: since + startTimeoutSeconds * 1000,
  };
}
