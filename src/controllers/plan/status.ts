// The task's status assembled from its verdict, steps and conditions: times, duration, currentStep.
import type { Condition, InferenceTask, InferenceTaskStatus, StepStatus } from "../../api/v1alpha1/index.ts";
import { formatDuration, iso, summariseSteps } from "./format.ts";
import { FINISHED_STEP } from "./step-phase.ts";
import { isTerminal, type TaskVerdict } from "./task-phase.ts";

/** Steps on their way (running, waiting for a GPU, or started and pending), else the last finished. */
export function currentStep(steps: readonly StepStatus[]): string | undefined {
  const inProgress = steps.filter(
    (s) => s.phase === "Running" || s.phase === "WaitingForGPU" || (s.phase === "Pending" && s.startTime),
  );
  if (inProgress.length) return summariseSteps(inProgress.map((s) => s.name));
  return [...steps].reverse().find((s) => FINISHED_STEP.has(s.phase) && s.phase !== "Canceled")?.name;
}

export function taskStatus(
  task: InferenceTask,
  verdict: TaskVerdict,
  steps: StepStatus[],
  conditions: Condition[],
  now: number,
): InferenceTaskStatus {
  const prev = task.status ?? {};
  const { phase } = verdict;
  const startTime = prev.startTime ?? (phase === "Running" || isTerminal(phase) ? iso(now) : undefined);
  const completionTime = isTerminal(phase) ? iso(now) : undefined;
  return {
    observedGeneration: task.metadata.generation,
    phase,
    currentStep: currentStep(steps),
    conditions,
    steps,
    startTime,
    completionTime,
    duration: completionTime
      ? formatDuration(
          Date.parse(completionTime) -
            Date.parse(startTime ?? (task.metadata.creationTimestamp as string) ?? completionTime),
        )
      : undefined,
    resultsPublished: prev.resultsPublished,
  };
}
