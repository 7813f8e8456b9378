// The keyed work queue: de-duplication, one worker per key, priority lanes, delays, backoff.
import { afterEach, describe, expect, it, vi } from "vitest";
import { runWorkers, WorkQueue } from "../../../src/kube/work-queue.ts";

let n = 0;
const queue = (o: Partial<ConstructorParameters<typeof WorkQueue>[0]> = {}) =>
  new WorkQueue({ name: `test-${++n}`, now: () => Date.now(), ...o });

/** Takes every key that is ready now, in order, marking each done. */
async function drain(q: WorkQueue): Promise<string[]> {
  const out: string[] = [];
  while (q.length > 0) {
    const k = (await q.get()) as string;
    out.push(k);
    q.done(k);
  }
  return out;
}

/** Whether a promise has settled after pending microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  return done;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("WorkQueue: de-duplication and ordering", () => {
  const cases: { name: string; adds: [string, number?][]; order: string[] }[] = [
    { name: "a key waits once", adds: [["a"], ["b"], ["a"], ["a"]], order: ["a", "b"] },
    {
      name: "first in, first out within a lane",
      adds: [
        ["c", 2],
        ["a", 2],
        ["b", 2],
      ],
      order: ["c", "a", "b"],
    },
    {
      name: "lane 0 before lane 3, even when added later",
      adds: [
        ["batch-1", 3],
        ["batch-2", 3],
        ["routine", 2],
        ["stat", 0],
      ],
      order: ["stat", "routine", "batch-1", "batch-2"],
    },
    {
      name: "without a lane a key goes to the last lane",
      adds: [["plain"], ["urgent", 1]],
      order: ["urgent", "plain"],
    },
    {
      name: "re-adding a waiting key in a more urgent lane moves it up",
      adds: [
        ["x", 3],
        ["y", 2],
        ["x", 0],
      ],
      order: ["x", "y"],
    },
    {
      name: "re-adding a waiting key in a less urgent lane keeps its lane",
      adds: [
        ["x", 0],
        ["y", 1],
        ["x", 3],
      ],
      order: ["x", "y"],
    },
    {
      name: "out-of-range lanes are clamped",
      adds: [
        ["low", 99],
        ["high", -1],
        ["mid", 2],
      ],
      order: ["high", "mid", "low"],
    },
  ];
  it.each(cases)("$name", async ({ adds, order }) => {
    const q = queue();
    for (const [k, lane] of adds) q.add(k, lane);
    expect(q.length).toBe(order.length);
    expect(await drain(q)).toEqual(order);
  });
});

describe("WorkQueue: one worker per key", () => {
  it("a key re-added while in flight is parked until done(), then handed out again", async () => {
    const q = queue();
    q.add("a");
    expect(await q.get()).toBe("a");
    q.add("a");
    q.add("a");
    expect(q.length).toBe(0);
    const next = q.get();
    expect(await settled(next)).toBe(false); // nobody else may take "a" while it is in flight
    q.done("a");
    expect(await next).toBe("a");
    q.done("a");
    expect(q.length).toBe(0);
    expect(q.inFlight).toBe(0);
  });

  it("a key not re-added is not handed out again after done()", async () => {
    const q = queue();
    q.add("a");
    await q.get();
    q.done("a");
    const next = q.get();
    expect(await settled(next)).toBe(false);
    q.shutDown();
    expect(await next).toBeUndefined();
  });

  it("a key made more urgent while in flight comes back in its new lane", async () => {
    const q = queue();
    q.add("x", 3);
    expect(await q.get()).toBe("x");
    q.add("x", 3);
    q.add("y", 1);
    q.add("x", 0);
    q.done("x");
    expect(await drain(q)).toEqual(["x", "y"]);
  });

  it("waiting get()s are served in turn as keys arrive", async () => {
    const q = queue();
    const a = q.get();
    const b = q.get();
    q.add("k1");
    q.add("k2");
    expect([await a, await b]).toEqual(["k1", "k2"]);
  });
});

describe("WorkQueue: delays", () => {
  it("addAfter adds the key once the delay has passed", () => {
    vi.useFakeTimers();
    const q = queue();
    q.addAfter("k", 100);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(99);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.length).toBe(1);
  });

  it.each([
    ["shorter second", 1000, 100, 100],
    ["longer second", 100, 1000, 100],
  ])("the earlier of two delays wins (%s)", async (_name, first, second, due) => {
    vi.useFakeTimers();
    const q = queue();
    q.addAfter("k", first);
    q.addAfter("k", second);
    vi.advanceTimersByTime(due - 1);
    expect(q.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.length).toBe(1);
    expect(await drain(q)).toEqual(["k"]);
    vi.advanceTimersByTime(2000); // the later delay was dropped, not kept for a second add
    expect(q.length).toBe(0);
  });

  it("a zero delay adds at once, in the given lane", async () => {
    const q = queue();
    q.add("batch", 3);
    q.addAfter("stat", 0, 0);
    expect(await drain(q)).toEqual(["stat", "batch"]);
  });

  it("a delayed key keeps its lane", async () => {
    vi.useFakeTimers();
    const q = queue();
    q.add("batch", 3);
    q.addAfter("stat", 50, 0);
    vi.advanceTimersByTime(50);
    expect(await drain(q)).toEqual(["stat", "batch"]);
  });
});

describe("WorkQueue: rate-limited retries", () => {
  /** ms until the key shows up after addRateLimited, taking it out again afterwards. */
  async function delayOf(q: WorkQueue, key: string): Promise<number> {
    q.addRateLimited(key);
    let waited = 0;
    while (q.length === 0) {
      vi.advanceTimersByTime(1);
      waited += 1;
      if (waited > 1_000_000) throw new Error("never added");
    }
    expect(await q.get()).toBe(key);
    q.done(key);
    return waited;
  }

  it("backs off exponentially per key; forget() resets", async () => {
    vi.useFakeTimers();
    const q = queue({ baseDelayMs: 5 });
    const delays = [];
    for (let i = 0; i < 5; i++) delays.push(await delayOf(q, "k"));
    expect(delays).toEqual([5, 10, 20, 40, 80]);
    expect(q.retries("k")).toBe(5);
    expect(await delayOf(q, "other")).toBe(5); // per key
    q.forget("k");
    expect(q.retries("k")).toBe(0);
    expect(await delayOf(q, "k")).toBe(5);
  });

  it("caps the per-key delay at maxDelayMs", async () => {
    vi.useFakeTimers();
    const q = queue({ baseDelayMs: 100, maxDelayMs: 300 });
    const delays = [];
    for (let i = 0; i < 4; i++) delays.push(await delayOf(q, "k"));
    expect(delays).toEqual([100, 200, 300, 300]);
  });

  it("an overall token bucket limits retries across keys", async () => {
    vi.useFakeTimers();
    const q = queue({ baseDelayMs: 1, qps: 1, burst: 2 });
    q.addRateLimited("a");
    q.addRateLimited("b");
    q.addRateLimited("c"); // the bucket is empty: about a second
    vi.advanceTimersByTime(10);
    expect(q.length).toBe(2);
    vi.advanceTimersByTime(980);
    expect(q.length).toBe(2);
    vi.advanceTimersByTime(20);
    expect(q.length).toBe(3);
  });
});

describe("WorkQueue: shutdown", () => {
  it("resolves pending get()s with undefined and ignores later adds", async () => {
    vi.useFakeTimers();
    const q = queue();
    const waiting = [q.get(), q.get()];
    q.addAfter("later", 10);
    q.shutDown();
    expect(await Promise.all(waiting)).toEqual([undefined, undefined]);
    q.add("k");
    vi.advanceTimersByTime(100);
    expect(q.length).toBe(0);
    expect(await q.get()).toBeUndefined();
  });
});

describe("runWorkers", () => {
  it("never runs the same key on two workers at once, and does run keys in parallel", async () => {
    const q = queue();
    const keys = ["a", "b", "c", "d", "e", "f"];
    const readds = new Map(keys.map((k) => [k, 3]));
    const handled = new Map<string, number>();
    const active = new Set<string>();
    let overlap = 0;
    let maxParallel = 0;
    let total = 0;
    let finish: () => void = () => {};
    const allDone = new Promise<void>((r) => {
      finish = r;
    });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    const workers = runWorkers(q, 4, async (key) => {
      if (active.has(key)) overlap += 1;
      active.add(key);
      maxParallel = Math.max(maxParallel, active.size);
      await sleep(1 + (key.charCodeAt(0) % 3));
      const left = readds.get(key) ?? 0;
      if (left > 0) {
        readds.set(key, left - 1);
        q.add(key); // an informer event for the key while it is being reconciled
        q.add(key);
      }
      await sleep(1);
      active.delete(key);
      handled.set(key, (handled.get(key) ?? 0) + 1);
      if (++total === keys.length * 4) finish();
    });
    for (const k of keys) q.add(k);
    await allDone;
    q.shutDown();
    await workers;

    expect(overlap).toBe(0);
    expect(maxParallel).toBeGreaterThan(1);
    // each key: the first add plus three re-adds made while in flight, each handled exactly once
    expect(Object.fromEntries(handled)).toEqual(Object.fromEntries(keys.map((k) => [k, 4])));
    expect(q.inFlight).toBe(0);
  });

  it("marks a key done even when its handler throws", async () => {
    const q = queue();
    q.add("bad");
    await expect(
      runWorkers(q, 1, async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(q.inFlight).toBe(0);
    q.add("bad");
    expect(await q.get()).toBe("bad");
  });
});
