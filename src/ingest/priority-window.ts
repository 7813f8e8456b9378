// The study events the ingest holds (delivered, not yet acked), taken most urgent first.
//
// JetStream delivers in stream order; the window is what lets a STAT study overtake the batch
// events queued in front of it: each event is routed on arrival (routing is pure and cheap) and
// waits here in the lane of its most urgent task; workers take from the most urgent lane, in
// stream order within a lane. Nothing is acked here — taking an event only starts its work.
export class PriorityWindow<T> {
  private readonly lanes: T[][];
  private readonly heads: number[];
  private readonly takers: ((v: T | undefined) => void)[] = [];
  private closed = false;
  private count = 0;

  constructor(lanes: number) {
    this.lanes = Array.from({ length: lanes }, () => []);
    this.heads = this.lanes.map(() => 0);
  }

  get size(): number {
    return this.count;
  }

  /** Adds an item to a lane (0 most urgent; out-of-range lanes are clamped). */
  push(item: T, lane: number): void {
    if (this.closed) throw new Error("priority window closed");
    const taker = this.takers.shift();
    if (taker) {
      taker(item);
      return;
    }
    const l = Math.min(this.lanes.length - 1, Math.max(0, Math.trunc(lane) || 0));
    (this.lanes[l] as T[]).push(item);
    this.count++;
  }

  /** The most urgent item, waiting for one if none is held; undefined once closed and empty. */
  take(): Promise<T | undefined> {
    const next = this.next();
    if (next !== undefined || this.closed) return Promise.resolve(next);
    return new Promise((resolve) => this.takers.push(resolve));
  }

  /** No more pushes: takers get what is held, then undefined. */
  close(): void {
    this.closed = true;
    for (const t of this.takers.splice(0)) t(undefined);
  }

  /** Removes and returns everything held, most urgent first. */
  drain(): T[] {
    const out: T[] = [];
    for (let v = this.next(); v !== undefined; v = this.next()) out.push(v);
    return out;
  }

  private next(): T | undefined {
    for (let l = 0; l < this.lanes.length; l++) {
      const q = this.lanes[l] as T[];
      const h = this.heads[l] as number;
      if (h >= q.length) continue;
      const v = q[h] as T;
      q[h] = undefined as T; // let it be collected
      // a queue read from the front: drop the consumed prefix now and then (O(1) amortised)
      if (h + 1 === q.length) {
        q.length = 0;
        this.heads[l] = 0;
      } else if (h + 1 > 1024 && (h + 1) * 2 > q.length) {
        q.splice(0, h + 1);
        this.heads[l] = 0;
      } else this.heads[l] = h + 1;
      this.count--;
      return v;
    }
    return undefined;
  }
}

/**
 * When the workers may start taking from a new window. Behind a backlog (the operator restarts
 * with thousands of events waiting) the first events delivered would otherwise be taken at once,
 * in stream order, and a STAT study deep in the backlog would wait behind their task creations:
 * routing the whole backlog first is cheap, and then the window's order decides. Opens when the
 * window holds the backlog counted at start, when nothing has arrived for `idleMs` (the count
 * was high: messages of a crashed replica come back only after ack_wait), or after `maxMs`.
 */
export class StartGate {
  readonly opened: Promise<void>;
  private open!: () => void;
  private isOpen = false;
  private seen = 0;
  private idle?: NodeJS.Timeout;
  private readonly cap?: NodeJS.Timeout;
  private readonly expected: number;

  constructor(expected: number, idleMs: number, maxMs: number) {
    this.expected = expected;
    this.opened = new Promise((resolve) => {
      this.open = resolve;
    });
    if (expected <= 0) {
      this.release();
      return;
    }
    this.cap = setTimeout(() => this.release(), maxMs);
    this.idle = setTimeout(() => this.release(), idleMs);
  }

  /** One more event is in the window. */
  arrived(): void {
    if (this.isOpen) return;
    if (++this.seen >= this.expected) {
      this.release();
      return;
    }
    this.idle?.refresh();
  }

  /** Opens now (also when the window closes). */
  release(): void {
    if (this.isOpen) return;
    this.isOpen = true;
    clearTimeout(this.idle);
    clearTimeout(this.cap);
    this.open();
  }
}
