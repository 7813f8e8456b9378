// The generic controller (src/kube/controller.ts): what a reconcile's outcome does to its key —
// done, requeued after a delay, retried with backoff, or recorded and dropped (TerminalError) —
// and the metrics every controller shares.
import { afterEach, describe, expect, it } from "vitest";
import { Controller, type Result, TerminalError } from "../../../src/kube/controller.ts";
import { registry } from "../../../src/metrics/metrics.ts";

const controllers: Controller[] = [];
afterEach(async () => {
  await Promise.all(controllers.splice(0).map((c) => c.stop()));
});

function make(name: string, reconcile: (key: string) => Promise<Result | undefined>, extra = {}): Controller {
  const c = new Controller({ name, workers: 2, reconcile, queue: { baseDelayMs: 5 }, ...extra });
  controllers.push(c);
  return c;
}

async function count(controller: string, result: string): Promise<number> {
  const m = await registry.getSingleMetric("radflow_reconcile_total")?.get();
  return m?.values.find((v) => v.labels.controller === controller && v.labels.result === result)?.value ?? 0;
}

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("Controller", () => {
  it("retries a failing key with backoff until it succeeds, then forgets its failures", async () => {
    let calls = 0;
    const c = make("t-retry", async () => {
      calls += 1;
      if (calls < 3) throw new Error("API server said 500");
      return {};
    });
    void c.start();
    c.enqueue("ns/a");
    await until(() => calls === 3);
    await until(() => c.queue.inFlight === 0);
    expect(c.queue.retries("ns/a")).toBe(0);
    expect(await count("t-retry", "error")).toBe(2);
    expect(await count("t-retry", "ok")).toBe(1);
  });

  it("does not retry a TerminalError, and reports it once", async () => {
    let calls = 0;
    const terminal: string[] = [];
    const c = make(
      "t-terminal",
      async () => {
        calls += 1;
        throw new TerminalError("the object is invalid");
      },
      { onTerminal: (key: string, err: Error) => terminal.push(`${key}: ${err.message}`) },
    );
    void c.start();
    c.enqueue("ns/b");
    await until(() => terminal.length === 1);
    await new Promise((r) => setTimeout(r, 100)); // a retry would come after 5 ms
    expect(calls).toBe(1);
    expect(terminal).toEqual(["ns/b: the object is invalid"]);
    expect(await count("t-terminal", "terminal")).toBe(1);
  });

  it("requeues after the delay a reconcile asks for, in the lane it asks for", async () => {
    const seen: number[] = [];
    const c = make("t-requeue", async () => {
      seen.push(Date.now());
      return seen.length === 1 ? { requeueAfterMs: 80, priority: 0 } : {};
    });
    void c.start();
    c.enqueue("ns/c");
    await until(() => seen.length === 2);
    expect((seen[1] as number) - (seen[0] as number)).toBeGreaterThanOrEqual(70);
    expect(await count("t-requeue", "requeue")).toBe(1);
  });

  it("retries a failure met while the lease renewal is late, once this replica is active again", async () => {
    // isLeader() is false for a moment when a renewal is late; the reconcile's writes are fenced
    // and it throws. The key must come back, or the task waits forever (found in the demo).
    let active = true;
    let calls = 0;
    const c = make(
      "t-inactive",
      async () => {
        calls += 1;
        if (calls === 1) {
          active = false;
          setTimeout(() => {
            active = true;
          }, 20);
          throw new Error("writes refused: not the leader at this instant");
        }
        return undefined;
      },
      { active: () => active },
    );
    void c.start();
    c.enqueue("ns/d");
    await until(() => calls === 2);
    expect(await count("t-inactive", "error")).toBe(1);
    expect(await count("t-inactive", "ok")).toBe(1);
  });

  it("adds nothing once leadership is really lost: the manager has shut the queue down", async () => {
    let calls = 0;
    const c = make(
      "t-lost",
      async () => {
        calls += 1;
        c.queue.shutDown();
        throw new Error("not the leader any more");
      },
      { active: () => false },
    );
    void c.start();
    c.enqueue("ns/e");
    await until(() => calls === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(1);
  });

  it("never reconciles one key twice at once, and stop() waits for the reconcile in flight", async () => {
    let running = 0;
    let most = 0;
    let done = 0;
    const c = make("t-serial", async () => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 30));
      running -= 1;
      done += 1;
      return {};
    });
    void c.start();
    c.enqueue("ns/e");
    await until(() => running === 1);
    c.enqueue("ns/e"); // parked until the first is done
    c.enqueue("ns/e");
    await until(() => done === 2);
    c.enqueue("ns/e");
    await until(() => running === 1);
    await c.stop();
    expect(done).toBe(3);
    expect(most).toBe(1);
  });
});
