// The audit facts of a task's clinical reviews (src/controllers/review.ts), derived, like the other
// task facts (task-facts.ts), from what the task durably records: its status (verdict, reviewer,
// when) and spec.reviews (the reviewer's note). Pure.
import type { InferenceTask } from "../api/v1alpha1/index.ts";
import type { AuditFact } from "./facts.ts";

/**
 * The audit facts of a task's reviews, from what its status and spec durably record: one
 * ReviewVerdict per decided review step, the reviewer as the acting user and their note as the
 * description (audit records may hold it; nothing else does). Ids follow the task facts' scheme
 * (<uid>:ReviewVerdict:<step>:<verdict>), so deriving them again after a restart repeats nothing.
 */
export function reviewFacts(task: InferenceTask): AuditFact[] {
  const uid = task.metadata.uid;
  if (!uid) return [];
  const s = task.spec.study;
  const out: AuditFact[] = [];
  for (const st of task.status?.steps ?? []) {
    const r = st.review;
    if (!r?.verdict) continue;
    const note = task.spec.reviews?.find((v) => v.step === st.name)?.reason;
    // the verdict's time comes from the reviewer's client: normalised, or the step's end instead
    const when = [r.verdict === "TimedOut" ? r.deadline : r.reviewedAt, st.completionTime]
      .map((t) => (t ? Date.parse(t) : Number.NaN))
      .find((t) => Number.isFinite(t));
    out.push({
      id: `${uid}:ReviewVerdict:${st.name}:${r.verdict}`,
      kind: "ReviewVerdict",
      time: new Date(when ?? Date.now()).toISOString(),
      outcome: r.verdict === "TimedOut" ? (st.phase === "Failed" ? "seriousFailure" : "minorFailure") : "success",
      namespace: task.metadata.namespace,
      workflow: task.spec.workflowRef.name,
      task: task.metadata.name,
      step: st.name,
      reason: r.verdict,
      ...(r.reviewer ? { user: r.reviewer } : {}),
      ...(note ? { description: note } : {}),
      study: {
        studyInstanceUID: s.studyInstanceUID,
        ...(s.accessionNumber ? { accessionNumber: s.accessionNumber } : {}),
        ...(s.callingAETitle ? { callingAETitle: s.callingAETitle } : {}),
        ...(s.calledAETitle ? { calledAETitle: s.calledAETitle } : {}),
      },
    });
  }
  return out;
}
