// The review gate's metrics (docs/ARCHITECTURE.md §6): how long reviews waited for their verdict
// (a histogram, observed when the verdict is written), and how many wait now and for how long
// (gauges, refreshed from the task cache). Labels: workflow, priority, verdict — no study values.
import type { InferenceTask } from "../api/v1alpha1/index.ts";
import { oldestReviewWait, reviewsAwaiting, reviewWait } from "../metrics/metrics.ts";
import { awaitingReviews, reviewWaits } from "./review.ts";

/** After a status write: the reviews it decided, with how long each waited. */
export function observeReviewWaits(task: InferenceTask, next: InferenceTask["status"]): void {
  for (const w of reviewWaits(task.status?.steps, next?.steps)) {
    reviewWait.observe(
      { workflow: task.spec.workflowRef.name, priority: task.spec.priority, verdict: w.verdict },
      w.seconds,
    );
  }
}

/** From the task cache: reviews waiting now and the oldest wait, per priority. */
export function updateReviewGauges(tasks: Iterable<InferenceTask>, now: number): void {
  const by = awaitingReviews(tasks, now);
  for (const priority of ["stat", "urgent", "routine", "batch"]) {
    reviewsAwaiting.set({ priority }, by.get(priority)?.count ?? 0);
    oldestReviewWait.set({ priority }, by.get(priority)?.oldestSeconds ?? 0);
  }
}
