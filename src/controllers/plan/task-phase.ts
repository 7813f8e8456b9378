// Policy 3, the task's phase from its steps' (and spec.cancel, and the queue timeout); a task that
// ends stops what still runs. Pure.
import type { InferenceTask, StepStatus, TaskPhase } from "../../api/v1alpha1/index.ts";
import { MISSING_OUTPUT } from "../required-outputs.ts";
import { REVIEW_TIMEOUT } from "../review.ts";
import { iso } from "./format.ts";
import { DONE_STEP, FINISHED_STEP } from "./step-phase.ts";

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

export function isTerminal(phase: TaskPhase | undefined): boolean {
  return phase !== undefined && TERMINAL_TASK.has(phase);
}

export interface TaskVerdict {
  phase: TaskPhase;
  reason: string;
  message: string;
}

/** Steps the queue timeout applies to: waiting to start (a GPU, a slot, a pod), never run. */
export function startWaiters(steps: readonly StepStatus[], hasRun: ReadonlySet<string>): StepStatus[] {
  return steps.filter(
    (s) => !hasRun.has(s.name) && (s.phase === "WaitingForGPU" || (s.phase === "Pending" && s.startTime !== undefined)),
  );
}

/** The task's phase, reason and message. `waiting` are the steps the queue timeout applies to. */
export function taskPhase(
  task: InferenceTask,
  steps: readonly StepStatus[],
  waiting: readonly StepStatus[],
  now: number,
): TaskVerdict {
  if (task.spec.cancel) return { phase: "Canceled", reason: "Canceled", message: "canceled by spec.cancel" };
  const failed = steps.find((s) => s.phase === "Failed");
  if (failed) {
    return {
      phase: "Failed",
      reason: PROPAGATED_REASONS.has(failed.reason ?? "") ? (failed.reason as string) : "StepFailed",
      message: `step ${failed.name} failed: ${failed.message ?? failed.reason ?? ""}`,
    };
  }
  const timeout = task.spec.queueTimeoutSeconds;
  const timedOut =
    timeout !== undefined ? waiting.find((s) => now - Date.parse(s.startTime as string) >= timeout * 1000) : undefined;
  if (timedOut) {
    const waited = Math.round((now - Date.parse(timedOut.startTime as string)) / 1000);
    return {
      phase: "Failed",
      reason: "QueueTimeout",
      message: `step ${timedOut.name} waited ${waited}s without starting (queueTimeoutSeconds=${timeout})${
        timedOut.phase === "WaitingForGPU" && timedOut.message ? `: ${timedOut.message}` : ""
      }`,
    };
  }
  if (steps.every((s) => DONE_STEP.has(s.phase))) {
    return {
      phase: "Succeeded",
      reason: "Succeeded",
      message: `${steps.filter((s) => s.phase === "Succeeded").length} step(s) succeeded, ${
        steps.filter((s) => s.phase === "Skipped").length
      } skipped`,
    };
  }
  if (steps.some((s) => s.phase === "Running" || s.phase === "Succeeded"))
    return { phase: "Running", reason: "Running", message: "" };
  return {
    phase: "Pending",
    reason: steps.some((s) => s.phase === "WaitingForGPU") ? "WaitingForGPU" : "Queued",
    message: "",
  };
}

/** Once the task has ended nothing else runs: its unfinished steps are Canceled, with why. */
export function stopUnfinished(steps: readonly StepStatus[], verdict: TaskVerdict, now: number): StepStatus[] {
  const canceled = verdict.phase === "Canceled";
  return steps.map((s) =>
    FINISHED_STEP.has(s.phase)
      ? s
      : {
          ...s,
          phase: "Canceled",
          reason: canceled ? "Canceled" : verdict.reason,
          message: canceled ? "task canceled" : `task ended: ${verdict.reason}`,
          completionTime: iso(now),
        },
  );
}
