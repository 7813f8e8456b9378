// What the Job and Pod informers show of a task's steps, as the planner's tests build them: one
// copy for every planner test file (task-plan, review, the plan/ policies).
import type { JobView, PodView } from "../../../src/controllers/task-plan.ts";
import { jobName } from "../../../src/jobs/job-builder.ts";

/** Views of the Jobs and pods of task `task`, whose pods were created at `created` (RFC 3339). */
export function stepViews(task: string, created: string) {
  function job(step: string, o: Partial<JobView> = {}): JobView {
    return {
      name: jobName(task, step),
      step,
      active: 1,
      succeeded: 0,
      failed: 0,
      suspended: false,
      deleting: false,
      ...o,
    };
  }
  /** A Job the Job controller marked Complete; `at`: its status.completionTime, when the test needs one. */
  const completeJob = (step: string, o: { at?: string } = {}): JobView =>
    job(step, {
      active: 0,
      succeeded: 1,
      complete: { reason: "CompletionsReached", ...(o.at !== undefined ? { at: o.at } : {}) },
    });
  const pod = (step: string, o: Partial<PodView> = {}): PodView => ({
    name: `${jobName(task, step)}-x7k2p`,
    step,
    phase: "Pending",
    created,
    ...o,
  });
  /** The step's pod after the model exited 0, its termination message `message`. */
  const succeededPod = (step: string, message?: string): PodView =>
    pod(step, { phase: "Succeeded", terminated: { exitCode: 0, reason: "Completed", message } });
  return { job, completeJob, pod, succeededPod };
}
