// A controller in the shape of controller-runtime's: a keyed priority work queue, N workers, and
// one place that turns a reconcile's outcome into what happens to its key next (docs/ARCHITECTURE.md §9):
//
//   Result {}                  done: the key's failure history is forgotten
//   Result { requeueAfterMs }  look again after that long (a timeout coming due, a TTL)
//   throw Error                retried with per-key exponential backoff under an overall rate limit
//   throw TerminalError        recorded (metric, log, onTerminal) and not retried: retrying cannot
//                              help, and a new informer event brings the key back anyway
//
// Every controller is one of these, so reconcile metrics (radflow_reconcile_total by controller
// and result, radflow_reconcile_duration_seconds) and work-queue metrics mean the same everywhere.
import { performance } from "node:perf_hooks";
import { logger } from "../log/logger.ts";
import { reconcileDuration, reconciles } from "../metrics/metrics.ts";
import { errMessage } from "./informer.ts";
import { runWorkers, WorkQueue, type WorkQueueOptions } from "./work-queue.ts";

const log = logger("controller");

/** What a reconcile asks for its key. */
export interface Result {
  /** reconcile the key again after this many ms (even without an informer event) */
  requeueAfterMs?: number;
  /** the lane to queue it in (0 = most urgent); the controller's laneOf otherwise */
  priority?: number;
}

/** A failure that retrying cannot fix (an invalid object, a refused request): not requeued. */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TerminalError";
  }
}

export type Outcome = "ok" | "requeue" | "error" | "terminal";

export interface ControllerOptions {
  /** the controller label of the metrics and the work queue's name */
  name: string;
  reconcile: (key: string) => Promise<Result | undefined>;
  /** concurrent reconciles (a key is never reconciled twice at once) */
  workers: number;
  /** lane of a key when added without one (default: the least urgent) */
  laneOf?: (key: string) => number;
  /** false while this replica may not write (a late lease renewal, or leadership lost): a failure then is logged quietly */
  active?: () => boolean;
  /** a reconcile ended in a TerminalError (record it where people look: an Event, a condition) */
  onTerminal?: (key: string, err: TerminalError) => void;
  queue?: Omit<WorkQueueOptions, "name">;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly o: ControllerOptions;
  private running: Promise<void> | undefined;

  constructor(o: ControllerOptions) {
    this.o = o;
    this.name = o.name;
    this.queue = new WorkQueue({ name: o.name, ...o.queue });
  }

  /** Queue a key now (informer handlers call this; it does no I/O). */
  enqueue(key: string, lane?: number): void {
    this.queue.add(key, lane ?? this.o.laneOf?.(key));
  }

  /** Queue a key after a delay. */
  enqueueAfter(key: string, delayMs: number, lane?: number): void {
    this.queue.addAfter(key, delayMs, lane ?? this.o.laneOf?.(key));
  }

  /** Starts the workers (once); resolves when they have all stopped. */
  start(): Promise<void> {
    this.running ??= runWorkers(this.queue, Math.max(1, this.o.workers), async (key) => {
      await this.process(key);
    });
    return this.running;
  }

  /** Stops handing out keys and waits for the reconciles in flight. */
  async stop(): Promise<void> {
    this.queue.shutDown();
    await this.running;
  }

  /** One key through reconcile, and what its outcome means for the key (exported for tests). */
  async process(key: string): Promise<Outcome> {
    const t0 = performance.now();
    let outcome: Outcome;
    try {
      const r = (await this.o.reconcile(key)) ?? {};
      this.queue.forget(key);
      if (r.requeueAfterMs !== undefined) {
        this.queue.addAfter(key, r.requeueAfterMs, r.priority ?? this.o.laneOf?.(key));
        outcome = "requeue";
      } else outcome = "ok";
    } catch (err) {
      if (err instanceof TerminalError) {
        outcome = "terminal";
        this.queue.forget(key);
        log.warn({ controller: this.name, key, err: err.message }, "reconcile failed for good; not retrying");
        this.o.onTerminal?.(key, err);
      } else {
        outcome = "error";
        // Retried even when this replica is not active at this instant: a lease renewal that is
        // merely late makes isLeader() false for a moment (writes are fenced, so the reconcile
        // throws), and a key dropped then was never reconciled again — the demo's tasks sat with
        // a finalizer and no Job. If leadership is really lost, the manager shuts the queue down
        // (adding is then a no-op) and the next leader lists every key anyway.
        const inactive = this.o.active !== undefined && !this.o.active();
        const what = { controller: this.name, key, err: errMessage(err), retries: this.queue.retries(key) };
        if (inactive) log.info(what, "reconcile refused while the lease renewal is late; retrying with backoff");
        else log.warn(what, "reconcile failed; retrying with backoff");
        this.queue.addRateLimited(key, this.o.laneOf?.(key));
      }
    }
    reconciles.inc({ controller: this.name, result: outcome });
    reconcileDuration.observe({ controller: this.name }, (performance.now() - t0) / 1000);
    return outcome;
  }
}
