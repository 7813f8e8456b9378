// The ingest's window of delivered events: most urgent lane first, stream order within a lane,
// and the lane of an event is that of its most urgent task.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { laneOf } from "../../../src/ingest/consumer.ts";
import { PriorityWindow, StartGate } from "../../../src/ingest/priority-window.ts";

describe("PriorityWindow", () => {
  it("hands out the most urgent lane first, in arrival order within a lane", async () => {
    const w = new PriorityWindow<string>(4);
    for (let i = 0; i < 2000; i++) w.push(`batch-${i}`, 3);
    w.push("routine-0", 2);
    w.push("stat-0", 0);
    w.push("stat-1", 0);
    expect(w.size).toBe(2003);
    expect(await w.take()).toBe("stat-0");
    expect(await w.take()).toBe("stat-1");
    expect(await w.take()).toBe("routine-0");
    const rest: string[] = [];
    for (let i = 0; i < 2000; i++) rest.push((await w.take()) as string);
    expect(rest).toEqual(Array.from({ length: 2000 }, (_, i) => `batch-${i}`));
    expect(w.size).toBe(0);
  });

  it("a waiting taker gets the next push; close() ends the takers once the window is empty", async () => {
    const w = new PriorityWindow<number>(2);
    const first = w.take();
    w.push(7, 1);
    expect(await first).toBe(7);
    w.push(8, 1);
    const waiting = [w.take(), w.take()];
    w.close();
    expect(await Promise.all(waiting)).toEqual([8, undefined]);
    expect(() => w.push(9, 0)).toThrow(/closed/);
  });

  it("drain() empties the window, most urgent first (what a stopping ingest naks)", () => {
    const w = new PriorityWindow<string>(4);
    w.push("b", 3);
    w.push("s", 0);
    w.push("x", 99); // clamped to the last lane
    expect(w.drain()).toEqual(["s", "b", "x"]);
    expect(w.size).toBe(0);
  });

  it("stays in order across the compaction of a long lane", async () => {
    const w = new PriorityWindow<number>(1);
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 1500; i++) w.push(next++, 0);
      for (let i = 0; i < 1200; i++) expect(await w.take()).toBe(expected++);
    }
    expect(w.drain()).toEqual(Array.from({ length: next - expected }, (_, i) => expected + i));
  });
});

function task(priority: "stat" | "urgent" | "routine" | "batch"): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: `t-${priority}`, namespace: "radiology" },
    spec: {
      workflowRef: { name: `wf-${priority}`, uid: "u", generation: 1 },
      priority,
      eventId: "e-1",
      study: { studyInstanceUID: "1.2.3", series: [] },
      steps: [{ name: "infer", image: "registry.example.org/model:1" }],
    },
  });
}

describe("laneOf (where a delivered event waits)", () => {
  const event = {} as never;
  it("is the lane of the event's most urgent task", () => {
    expect(laneOf({ kind: "routed", event, routed: { tasks: [task("batch"), task("stat")], errors: [] } })).toBe(0);
    expect(laneOf({ kind: "routed", event, routed: { tasks: [task("routine")], errors: [] } })).toBe(2);
  });
  it("puts events that make no task in the last lane: no study waits on them", () => {
    expect(laneOf({ kind: "routed", event, routed: { tasks: [], errors: [] } })).toBe(3);
    expect(laneOf({ kind: "invalid", reason: "malformed", detail: "" })).toBe(3);
    expect(laneOf({ kind: "exhausted" })).toBe(3);
  });
});

describe("StartGate", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const state = (g: StartGate) => {
    let open = false;
    void g.opened.then(() => {
      open = true;
    });
    return async () => {
      await Promise.resolve();
      return open;
    };
  };

  it("opens at once when nothing was waiting", async () => {
    const isOpen = state(new StartGate(0, 100, 3000));
    expect(await isOpen()).toBe(true);
  });

  it("opens when the backlog counted at start is in the window, not before", async () => {
    const g = new StartGate(3, 100, 3000);
    const isOpen = state(g);
    g.arrived();
    vi.advanceTimersByTime(50);
    g.arrived();
    expect(await isOpen()).toBe(false);
    g.arrived();
    expect(await isOpen()).toBe(true);
  });

  it("opens when deliveries stop short of the count (a crashed replica's messages wait for ack_wait)", async () => {
    const g = new StartGate(10, 100, 3000);
    const isOpen = state(g);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(60); // each arrival re-arms the idle timer
      g.arrived();
    }
    expect(await isOpen()).toBe(false);
    vi.advanceTimersByTime(99);
    expect(await isOpen()).toBe(false);
    vi.advanceTimersByTime(1);
    expect(await isOpen()).toBe(true);
  });

  it("opens after maxMs however steadily events trickle in", async () => {
    const g = new StartGate(1_000_000, 100, 3000);
    const isOpen = state(g);
    for (let t = 0; t < 2950; t += 50) {
      vi.advanceTimersByTime(50);
      g.arrived();
    }
    expect(await isOpen()).toBe(false);
    vi.advanceTimersByTime(50);
    expect(await isOpen()).toBe(true);
  });
});
