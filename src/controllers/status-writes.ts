// When the steps controller writes a task's status (every write is an API request, and the
// budget is five per single-step study): when what people and other controllers act on changed —
// the task's phase, a condition's status or reason, a step's phase, outputs or end reason — not
// for every transient reason or message (Starting → Running's "Completing", a retry's attempt
// count). What is not written is kept in memory and is the base of the next plan, so nothing is
// announced twice; the next write that counts carries it.
//
// The first write of a task is put off while all it would say is "Pending: Jobs created": the
// Jobs are the record of that (a restart finds them, and their creation time is each step's
// start), and a short model goes from there straight to Running or Succeeded in one write.
//
// A write whose only news is that steps started running settles first: a model that ends soon is
// written once, as its end (its step's start and completion times say when it ran). It waits
// RUNNING_SETTLE_MS; then, if every such step is Completing (its model exited 0 and the Job
// controller is concluding the Job), up to COMPLETING_SETTLE_MS for the Job's verdict. A longer
// model shows Running that much later. Nobody acts on Pending → Running: the queue timeout and
// the metrics come from what the planner observes, not from status. An awaited review is news at
// once (a reviewer acts on it), and so is anything else.
import type { InferenceTaskStatus } from "../api/v1alpha1/index.ts";
import { AWAITING_REVIEW } from "./review.ts";
import { sameJson } from "./task-plan.ts";

/** How long a status whose only news is that steps started running waits for more news. */
export const RUNNING_SETTLE_MS = 1_000;
/** ... and, once all those steps' models have exited 0, how long in all it waits for their Jobs. */
export const COMPLETING_SETTLE_MS = 10_000;

/** Skip the write, make it, or make it once the status has been planned for `settleMs`. */
export type WriteDecision = "skip" | "write" | { settleMs: number };

const FINISHED = new Set(["Succeeded", "Failed", "Skipped", "Canceled"]);

/** What a status write is for: the parts of status someone acts on. */
export function significant(s: InferenceTaskStatus | undefined): unknown {
  return {
    phase: s?.phase,
    conditions: (s?.conditions ?? []).map((c) => [c.type, c.status, c.reason]),
    steps: (s?.steps ?? []).map((st) => [
      st.name,
      st.phase,
      st.outputs,
      // why a step ended (or was refused) is part of the record; why it is still on its way is not
      FINISHED.has(st.phase) || st.reason === "JobCreateFailed" ? st.reason : undefined,
    ]),
    completionTime: s?.completionTime,
  };
}

/** Nothing is written yet and all there is to say is that the step Jobs were created. */
function onlyJobsCreated(next: InferenceTaskStatus, stored: InferenceTaskStatus | undefined): boolean {
  if (stored?.phase !== undefined) return false;
  if (next.phase !== "Pending") return false;
  if ((next.conditions ?? []).some((c) => c.type !== "Succeeded")) return false;
  return (next.steps ?? []).every(
    (s) =>
      s.phase === "Pending" &&
      (s.reason === "WaitingForDependencies" || (s.jobName !== undefined && s.reason !== "JobCreateFailed")),
  );
}

/** Whether the planned status is worth an API write over what is stored. */
export function worthWriting(next: InferenceTaskStatus, stored: InferenceTaskStatus | undefined): boolean {
  if (sameJson(next, stored ?? {})) return false;
  if (onlyJobsCreated(next, stored)) return false;
  return !sameJson(significant(next), significant(stored));
}

/** The status as it would be had its running steps not started: those steps Pending (an awaited
 * review excepted), the task Pending, and an undecided Succeeded condition without its reason. */
export function beforeStart(s: InferenceTaskStatus | undefined): InferenceTaskStatus | undefined {
  if (!s) return s;
  return {
    ...s,
    phase: s.phase === "Running" ? "Pending" : s.phase,
    conditions: s.conditions?.map((c) =>
      c.type === "Succeeded" && c.status === "Unknown" ? { ...c, reason: "", message: "" } : c,
    ),
    steps: s.steps?.map((st) =>
      st.phase === "Running" && st.reason !== AWAITING_REVIEW ? { ...st, phase: "Pending", reason: "Started" } : st,
    ),
  };
}

/** What to do with a planned status (see the top of this file). */
export function writeDecision(next: InferenceTaskStatus, stored: InferenceTaskStatus | undefined): WriteDecision {
  if (!worthWriting(next, stored)) return "skip";
  const started = beforeStart(next) as InferenceTaskStatus;
  const onlyStarted =
    onlyJobsCreated(started, stored) ||
    (stored?.phase !== undefined && sameJson(significant(started), significant(beforeStart(stored))));
  if (!onlyStarted) return "write";
  const running = (next.steps ?? []).filter((st) => st.phase === "Running" && st.reason !== AWAITING_REVIEW);
  const completing = running.length > 0 && running.every((st) => st.reason === "Completing");
  return { settleMs: completing ? COMPLETING_SETTLE_MS : RUNNING_SETTLE_MS };
}
