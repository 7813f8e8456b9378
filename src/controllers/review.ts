// The clinical review gate (docs/ARCHITECTURE.md §3, "Review steps"): a step with `review` runs no
// container. Once its dependencies are done (and its `when` holds) it waits, Running with reason
// AwaitingReview, until a reviewer's verdict appears in the task's spec.reviews (written by
// `radflow review accept|reject`, with the reviewer's Kubernetes user name) or its timeout passes.
// The verdict becomes the step's outputs — { accepted, verdict } — which later steps' `when` reads
// (steps.<review>.outputs.accepted). A rejection is a finished review, not a failed step: what is
// not to happen after one is said by `when` — unless the workflow says onReject: Fail, which fails
// the task (MONAI's behaviour). A timeout fails the step or skips it (accepted false), as the
// workflow says.
//
// Pure: the planner calls it with the clock; no I/O. Messages, reasons and Events name steps and
// reviewers only: the reviewer's note (free text) goes to status and the audit trail, nowhere else.
import type { Condition, InferenceTask, ReviewVerdict, Step, StepStatus } from "../api/v1alpha1/index.ts";

export const AWAITING_REVIEW = "AwaitingReview";
export const REVIEW_TIMEOUT = "ReviewTimeout";
export const DEFAULT_REVIEW_TIMEOUT_SECONDS = 86400;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/** The verdict spec.reviews holds for a step, if any. */
export function verdictFor(task: InferenceTask, step: string): ReviewVerdict | undefined {
  return task.spec.reviews?.find((r) => r.step === step);
}

export interface ReviewOutcome {
  status: StepStatus;
  /** when to plan again without an informer event: the review's deadline */
  recheckAt?: number;
  /** the step's review ended in this plan: audit who decided what */
  decided?: { verdict: "Accepted" | "Rejected" | "TimedOut"; reviewer?: string; reason?: string };
}

/**
 * A review step whose dependencies are done and whose `when` holds: waiting, decided, or timed out.
 * `before` is the step's previous status (undefined the first time).
 */
export function planReview(
  task: InferenceTask,
  step: Step,
  before: StepStatus | undefined,
  now: number,
): ReviewOutcome {
  const timeoutSeconds = step.review?.timeoutSeconds ?? DEFAULT_REVIEW_TIMEOUT_SECONDS;
  const requestedAt = before?.review?.requestedAt ?? before?.startTime ?? iso(now);
  const deadlineMs = Date.parse(requestedAt) + timeoutSeconds * 1000;
  const deadline = iso(deadlineMs);
  const base = { name: step.name, startTime: before?.startTime ?? requestedAt };
  const v = verdictFor(task, step.name);
  // A verdict present wins over a deadline that passed while the operator was not looking: the
  // reviewer did review. Once the step has finished the planner keeps its status as recorded.
  if (v) {
    const accepted = v.verdict === "Accepted";
    // onReject Fail: a rejection stops the task (nothing after it runs or is exported), as MONAI does
    const fail = !accepted && step.review?.onReject === "Fail";
    return {
      status: {
        ...base,
        phase: fail ? "Failed" : "Succeeded",
        reason: v.verdict,
        message: `${accepted ? "accepted" : "rejected"} by ${v.reviewer}`,
        completionTime: iso(now),
        outputs: { accepted, verdict: v.verdict },
        review: { requestedAt, deadline, verdict: v.verdict, reviewer: v.reviewer, reviewedAt: v.time },
      },
      decided: { verdict: v.verdict, reviewer: v.reviewer, reason: v.reason },
    };
  }
  if (now >= deadlineMs) {
    const skip = step.review?.onTimeout === "Skip";
    return {
      status: {
        ...base,
        phase: skip ? "Skipped" : "Failed",
        reason: REVIEW_TIMEOUT,
        message: `no verdict within ${timeoutSeconds}s (review.timeoutSeconds); ${skip ? "skipped, not accepted" : "the review failed"}`,
        completionTime: iso(now),
        // a skipped review still answers `steps.<review>.outputs.accepted` (false), so later steps
        // that test it run as not accepted instead of failing with a ConditionError
        outputs: skip ? { accepted: false, verdict: "TimedOut" } : undefined,
        review: { requestedAt, deadline, verdict: "TimedOut" },
      },
      decided: { verdict: "TimedOut" },
    };
  }
  return {
    status: {
      ...base,
      phase: "Running",
      reason: AWAITING_REVIEW,
      message: `waiting for a reviewer's verdict (radflow review accept|reject ${task.metadata.name}); times out at ${deadline}`,
      review: { requestedAt, deadline },
    },
    recheckAt: deadlineMs,
  };
}

/**
 * The task's AwaitingReview condition: True while a review step waits (naming the steps and the
 * earliest deadline), False once none does; absent for tasks that never had a review step.
 */
export function reviewCondition(
  prev: Condition[] | undefined,
  steps: readonly StepStatus[],
  now: number,
  generation: number | undefined,
): Condition | undefined {
  const waiting = steps.filter((s) => s.phase === "Running" && s.reason === AWAITING_REVIEW);
  const old = prev?.find((c) => c.type === AWAITING_REVIEW);
  const reviewed = steps.filter((s) => s.review !== undefined);
  if (waiting.length === 0 && !old && reviewed.length === 0) return undefined;
  let status: Condition["status"];
  let reason: string;
  let message: string;
  if (waiting.length > 0) {
    status = "True";
    reason = AWAITING_REVIEW;
    const first = waiting.map((s) => s.review?.deadline ?? "").sort()[0];
    message = `step ${waiting.map((s) => s.name).join(", ")} awaits a reviewer's verdict${first ? ` (times out at ${first})` : ""}`;
  } else {
    status = "False";
    const last = [...reviewed].reverse().find((s) => s.review?.verdict);
    const verdict = last?.review?.verdict;
    reason = verdict === "TimedOut" ? REVIEW_TIMEOUT : (verdict ?? "NotAwaiting");
    message = last
      ? `step ${last.name}: ${verdict === "TimedOut" ? "no verdict in time" : `${verdict?.toLowerCase()} by ${last.review?.reviewer}`}`
      : "no step awaits a review";
  }
  return {
    type: AWAITING_REVIEW,
    status,
    reason,
    message: message.slice(0, 1024),
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : iso(now),
    observedGeneration: generation,
  };
}

/** Review steps that got their verdict (or timed out) between two statuses, with the seconds they waited: for the review-wait histogram. */
export function reviewWaits(
  before: readonly StepStatus[] | undefined,
  after: readonly StepStatus[] | undefined,
): { step: string; verdict: string; seconds: number }[] {
  const was = new Map((before ?? []).map((s) => [s.name, s]));
  const out: { step: string; verdict: string; seconds: number }[] = [];
  for (const s of after ?? []) {
    const r = s.review;
    if (!r?.verdict || was.get(s.name)?.review?.verdict) continue;
    const end = r.verdict === "TimedOut" ? Date.parse(r.deadline) : Date.parse(r.reviewedAt ?? s.completionTime ?? "");
    const seconds = (end - Date.parse(r.requestedAt)) / 1000;
    if (Number.isFinite(seconds)) out.push({ step: s.name, verdict: r.verdict, seconds: Math.max(0, seconds) });
  }
  return out;
}

/** Review steps waiting now, by priority, and the longest wait (seconds): for the gauges. */
export function awaitingReviews(
  tasks: Iterable<InferenceTask>,
  now: number,
): Map<string, { count: number; oldestSeconds: number }> {
  const out = new Map<string, { count: number; oldestSeconds: number }>();
  for (const t of tasks) {
    for (const s of t.status?.steps ?? []) {
      if (s.phase !== "Running" || s.reason !== AWAITING_REVIEW) continue;
      const e = out.get(t.spec.priority) ?? { count: 0, oldestSeconds: 0 };
      e.count += 1;
      const since = Date.parse(s.review?.requestedAt ?? s.startTime ?? "");
      if (Number.isFinite(since)) e.oldestSeconds = Math.max(e.oldestSeconds, (now - since) / 1000);
      out.set(t.spec.priority, e);
    }
  }
  return out;
}

/** Events for the review steps of one plan: a review that began to wait, and each verdict. */
export function reviewEvents(
  prevSteps: ReadonlyMap<string, StepStatus>,
  steps: readonly StepStatus[],
  decided: readonly { step: string; verdict: string; reviewer?: string }[],
): { type: "Normal" | "Warning"; reason: string; note: string }[] {
  const out: { type: "Normal" | "Warning"; reason: string; note: string }[] = [];
  for (const s of steps) {
    if (s.phase === "Running" && s.reason === AWAITING_REVIEW && prevSteps.get(s.name)?.reason !== AWAITING_REVIEW)
      out.push({
        type: "Normal",
        reason: AWAITING_REVIEW,
        note: `step ${s.name} awaits a reviewer's verdict until ${s.review?.deadline}`,
      });
  }
  for (const d of decided) {
    if (d.verdict === "TimedOut")
      out.push({
        type: "Warning",
        reason: REVIEW_TIMEOUT,
        note: `step ${d.step}: no verdict before the review's timeout`,
      });
    else
      out.push({
        type: "Normal",
        reason: d.verdict === "Accepted" ? "ReviewAccepted" : "ReviewRejected",
        note: `step ${d.step} ${d.verdict.toLowerCase()} by ${d.reviewer}`,
      });
  }
  return out;
}
