// Policy 6, when to look at a task again without an informer event (a queue timeout coming due, a
// step's recheck, the TTL), and the lifecycle of a task that ended or is being deleted. Pure.
import type { InferenceTask, StepStatus, TaskPhase } from "../../api/v1alpha1/index.ts";
import { isTerminal } from "./task-phase.ts";
import type { PlanInput } from "./types.ts";

/** Seconds a finished task is kept: its workflow's ttlSecondsAfterFinished, else the operator's
 * default (0 or unset: kept until deleted). The TTL never removes a task whose results are unpublished. */
export function effectiveTtl(task: InferenceTask, defaultTtlSeconds: number | undefined): number | undefined {
  return task.spec.ttlSecondsAfterFinished ?? (defaultTtlSeconds ? defaultTtlSeconds : undefined);
}

/** The next look at a task the plan left in `phase`: the earliest due timeout or recheck, or its TTL. */
export function nextRequeue(
  task: InferenceTask,
  phase: TaskPhase,
  waiting: readonly StepStatus[],
  rechecks: readonly number[],
  now: number,
  defaultTtlSeconds: number | undefined,
): number | undefined {
  if (isTerminal(phase)) {
    const ttl = effectiveTtl(task, defaultTtlSeconds);
    return ttl !== undefined ? ttl * 1000 : undefined;
  }
  let after: number | undefined;
  const timeout = task.spec.queueTimeoutSeconds;
  if (timeout !== undefined) {
    const dues = waiting.map((s) => Date.parse(s.startTime as string) + timeout * 1000 - now);
    if (dues.length) after = Math.max(50, Math.min(...dues));
  }
  if (rechecks.length) {
    const due = Math.max(50, Math.min(...rechecks) - now + 50);
    after = Math.min(after ?? due, due);
  }
  return after;
}

/** A task that had already ended: when the TTL deletes it (never before its results went out). */
export function endedTaskTtl(input: PlanInput): { deleteTask: boolean; requeueAfterMs?: number } {
  const { task, now } = input;
  const prev = task.status ?? {};
  const ttl = effectiveTtl(task, input.defaultTtlSeconds);
  const publishPending = input.resultsRequired === true && !prev.resultsPublished;
  if (ttl === undefined || !prev.completionTime || publishPending) return { deleteTask: false };
  const due = Date.parse(prev.completionTime) + ttl * 1000;
  return now >= due ? { deleteTask: true } : { deleteTask: false, requeueAfterMs: due - now };
}
