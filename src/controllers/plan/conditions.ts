// Policy 4, the task's conditions: Succeeded always; WaitingForGPU, StartBlocked and AwaitingReview
// while they hold and, once they held, False afterwards. A condition's lastTransitionTime moves only
// when its status does. Pure.
import type { Condition, StepStatus } from "../../api/v1alpha1/index.ts";
import { reviewCondition } from "../review.ts";
import { iso } from "./format.ts";
import { START_FAILURES } from "./observe-step.ts";
import type { TaskVerdict } from "./task-phase.ts";

export function condition(
  prev: readonly Condition[] | undefined,
  type: string,
  status: Condition["status"],
  reason: string,
  message: string,
  now: number,
  generation: number | undefined,
): Condition {
  const old = prev?.find((c) => c.type === type);
  return {
    type,
    status,
    reason,
    message: message.slice(0, 1024),
    lastTransitionTime: old && old.status === status ? old.lastTransitionTime : iso(now),
    observedGeneration: generation,
  };
}

/** A condition that is True while `holding` has steps and False (with `clear`) once it had been True. */
function whileSteps(
  prev: readonly Condition[] | undefined,
  type: string,
  holding: readonly StepStatus[],
  on: { reason: string; message: string },
  clear: { reason: string; message: string },
  now: number,
  generation: number | undefined,
): Condition | undefined {
  if (holding.length) return condition(prev, type, "True", on.reason, on.message, now, generation);
  if (prev?.some((c) => c.type === type))
    return condition(prev, type, "False", clear.reason, clear.message, now, generation);
  return undefined;
}

/** The task's conditions for a verdict over its (final) steps. */
export function taskConditions(
  prev: readonly Condition[] | undefined,
  verdict: TaskVerdict,
  steps: readonly StepStatus[],
  now: number,
  generation: number | undefined,
): Condition[] {
  const { phase, reason, message } = verdict;
  const waitingForGpu = steps.filter((s) => s.phase === "WaitingForGPU");
  const succeeded: Condition["status"] =
    phase === "Succeeded" ? "True" : phase === "Failed" || phase === "Canceled" ? "False" : "Unknown";
  const out: Condition[] = [
    condition(
      prev,
      "Succeeded",
      succeeded,
      phase === "Running" ? (waitingForGpu.length ? "WaitingForGPU" : "Running") : reason,
      message,
      now,
      generation,
    ),
  ];
  const gpu = whileSteps(
    prev,
    "WaitingForGPU",
    waitingForGpu,
    {
      reason: "Unschedulable",
      message: waitingForGpu.map((s) => `step ${s.name}: ${s.message ?? "unschedulable"}`).join("; "),
    },
    { reason: "Scheduled", message: "no step is waiting for a GPU" },
    now,
    generation,
  );
  if (gpu) out.push(gpu);
  // A container the kubelet cannot start (bad image, missing Secret…) is shown on the task at once,
  // not only when the start timeout fails the step.
  const blocked = steps.filter((s) => s.phase === "Pending" && START_FAILURES.has(s.reason ?? ""));
  const start = whileSteps(
    prev,
    "StartBlocked",
    blocked,
    {
      reason: blocked[0]?.reason as string,
      message: blocked.map((s) => `step ${s.name}: ${s.message ?? s.reason}`).join("; "),
    },
    { reason: "NotBlocked", message: "no step is blocked from starting" },
    now,
    generation,
  );
  if (start) out.push(start);
  const awaiting = reviewCondition(prev as Condition[] | undefined, steps, now, generation);
  if (awaiting) out.push(awaiting);
  return out;
}
