// Admission of step Jobs: global cap, per-workflow cap, reservations, clinical order.
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Priority } from "../../../src/api/v1alpha1/index.ts";
import { Dispatcher, type Waiter } from "../../../src/controllers/dispatcher.ts";

interface Setup {
  globalCap?: number;
  caps?: Record<string, number>;
  running?: Record<string, number>; // by namespace/workflow
}

function dispatcher(s: Setup = {}) {
  const running = new Map(Object.entries(s.running ?? {}));
  const woken: string[] = [];
  const d = new Dispatcher({
    globalCap: s.globalCap ?? 0,
    workflowCap: (wk) => s.caps?.[wk],
    running: () => ({ total: [...running.values()].reduce((a, b) => a + b, 0), byWorkflow: new Map(running) }),
    wake: (key) => woken.push(key),
  });
  return { d, running, woken };
}

const T = (minute: number) => `2025-03-01T10:${String(minute).padStart(2, "0")}:00Z`;
const waiter = (key: string, priority: Priority, minute: number, workflowKey = "radiology/head-ct"): Waiter => ({
  key: `radiology/${key}`,
  workflowKey,
  priority,
  created: T(minute),
});

afterEach(() => {
  vi.useRealTimers();
});

describe("Dispatcher.capacityFor: caps", () => {
  const cases: { name: string; setup: Setup; workflow?: string; want: number }[] = [
    { name: "no caps: unlimited", setup: { running: { "radiology/head-ct": 500 } }, want: Number.POSITIVE_INFINITY },
    { name: "global cap, nothing running", setup: { globalCap: 4 }, want: 4 },
    {
      name: "global cap, some running",
      setup: { globalCap: 4, running: { "radiology/head-ct": 1, "a/b": 2 } },
      want: 1,
    },
    { name: "global cap reached", setup: { globalCap: 4, running: { "a/b": 4 } }, want: 0 },
    { name: "global cap exceeded: never negative", setup: { globalCap: 4, running: { "a/b": 7 } }, want: 0 },
    {
      name: "workflow cap with some of its Jobs running",
      setup: { caps: { "radiology/head-ct": 3 }, running: { "radiology/head-ct": 1, "a/b": 50 } },
      want: 2,
    },
    {
      name: "workflow cap reached",
      setup: { caps: { "radiology/head-ct": 2 }, running: { "radiology/head-ct": 2 } },
      want: 0,
    },
    {
      name: "another workflow's cap does not limit this one",
      setup: { caps: { "a/b": 1 }, running: { "a/b": 1 } },
      want: Number.POSITIVE_INFINITY,
    },
    {
      name: "the smaller of global and workflow room",
      setup: { globalCap: 10, caps: { "radiology/head-ct": 5 }, running: { "a/b": 8 } },
      want: 2,
    },
    {
      name: "the smaller of workflow and global room",
      setup: { globalCap: 10, caps: { "radiology/head-ct": 5 }, running: { "radiology/head-ct": 4 } },
      want: 1,
    },
  ];
  it.each(cases)("$name → $want", ({ setup, want }) => {
    const { d } = dispatcher(setup);
    expect(d.capacityFor(waiter("t1", "routine", 0))).toBe(want);
  });
});

describe("Dispatcher: reservations", () => {
  it("a created Job counts until the informer has observed it", () => {
    const { d, running } = dispatcher({ globalCap: 2 });
    const w = waiter("t1", "routine", 0);
    d.reserve("radiology/j1", w.workflowKey);
    d.reserve("radiology/j2", w.workflowKey);
    expect(d.capacityFor(w)).toBe(0);
    // the informer sees j1: it is now counted as running, not twice
    running.set(w.workflowKey, 1);
    d.observed("radiology/j1");
    expect(d.capacityFor(w)).toBe(0);
    running.set(w.workflowKey, 0); // j1 finished
    expect(d.capacityFor(w)).toBe(1);
    d.observed("radiology/j2");
    expect(d.capacityFor(w)).toBe(2);
  });

  it("counts against the workflow's cap too", () => {
    const { d } = dispatcher({ caps: { "radiology/head-ct": 2 } });
    const w = waiter("t1", "routine", 0);
    d.reserve("radiology/j1", w.workflowKey);
    expect(d.capacityFor(w)).toBe(1);
    d.reserve("radiology/j2", "radiology/other");
    expect(d.capacityFor(w)).toBe(1);
  });

  it("a reservation the informer never confirms expires after a minute", () => {
    vi.useFakeTimers();
    vi.setSystemTime(Date.parse(T(0)));
    const { d } = dispatcher({ globalCap: 1 });
    const w = waiter("t1", "routine", 0);
    d.reserve("radiology/j1", w.workflowKey);
    vi.advanceTimersByTime(60_000);
    expect(d.capacityFor(w)).toBe(0);
    vi.advanceTimersByTime(1);
    expect(d.capacityFor(w)).toBe(1);
  });
});

describe("Dispatcher.capacityFor: clinical order", () => {
  const cases: {
    name: string;
    setup: Setup;
    waiting: Waiter[];
    asks: Waiter;
    want: number;
  }[] = [
    {
      name: "one slot: a stat task gets it before an older waiting batch task",
      setup: { globalCap: 1 },
      waiting: [waiter("batch", "batch", 0)],
      asks: waiter("stat", "stat", 30),
      want: 1,
    },
    {
      name: "one slot: the older batch task does not get it while a stat task waits",
      setup: { globalCap: 1 },
      waiting: [waiter("batch", "batch", 0), waiter("stat", "stat", 30)],
      asks: waiter("batch", "batch", 0),
      want: 0,
    },
    {
      name: "one slot, equal priority: the oldest gets it",
      setup: { globalCap: 1 },
      waiting: [waiter("newer", "routine", 20), waiter("older", "routine", 10)],
      asks: waiter("older", "routine", 10),
      want: 1,
    },
    {
      name: "one slot, equal priority: a newer task waits",
      setup: { globalCap: 1 },
      waiting: [waiter("older", "routine", 10)],
      asks: waiter("newer", "routine", 20),
      want: 0,
    },
    {
      name: "two slots: the second in line gets the second slot",
      setup: { globalCap: 5, running: { "a/b": 3 } },
      waiting: [waiter("stat", "stat", 30)],
      asks: waiter("batch", "batch", 0),
      want: 1,
    },
    {
      name: "a waiter ahead blocked by its own workflow's cap does not hold a slot",
      setup: { globalCap: 3, caps: { "radiology/stat-wf": 1 }, running: { "radiology/stat-wf": 1, "a/b": 1 } },
      waiting: [waiter("stat", "stat", 30, "radiology/stat-wf")],
      asks: waiter("batch", "batch", 0),
      want: 1,
    },
    {
      name: "urgent before routine before batch",
      setup: { globalCap: 2 },
      waiting: [waiter("batch", "batch", 0), waiter("routine", "routine", 1), waiter("urgent", "urgent", 2)],
      asks: waiter("routine", "routine", 1),
      want: 1,
    },
    {
      name: "... and batch is third",
      setup: { globalCap: 2 },
      waiting: [waiter("batch", "batch", 0), waiter("routine", "routine", 1), waiter("urgent", "urgent", 2)],
      asks: waiter("batch", "batch", 0),
      want: 0,
    },
  ];
  it.each(cases)("$name", ({ setup, waiting, asks, want }) => {
    const { d } = dispatcher(setup);
    for (const w of waiting) d.wait(w);
    expect(d.capacityFor(asks)).toBe(want);
  });

  it("a forgotten waiter no longer holds its place", () => {
    const { d } = dispatcher({ globalCap: 1 });
    const stat = waiter("stat", "stat", 30);
    const batch = waiter("batch", "batch", 0);
    d.wait(stat);
    d.wait(batch);
    expect(d.capacityFor(batch)).toBe(0);
    d.forget(stat.key);
    expect(d.waitingCount).toBe(1);
    expect(d.capacityFor(batch)).toBe(1);
  });
});

describe("Dispatcher.capacityChanged", () => {
  const mixed = [
    waiter("batch", "batch", 0),
    waiter("routine-new", "routine", 9),
    waiter("stat", "stat", 30),
    waiter("routine-old", "routine", 5),
    waiter("urgent", "urgent", 20),
  ];
  const order = ["stat", "urgent", "routine-old", "routine-new", "batch"].map((k) => `radiology/${k}`);

  const cases: { name: string; setup: Setup; waiting: Waiter[]; woken: string[] }[] = [
    {
      name: "a free slot wakes the waiters in clinical order",
      setup: { globalCap: 10, running: { "a/b": 9 } },
      waiting: mixed,
      woken: order,
    },
    {
      // only workflow caps: the head of the line takes the room, four spares follow it
      name: "no global cap: the head of each workflow's line, and spares",
      setup: { caps: { "radiology/head-ct": 1 } },
      waiting: mixed,
      woken: order,
    },
    {
      name: "no global cap, the workflow at its cap: nobody",
      setup: { caps: { "radiology/head-ct": 2 }, running: { "radiology/head-ct": 2 } },
      waiting: mixed,
      woken: [],
    },
    { name: "no free slot: nobody", setup: { globalCap: 10, running: { "a/b": 10 } }, waiting: mixed, woken: [] },
    { name: "no waiters: nobody", setup: { globalCap: 10 }, waiting: [], woken: [] },
    {
      name: "one free slot among many waiters: the first, and four spares",
      setup: { globalCap: 1 },
      waiting: Array.from({ length: 10 }, (_, i) => waiter(`b${i}`, "batch", 50 - i)),
      woken: [9, 8, 7, 6, 5].map((i) => `radiology/b${i}`),
    },
  ];
  it.each(cases)("$name", ({ setup, waiting, woken }) => {
    const { d, woken: got } = dispatcher(setup);
    for (const w of waiting) d.wait(w);
    d.capacityChanged();
    expect(got).toEqual(woken);
  });
});

describe("Dispatcher.capacityChanged: no starvation behind tasks blocked by their own workflow's cap (issue 12)", () => {
  it("a free GPU goes to a batch task that can run, not to STAT tasks held by their maxRunning", () => {
    // global cap 4: STAT workflow at its own cap of 2, one other Job running → one GPU free
    const setup: Setup = {
      globalCap: 4,
      caps: { "radiology/stat-ct": 2 },
      running: { "radiology/stat-ct": 2, "radiology/other": 1 },
    };
    const { d, woken } = dispatcher(setup);
    const stat = Array.from({ length: 20 }, (_, i) => waiter(`stat-${i}`, "stat", i, "radiology/stat-ct"));
    const bulk = waiter("bulk-0", "batch", 0, "radiology/bulk");
    for (const w of [...stat, bulk]) d.wait(w);
    // the batch task could start (capacityFor says so)…
    expect(d.capacityFor(bulk)).toBe(1);
    d.capacityChanged();
    // …and is the one woken; none of the blocked STAT tasks is (formerly: the first 2·1+4 = 6 STAT
    // tasks were woken, each found its workflow full, and the free GPU sat idle)
    expect(woken).toEqual(["radiology/bulk-0"]);
  });

  it("per-workflow room is handed out in order: one slot of a capped workflow, the rest to others", () => {
    const { d, woken } = dispatcher({ globalCap: 3, caps: { "radiology/stat-ct": 1 } });
    const ws = [
      waiter("s1", "stat", 1, "radiology/stat-ct"),
      waiter("s2", "stat", 2, "radiology/stat-ct"),
      waiter("r1", "routine", 1, "radiology/knee"),
      waiter("r2", "routine", 2, "radiology/knee"),
      waiter("b1", "batch", 1, "radiology/bulk"),
    ];
    for (const w of ws) d.wait(w);
    d.capacityChanged();
    // s1, r1, r2 take the three slots; s2 (stat-ct has room for one only) and b1 are spares
    expect(woken).toEqual(["radiology/s1", "radiology/s2", "radiology/r1", "radiology/r2", "radiology/b1"]);
  });
});
