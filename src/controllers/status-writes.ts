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
import type { InferenceTaskStatus } from "../api/v1alpha1/index.ts";
import { sameJson } from "./task-plan.ts";

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
