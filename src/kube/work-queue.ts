// A keyed work queue in the shape of client-go's: a key waits at most once (de-duplicated), is
// never handed to two workers at once (a key re-added while in flight is parked until Done),
// failures come back with per-key exponential backoff under an overall rate limit, and
// requeue-after delays are honoured. Unlike client-go, keys carry a lane (0 = most urgent):
// a STAT study's key is taken before thousands of queued batch keys.
import { workQueueDepth, workQueueLatency, workQueueRetries } from "../metrics/metrics.ts";

export interface WorkQueueOptions {
  name: string;
  lanes?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** overall limit on rate-limited re-adds: tokens per second and burst (client-go: 10 / 100) */
  qps?: number;
  burst?: number;
  now?: () => number;
}

export class WorkQueue {
  private readonly lanes: Set<string>[];
  private readonly laneOf = new Map<string, number>();
  private readonly addedAt = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; t: NodeJS.Timeout }>();
  private waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;
  private tokens: number;
  private lastRefill: number;
  private readonly o: Required<Omit<WorkQueueOptions, "now">> & { now: () => number };

  constructor(o: WorkQueueOptions) {
    this.o = {
      lanes: 4,
      baseDelayMs: 5,
      maxDelayMs: 300_000,
      qps: 10,
      burst: 100,
      now: Date.now,
      ...o,
    };
    this.lanes = Array.from({ length: this.o.lanes }, () => new Set<string>());
    this.tokens = this.o.burst;
    this.lastRefill = this.o.now();
  }

  get length(): number {
    let n = 0;
    for (const l of this.lanes) n += l.size;
    return n;
  }

  /** Queue a key now. A lower lane is more urgent; a key keeps its most urgent lane. */
  add(key: string, lane = this.o.lanes - 1): void {
    if (this.shuttingDown) return;
    const l = Math.max(0, Math.min(this.o.lanes - 1, lane));
    const prev = this.laneOf.get(key);
    if (prev === undefined || l < prev) this.laneOf.set(key, l);
    if (this.dirty.has(key)) {
      // already waiting: move it up if it became more urgent
      if (prev !== undefined && l < prev && !this.processing.has(key)) {
        this.lanes[prev]?.delete(key);
        this.lanes[l]?.add(key);
      }
      return;
    }
    this.dirty.add(key);
    this.addedAt.set(key, this.o.now());
    if (this.processing.has(key)) return; // handed out again when done()
    this.lanes[this.laneOf.get(key) as number]?.add(key);
    this.publishDepth();
    this.wake();
  }

  /** Queue a key after a delay (a reconcile's requeueAfter). An earlier pending delay wins. */
  addAfter(key: string, delayMs: number, lane?: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key, lane);
      return;
    }
    const at = this.o.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.t);
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key, lane);
    }, delayMs);
    t.unref();
    this.timers.set(key, { at, t });
  }

  /** Queue a key again after a failure: per-key exponential backoff, overall token bucket. */
  addRateLimited(key: string, lane?: number): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    workQueueRetries.inc({ queue: this.o.name });
    const perKey = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** n);
    this.addAfter(key, Math.max(perKey, this.overallDelay()), lane);
  }

  /** Forget a key's failure history (after a successful reconcile). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key, or undefined once shut down and drained. */
  async get(): Promise<string | undefined> {
    const k = this.take();
    if (k !== undefined) return k;
    if (this.shuttingDown) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks a key's processing finished; a key re-added meanwhile is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.lanes[this.laneOf.get(key) ?? this.o.lanes - 1]?.add(key);
      this.publishDepth();
      this.wake();
    } else {
      this.laneOf.delete(key);
    }
  }

  /** Stop handing out keys; pending get()s resolve undefined. In-flight keys finish. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { t } of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const l of this.lanes) l.clear();
    this.dirty.clear();
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r(undefined);
  }

  get inFlight(): number {
    return this.processing.size;
  }

  private take(): string | undefined {
    for (const lane of this.lanes) {
      for (const key of lane) {
        lane.delete(key);
        this.dirty.delete(key);
        this.processing.add(key);
        this.laneOf.delete(key);
        const at = this.addedAt.get(key);
        this.addedAt.delete(key);
        if (at !== undefined) workQueueLatency.observe({ queue: this.o.name }, (this.o.now() - at) / 1000);
        this.publishDepth();
        return key;
      }
    }
    return undefined;
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      const k = this.take();
      if (k === undefined) return;
      this.waiters.shift()?.(k);
    }
  }

  private overallDelay(): number {
    const now = this.o.now();
    this.tokens = Math.min(this.o.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.o.qps);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.o.qps) * 1000;
  }

  private publishDepth(): void {
    workQueueDepth.set({ queue: this.o.name }, this.length);
  }
}

/** Runs `workers` loops taking keys from the queue until it shuts down; resolves when all stop. */
export async function runWorkers(
  queue: WorkQueue,
  workers: number,
  handle: (key: string) => Promise<void>,
): Promise<void> {
  const loop = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        await handle(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
}
