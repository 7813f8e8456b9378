// Policy 5, what changed since the last status, told as Events and audit facts. A one-step task's
// story is its task-level Events (Succeeded, or a Warning): per-step Normal Events would only repeat
// them, and every Event is an API write (the budget is five writes per single-step study). Pure.
import type { StepStatus, TaskPhase } from "../../api/v1alpha1/index.ts";
import { reviewEvents } from "../review.ts";
import { START_FAILURES } from "./observe-step.ts";
import { isTerminal, type TaskVerdict } from "./task-phase.ts";
import type { PlannedAudit, PlannedEvent, PlannedJob } from "./types.ts";

export interface Told {
  events: PlannedEvent[];
  audits: PlannedAudit[];
}

export interface TransitionInput {
  multiStep: boolean;
  prevSteps: ReadonlyMap<string, StepStatus>;
  steps: readonly StepStatus[];
  create: readonly PlannedJob[];
  jobCreateFailures?: Record<string, unknown>;
  reviewed: readonly { step: string; verdict: string; reviewer?: string }[];
  prevPhase: TaskPhase | undefined;
  verdict: TaskVerdict;
}

/** Jobs created in this plan: StepStarted (the Event only for a multi-step task). */
export function startTransitions(
  create: readonly PlannedJob[],
  prevSteps: ReadonlyMap<string, StepStatus>,
  multiStep: boolean,
  told: Told,
): void {
  for (const c of create) {
    // re-sent create while the informer had not shown our Job yet: already announced
    if (prevSteps.get(c.step.name)?.reason === "JobCreated") continue;
    if (multiStep)
      told.events.push({ type: "Normal", reason: "StepStarted", note: `step ${c.step.name}: Job created` });
    told.audits.push({ kind: "StepStarted", outcome: "success", step: c.step.name });
  }
}

/** A step's own news: a refused create, a container that cannot start, a new phase. */
export function stepTransition(
  s: StepStatus,
  wasStep: StepStatus | undefined,
  createRefused: boolean,
  multiStep: boolean,
  told: Told,
): void {
  const { events, audits } = told;
  if (s.reason === "JobCreateFailed" && createRefused) {
    events.push({ type: "Warning", reason: "JobCreateFailed", note: `step ${s.name}: ${s.message ?? ""}` });
  }
  if (s.phase === "Pending" && START_FAILURES.has(s.reason ?? "") && wasStep?.reason !== s.reason) {
    events.push({ type: "Warning", reason: s.reason as string, note: `step ${s.name}: ${s.message ?? ""}` });
  }
  if (s.phase === wasStep?.phase) return;
  if (s.phase === "WaitingForGPU") {
    events.push({ type: "Warning", reason: "WaitingForGPU", note: `step ${s.name}: ${s.message ?? "unschedulable"}` });
    audits.push({ kind: "GPUWait", outcome: "success", step: s.name, description: s.message });
  } else if (s.phase === "Succeeded") {
    if (multiStep) events.push({ type: "Normal", reason: "StepSucceeded", note: `step ${s.name} succeeded` });
    audits.push({ kind: "StepFinished", outcome: "success", step: s.name });
  } else if (s.phase === "Skipped") {
    events.push({
      type: "Normal",
      reason: "StepSkipped",
      note: `step ${s.name} skipped: ${s.message ?? "`when` is false"}`,
    });
    audits.push({ kind: "StepFinished", outcome: "success", step: s.name, reason: "Skipped" });
  } else if (s.phase === "Failed") {
    events.push({ type: "Warning", reason: "StepFailed", note: `step ${s.name}: ${s.message ?? s.reason}` });
    audits.push({
      kind: "StepFinished",
      outcome: "seriousFailure",
      step: s.name,
      reason: s.reason,
      description: s.message,
    });
  }
}

/** The task's end, once: Succeeded, Canceled, or the Warning that names why it failed. */
export function endTransition(prevPhase: TaskPhase | undefined, verdict: TaskVerdict, told: Told): void {
  const { phase, reason, message } = verdict;
  if (phase === prevPhase || !isTerminal(phase)) return;
  if (phase === "Succeeded") {
    told.events.push({ type: "Normal", reason: "Succeeded", note: message });
    told.audits.push({ kind: "TaskSucceeded", outcome: "success" });
  } else if (phase === "Canceled") {
    told.events.push({ type: "Normal", reason: "Canceled", note: message });
    told.audits.push({ kind: "TaskCanceled", outcome: "minorFailure", reason: "Canceled" });
  } else {
    told.events.push({ type: "Warning", reason, note: message });
    told.audits.push({
      kind: reason === "QueueTimeout" ? "TaskTimedOut" : "TaskFailed",
      outcome: "seriousFailure",
      reason,
      description: message,
    });
  }
}

/** Every Event and audit fact of one plan, in the order they happened. */
export function transitions(t: TransitionInput): Told {
  const told: Told = { events: [], audits: [] };
  startTransitions(t.create, t.prevSteps, t.multiStep, told);
  for (const s of t.steps)
    stepTransition(s, t.prevSteps.get(s.name), t.jobCreateFailures?.[s.name] !== undefined, t.multiStep, told);
  // review gate: Events for a review's start and its verdict (names and reviewers, never the note)
  told.events.push(...reviewEvents(t.prevSteps, t.steps, t.reviewed));
  endTransition(t.prevPhase, t.verdict, told);
  return told;
}
