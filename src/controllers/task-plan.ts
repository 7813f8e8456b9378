// Planning for one InferenceTask: observed state in, desired status and the writes that get
// there out. Pure (no I/O, the clock is an argument) so every transition is a table test.
//
// planTask is a composition of named policies (src/controllers/plan/), in the order cert-manager's
// readiness controller runs its policy chain: observe each step's Job and decide its phase
// (plan/steps.ts, plan/step-phase.ts, plan/observe-step.ts) → the task's phase (plan/task-phase.ts)
// → conditions (plan/conditions.ts) → status (plan/status.ts) → what changed, as Events and audit
// facts (plan/transitions.ts) → when to look again (plan/requeue.ts). The steps controller compares
// the result with what is stored and writes once (status-writes.ts).
import { TASK_FINALIZER } from "../api/v1alpha1/index.ts";
import { taskConditions } from "./plan/conditions.ts";
import { endedTaskTtl, nextRequeue } from "./plan/requeue.ts";
import { taskStatus } from "./plan/status.ts";
import { planSteps } from "./plan/steps.ts";
import { isTerminal, startWaiters, stopUnfinished, taskPhase } from "./plan/task-phase.ts";
import { transitions } from "./plan/transitions.ts";
import type { JobView, Plan, PlanInput } from "./plan/types.ts";

export { formatDuration, sameJson, summariseSteps } from "./plan/format.ts";
export { DEFAULT_START_TIMEOUT_SECONDS, START_FAILURES } from "./plan/observe-step.ts";
export { parseOutputs } from "./plan/outputs.ts";
export { effectiveTtl } from "./plan/requeue.ts";
export { topologicalOrder } from "./plan/steps.ts";
export { isTerminal } from "./plan/task-phase.ts";
export type { JobView, Plan, PlanInput, PlannedAudit, PlannedEvent, PodView } from "./plan/types.ts";

export const FINALIZER = TASK_FINALIZER;

function emptyPlan(input: PlanInput): Plan {
  return {
    status: input.task.status ?? {},
    create: [],
    deleteJobs: [],
    waitingForCapacity: false,
    events: [],
    audits: [],
    addFinalizer: false,
    removeFinalizer: false,
    deleteTask: false,
    publishResults: false,
  };
}

/** Jobs that still run (or hold a slot): not finished and not being deleted. */
const activeJobs = (jobs: readonly JobView[]) => jobs.filter((j) => !j.deleting && !j.complete && !j.failedCondition);

/** Deleted: remove the Jobs; the finalizer holds the task until they are gone. */
export function planDeleted(input: PlanInput): Plan {
  const plan = emptyPlan(input);
  const { task } = input;
  plan.deleteJobs = input.jobs.filter((j) => !j.deleting).map((j) => j.name);
  plan.removeFinalizer = input.jobs.length === 0 && (task.metadata.finalizers ?? []).includes(FINALIZER);
  if (!isTerminal(task.status?.phase) && plan.removeFinalizer) {
    plan.audits.push({ kind: "TaskCanceled", outcome: "minorFailure", reason: "Deleted" });
  }
  return plan;
}

/** Already ended: clean up, make sure results went out, honour the TTL. */
export function planEnded(input: PlanInput): Plan {
  const plan = emptyPlan(input);
  plan.addFinalizer = !(input.task.metadata.finalizers ?? []).includes(FINALIZER);
  plan.deleteJobs = activeJobs(input.jobs).map((j) => j.name);
  plan.publishResults = !input.task.status?.resultsPublished;
  const ttl = endedTaskTtl(input);
  plan.deleteTask = ttl.deleteTask;
  if (ttl.requeueAfterMs !== undefined) plan.requeueAfterMs = ttl.requeueAfterMs;
  return plan;
}

/** A task on its way: steps → task phase → conditions → status → Events and audit facts → requeue. */
export function planRunning(input: PlanInput): Plan {
  const { task, now } = input;
  const prev = task.status ?? {};
  const plan = emptyPlan(input);
  plan.addFinalizer = !(task.metadata.finalizers ?? []).includes(FINALIZER);

  const s = planSteps(input);
  const waiting = startWaiters(s.steps, s.hasRun);
  const verdict = taskPhase(task, s.steps, waiting, now);
  const ended = isTerminal(verdict.phase);
  // nothing new starts once the task has ended; what runs is stopped
  const steps = ended ? stopUnfinished(s.steps, verdict, now) : s.steps;
  plan.create = ended ? [] : s.create;
  plan.waitingForCapacity = ended ? false : s.waitingForCapacity;
  if (s.needsLivePods) plan.needsLivePods = true;
  if (ended) {
    plan.deleteJobs = activeJobs(input.jobs).map((j) => j.name);
    plan.publishResults = !prev.resultsPublished;
  }

  const conditions = taskConditions(prev.conditions, verdict, steps, now, task.metadata.generation);
  plan.status = taskStatus(task, verdict, steps, conditions, now);
  const told = transitions({
    multiStep: task.spec.steps.length > 1,
    prevSteps: new Map((prev.steps ?? []).map((st) => [st.name, st])),
    steps,
    create: plan.create,
    jobCreateFailures: input.jobCreateFailures,
    reviewed: s.reviewed,
    prevPhase: prev.phase,
    verdict,
  });
  plan.events = told.events;
  plan.audits = told.audits;
  plan.requeueAfterMs = nextRequeue(task, verdict.phase, waiting, s.rechecks, now, input.defaultTtlSeconds);
  return plan;
}

export function planTask(input: PlanInput): Plan {
  if (input.task.metadata.deletionTimestamp) return planDeleted(input);
  if (isTerminal(input.task.status?.phase)) return planEnded(input);
  return planRunning(input);
}
