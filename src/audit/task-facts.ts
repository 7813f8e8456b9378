// The audit facts of an InferenceTask, derived from what its status durably records
// (docs/ARCHITECTURE.md §5): a step with a Job was started, a finished step finished, a finished
// task succeeded, failed, timed out or was canceled, a stamped task had its results published.
// Pure, and cumulative — the facts of a status include those of every earlier status of the same
// task (a step that finished was started) — so whoever publishes them can catch up from the
// status alone after an outage or a restart. The one exception is a GPU wait, which a later
// status no longer shows: the task audit controller derives facts from every version it
// observes, so a wait is recorded while the process that saw it lives.
//
// One id scheme for every fact about a Kubernetes object: `<uid>:<kind>:<qualifiers…>`. The same
// fact derived twice has the same id, and the audit sinks drop the repeat (Nats-Msg-Id).
import type { InferenceTask, StepStatus } from "../api/v1alpha1/index.ts";
import type { AuditEventKind, AuditFact, AuditOutcome } from "./facts.ts";
import { reviewFacts } from "./review-facts.ts";

/** The id of a fact about the object with this uid; qualifiers name the step, reason, generation… */
export function factId(uid: string, kind: AuditEventKind, ...qualifiers: (string | number | undefined)[]): string {
  return [uid, kind, ...qualifiers.map((q) => (q === undefined ? "" : String(q)))].join(":");
}

/** Lifecycle order: facts of one task are recorded in this order (ties keep status order). */
const ORDER: Partial<Record<AuditEventKind, number>> = {
  StepStarted: 1,
  GPUWait: 2,
  StepFinished: 3,
  ReviewVerdict: 3,
  TaskSucceeded: 4,
  TaskFailed: 4,
  TaskTimedOut: 4,
  TaskCanceled: 4,
  ResultsPublished: 5,
};

export function lifecycleRank(f: Pick<AuditFact, "kind">): number {
  return ORDER[f.kind] ?? 0;
}

/** The study participants of a task's facts (audit records exist to hold them). */
export function taskStudy(task: InferenceTask): NonNullable<AuditFact["study"]> {
  const s = task.spec.study ?? { studyInstanceUID: "" }; // a settled task in the cache has none
  return {
    studyInstanceUID: s.studyInstanceUID,
    ...(s.accessionNumber ? { accessionNumber: s.accessionNumber } : {}),
    ...(s.callingAETitle ? { callingAETitle: s.callingAETitle } : {}),
    ...(s.calledAETitle ? { calledAETitle: s.calledAETitle } : {}),
  };
}

/** One fact about the task, with the task's identity and study filled in. */
export function taskFact(
  task: InferenceTask,
  kind: AuditEventKind,
  outcome: AuditOutcome,
  time: string | undefined,
  more: Partial<Pick<AuditFact, "step" | "reason" | "description" | "destination">> = {},
): AuditFact {
  return {
    id: factId(task.metadata.uid ?? "", kind, more.step, more.reason),
    kind,
    time: time ?? new Date().toISOString(),
    outcome,
    namespace: task.metadata.namespace,
    workflow: task.spec.workflowRef.name,
    task: task.metadata.name,
    ...more,
    study: taskStudy(task),
  };
}

/** A step the operator created a Job for (or tried to: a name held by another object is not one). */
function started(s: StepStatus): boolean {
  return s.jobName !== undefined && s.startTime !== undefined && s.reason !== "JobNameConflict";
}

/** Every fact the task's status implies, in lifecycle order. */
export function taskFacts(task: InferenceTask): AuditFact[] {
  const status = task.status;
  if (!status || !task.metadata.uid) return [];
  const out: AuditFact[] = [];
  const gpuSince = status.conditions?.find((c) => c.type === "WaitingForGPU")?.lastTransitionTime;
  for (const s of status.steps ?? []) {
    if (started(s)) out.push(taskFact(task, "StepStarted", "success", s.startTime, { step: s.name }));
    if (s.phase === "WaitingForGPU")
      out.push(taskFact(task, "GPUWait", "success", gpuSince, { step: s.name, description: s.message }));
    if (s.phase === "Succeeded")
      out.push(taskFact(task, "StepFinished", "success", s.completionTime, { step: s.name }));
    else if (s.phase === "Skipped")
      out.push(taskFact(task, "StepFinished", "success", s.completionTime, { step: s.name, reason: "Skipped" }));
    else if (s.phase === "Failed")
      out.push(
        taskFact(task, "StepFinished", "seriousFailure", s.completionTime, {
          step: s.name,
          reason: s.reason,
          description: s.message,
        }),
      );
  }
  const ended = status.conditions?.find((c) => c.type === "Succeeded");
  const at = status.completionTime;
  if (status.phase === "Succeeded") out.push(taskFact(task, "TaskSucceeded", "success", at));
  else if (status.phase === "Canceled")
    out.push(taskFact(task, "TaskCanceled", "minorFailure", at, { reason: "Canceled" }));
  else if (status.phase === "Failed") {
    const reason = ended?.reason ?? "Failed";
    out.push(
      taskFact(task, reason === "QueueTimeout" ? "TaskTimedOut" : "TaskFailed", "seriousFailure", at, {
        reason,
        description: ended?.message,
      }),
    );
  }
  out.push(...reviewFacts(task)); // a reviewer's verdict (src/audit/review-facts.ts)
  if (status.resultsPublished) out.push(resultsPublishedFact(task, status.resultsPublished));
  return out.sort((a, b) => lifecycleRank(a) - lifecycleRank(b));
}

/** A task deleted before it ended: canceled by its deletion (the object is about to go). */
export function taskDeletedFact(task: InferenceTask): AuditFact {
  const at = task.metadata.deletionTimestamp;
  return taskFact(task, "TaskCanceled", "minorFailure", at ? new Date(at).toISOString() : undefined, {
    reason: "Deleted",
  });
}

/** The task's results went out (destination: the subjects, no PHI). */
export function resultsPublishedFact(task: InferenceTask, time: string, destination?: string): AuditFact {
  return taskFact(task, "ResultsPublished", "success", time, destination ? { destination } : {});
}
