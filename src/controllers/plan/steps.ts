// Every step of a task decided in dependency order, sharing the free slots the dispatcher gave.
import type { Step, StepStatus } from "../../api/v1alpha1/index.ts";
import { DEFAULT_START_TIMEOUT_SECONDS } from "./observe-step.ts";
import { decideStep } from "./step-phase.ts";
import type { PlanInput, PlannedJob, PodView } from "./types.ts";

export interface StepsPlan {
  /** in the order the workflow lists them */
  steps: StepStatus[];
  create: PlannedJob[];
  waitingForCapacity: boolean;
  /** steps a pod of which has run: the queue timeout no longer applies to them */
  hasRun: Set<string>;
  /** times (epoch ms) to plan again without an informer event */
  rechecks: number[];
  /** reviews that ended in this plan */
  reviewed: { step: string; verdict: string; reviewer?: string; reason?: string }[];
  needsLivePods: boolean;
}

/** Steps ordered so that each comes after what it depends on; ties keep the listed order. */
export function topologicalOrder(steps: readonly Step[]): Step[] {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const out: Step[] = [];
  const state = new Map<string, 1 | 2>();
  const visit = (s: Step) => {
    if (state.get(s.name)) return; // done, or a cycle (the workflow controller rejects those)
    state.set(s.name, 1);
    for (const d of s.dependsOn ?? []) {
      const dep = byName.get(d);
      if (dep) visit(dep);
    }
    state.set(s.name, 2);
    out.push(s);
  };
  for (const s of steps) visit(s);
  return out;
}

/** Decides each step; a step ready to start takes a slot while there is one. */
export function planSteps(input: PlanInput): StepsPlan {
  const { task, now } = input;
  const prevSteps = new Map((task.status?.steps ?? []).map((s) => [s.name, s]));
  const jobsByStep = new Map(input.jobs.map((j) => [j.step, j]));
  const podsByStep = new Map<string, PodView[]>();
  for (const p of input.pods) podsByStep.set(p.step, [...(podsByStep.get(p.step) ?? []), p]);
  const limits = {
    maxBytes: input.terminationMessageMaxBytes ?? 4096,
    gpuResource: input.gpuResource ?? "nvidia.com/gpu",
    startTimeoutSeconds: input.startTimeoutSeconds ?? DEFAULT_START_TIMEOUT_SECONDS,
  };
  const out: StepsPlan = {
    steps: [],
    create: [],
    waitingForCapacity: false,
    hasRun: new Set(),
    rechecks: [],
    reviewed: [],
    needsLivePods: false,
  };
  const decided = new Map<string, StepStatus>();
  let capacity = input.capacity;
  // Plan in dependency order (the list may name a step before the steps it depends on);
  // status keeps the order the workflow lists them in.
  for (const step of topologicalOrder(task.spec.steps)) {
    const d = decideStep(step, {
      task,
      now,
      before: prevSteps.get(step.name),
      job: jobsByStep.get(step.name),
      pods: podsByStep.get(step.name) ?? [],
      decided,
      limits,
      jobConflict: input.jobConflicts?.[step.name],
      createFailure: input.jobCreateFailures?.[step.name],
      storageRefusal: input.storageRefusal,
      slotFree: capacity > 0,
    });
    if (d.create) {
      capacity -= 1;
      out.create.push({ step, inputs: d.create });
    }
    if (d.queued) out.waitingForCapacity = true;
    if (d.ran) out.hasRun.add(step.name);
    if (d.awaitingPod) out.needsLivePods = true;
    if (d.recheckAt !== undefined) out.rechecks.push(d.recheckAt);
    if (d.reviewed) out.reviewed.push({ step: step.name, ...d.reviewed });
    out.steps.push(d.status);
    decided.set(step.name, d.status);
  }
  const order = new Map(task.spec.steps.map((st, i) => [st.name, i]));
  out.steps.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));
  return out;
}
