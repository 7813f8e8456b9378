// Admission of step Jobs under the global cap and each workflow's concurrency.maxRunning,
// in clinical order: stat before urgent before routine before batch, oldest first within a
// priority. Running Jobs are counted from the Job informer; Jobs just created and not yet seen
// there are held as reservations so a burst of reconciles cannot overshoot a cap.
import { PRIORITY_ORDER, type Priority } from "../api/v1alpha1/index.ts";
import { runningJobs } from "../metrics/metrics.ts";

export interface Waiter {
  key: string; // namespace/name of the task
  workflowKey: string; // namespace/workflow
  priority: Priority;
  created: string; // RFC 3339 creation time of the task
}

export interface DispatcherOptions {
  globalCap: number; // 0 = none
  /** maxRunning of a workflow, by namespace/name; undefined = none */
  workflowCap: (workflowKey: string) => number | undefined;
  /** running (not finished) radflow Jobs, by namespace/workflow; from the Job informer */
  running: () => { total: number; byWorkflow: Map<string, number> };
  /** asks for a reconcile of tasks that may now start */
  wake: (taskKey: string, priority: Priority) => void;
}

/** Waiters woken beyond the free slots, in case one of them no longer wants its slot. */
const SPARE_WAKEUPS = 4;

function before(a: Waiter, b: Waiter): number {
  return (
    PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority] ||
    a.created.localeCompare(b.created) ||
    a.key.localeCompare(b.key)
  );
}

export class Dispatcher {
  private readonly waiting = new Map<string, Waiter>();
  /** the waiters in clinical order, kept sorted as they come and go (no sort per reconcile) */
  private readonly queue: Waiter[] = [];
  private readonly reserved = new Map<string, { workflowKey: string; at: number }>();
  private readonly o: DispatcherOptions;

  constructor(o: DispatcherOptions) {
    this.o = o;
  }

  /** How many new Jobs the task may start now. Unlimited (Infinity) without caps. */
  capacityFor(w: Waiter): number {
    const wfCap = this.o.workflowCap(w.workflowKey);
    if (!this.o.globalCap && wfCap === undefined) return Number.POSITIVE_INFINITY;
    const { total, byWorkflow } = this.counts();
    let globalFree = this.o.globalCap ? this.o.globalCap - total : Number.POSITIVE_INFINITY;
    const wfFree = new Map<string, number>();
    const free = (wk: string) => {
      if (!wfFree.has(wk)) {
        const cap = this.o.workflowCap(wk);
        wfFree.set(wk, cap === undefined ? Number.POSITIVE_INFINITY : cap - (byWorkflow.get(wk) ?? 0));
      }
      return wfFree.get(wk) as number;
    };
    // Walk the waiters ahead of this task in clinical order, handing out one slot each; the task
    // gets a slot only if everyone ahead of it that can use one has had theirs. Without a global
    // cap only its own workflow's waiters compete with it.
    for (const x of this.queue) {
      if (before(x, w) >= 0) break;
      if (globalFree <= 0) return 0;
      if (x.key === w.key) continue;
      if (!this.o.globalCap && x.workflowKey !== w.workflowKey) continue;
      const f = free(x.workflowKey);
      if (f > 0) {
        globalFree -= 1;
        wfFree.set(x.workflowKey, f - 1);
      }
    }
    return Math.max(0, Math.min(globalFree, free(w.workflowKey)));
  }

  /** The task could not start everything it wanted: it waits its turn. */
  wait(w: Waiter): void {
    if (this.waiting.has(w.key)) return;
    this.waiting.set(w.key, w);
    this.queue.splice(this.position(w), 0, w);
  }

  /** The task got what it wanted, ended or went away. */
  forget(taskKey: string): void {
    const w = this.waiting.get(taskKey);
    if (!w) return;
    this.waiting.delete(taskKey);
    const i = this.position(w);
    if (this.queue[i]?.key === taskKey) this.queue.splice(i, 1);
  }

  /** Index of w in the sorted queue (or where it would go): binary search. */
  private position(w: Waiter): number {
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(this.queue[mid] as Waiter, w) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** A Job was created and may not be in the informer yet. */
  reserve(jobKey: string, workflowKey: string): void {
    this.reserved.set(jobKey, { workflowKey, at: Date.now() });
  }

  /** The informer saw the Job (or it is gone): the reservation is no longer needed. */
  observed(jobKey: string): void {
    this.reserved.delete(jobKey);
  }

  /**
   * Capacity may have freed (a Job ended or vanished): wake the waiters that can start now, in
   * clinical order — handing out the free slots as capacityFor will, so a waiter held back by its
   * own workflow's maxRunning is passed over instead of taking a wake-up (and the free GPU) from a
   * task further back that could run. A few spares are woken too, in case a woken task no longer
   * wants its slot (it was canceled, or started through another reconcile).
   */
  capacityChanged(): void {
    if (this.waiting.size === 0) return;
    const { total, byWorkflow } = this.counts();
    let globalFree = this.o.globalCap ? this.o.globalCap - total : Number.POSITIVE_INFINITY;
    if (globalFree <= 0) return;
    const wfRoom = new Map<string, number>(); // a workflow's free room before this pass hands any out
    const wfFree = new Map<string, number>();
    let spares = SPARE_WAKEUPS;
    for (const w of this.queue) {
      let room = wfRoom.get(w.workflowKey);
      if (room === undefined) {
        const cap = this.o.workflowCap(w.workflowKey);
        room = cap === undefined ? Number.POSITIVE_INFINITY : cap - (byWorkflow.get(w.workflowKey) ?? 0);
        wfRoom.set(w.workflowKey, room);
      }
      if (room <= 0) continue; // its workflow is at its maxRunning: it cannot start, whatever frees elsewhere
      const f = wfFree.get(w.workflowKey) ?? room;
      if (globalFree > 0 && f > 0) {
        globalFree -= 1;
        wfFree.set(w.workflowKey, f - 1);
      } else if (spares > 0) {
        spares -= 1; // could start if one woken ahead of it does not take its slot
      } else if (globalFree <= 0) break;
      else continue;
      this.o.wake(w.key, w.priority);
    }
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  private counts(): { total: number; byWorkflow: Map<string, number> } {
    const r = this.o.running();
    const byWorkflow = new Map(r.byWorkflow);
    let total = r.total;
    const now = Date.now();
    for (const [k, v] of this.reserved) {
      if (now - v.at > 60_000) {
        this.reserved.delete(k); // the informer never saw it: creation must have failed after all
        continue;
      }
      total += 1;
      byWorkflow.set(v.workflowKey, (byWorkflow.get(v.workflowKey) ?? 0) + 1);
    }
    runningJobs.set(total);
    return { total, byWorkflow };
  }
}
