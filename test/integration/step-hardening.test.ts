// Studies that must not get stuck or be reported as a silent success (issue 12: items 1, 5, 6, 9,
// 12): against the real API server, Job controller, scheduler and KWOK nodes, with the operator as
// a child process. KWOK plays the kubelet: env KWOK_WAITING_REASON keeps a container waiting with
// that reason (hack/kwok-stages.yaml), as a kubelet reports an image it cannot pull.
import type { V1Job } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { jobName } from "../../src/jobs/job-builder.ts";
import { batch, core, createTask as createTaskFixture, custom, useNamespace, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const G = { group: "radflow.io", version: "v1alpha1" };
const main = useNamespace("steps");
const lost = useNamespace("steps-lost");
const ttl = useNamespace("steps-ttl");

type StepIn = Record<string, unknown> & { name: string };

function step(name: string, env: Record<string, string> = {}, extra: Record<string, unknown> = {}): StepIn {
  return {
    name,
    image: `registry.example.org/models/${name.slice(0, 20)}:1.0`,
    env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
    ...extra,
  };
}

function createTask(ns: string, name: string, steps: StepIn[], spec: Record<string, unknown> = {}) {
  return createTaskFixture({ namespace: ns, name, workflow: "hardening", steps, spec });
}

async function getTask(ns: string, name: string): Promise<InferenceTask> {
  return (await custom().getNamespacedCustomObject({
    ...G,
    namespace: ns,
    plural: "inferencetasks",
    name,
  })) as InferenceTask;
}

function waitTask(ns: string, name: string, what: string, pred: (t: InferenceTask) => boolean, timeoutMs = 60_000) {
  return waitFor(`task ${name}: ${what}`, timeoutMs, async () => {
    const t = await getTask(ns, name);
    return { done: pred(t), value: t, seen: t.status };
  });
}

const cond = (t: InferenceTask, type: string) => t.status?.conditions?.find((c) => c.type === type);

async function eventsFor(ns: string, name: string) {
  return (await core().listNamespacedEvent({ namespace: ns })).items.filter((e) => e.involvedObject.name === name);
}

async function liveJobs(ns: string, task: string): Promise<V1Job[]> {
  const all = await batch().listNamespacedJob({ namespace: ns, labelSelector: `radflow.io/task=${task}` });
  return all.items.filter((j) => !j.metadata?.deletionTimestamp);
}

describe("steps that cannot succeed fail loudly", () => {
  let op: OperatorProcess;
  beforeAll(() => {
    op = startOperator({ namespace: main.name, args: ["--leader-elect=false", "--start-timeout-seconds", "6"] });
  });
  afterAll(async () => {
    await op?.stop();
  });

  it.each([
    ["ImagePullBackOff", 'Back-off pulling image "registry.example.org/models/missing:1.0"'],
    ["CreateContainerConfigError", "container has runAsNonRoot and image will run as root"],
  ])("%s: shown on the step and the task at once, the step failed after the start timeout", async (reason, message) => {
    const name = await createTask(main.name, `start-${reason.toLowerCase()}`, [
      step("triage", { KWOK_WAITING_REASON: reason, KWOK_WAITING_MESSAGE: message }),
    ]);
    const t0 = Date.now();
    const blocked = await waitTask(
      main.name,
      name,
      `step reason ${reason}`,
      (t) => t.status?.steps?.[0]?.reason === reason,
    );
    const shownAfter = Date.now() - t0;
    expect(blocked.status?.steps?.[0]?.phase).toBe("Pending");
    expect(blocked.status?.steps?.[0]?.message).toContain(message);
    expect(cond(blocked, "StartBlocked")).toMatchObject({ status: "True", reason });
    const failed = await waitTask(main.name, name, "Failed", (t) => t.status?.phase === "Failed", 60_000);
    const failedAfter = Date.now() - t0;
    const s = failed.status?.steps?.[0];
    expect(s).toMatchObject({ phase: "Failed", reason });
    expect(s?.message).toMatch(/start timeout 6s/);
    expect(cond(failed, "Succeeded")).toMatchObject({ status: "False", reason: "StepFailed" });
    const events = await eventsFor(main.name, name);
    expect(events.some((e) => e.type === "Warning" && e.reason === reason)).toBe(true);
    await waitFor("the stuck step's Job to be deleted", 30_000, async () => {
      const jobs = await liveJobs(main.name, name);
      return { done: jobs.length === 0, seen: jobs.length };
    });
    // before: the step stayed "Starting" until a queue timeout or the ~2 h Job deadline
    console.log(`${reason}: shown after ${shownAfter} ms, step failed after ${failedAfter} ms (start timeout 6 s)`);
  });

  it("a Job name held by another task's Job fails the step with JobNameConflict instead of waiting forever", async () => {
    const name = "conflict-1";
    const taken = jobName(name, "triage");
    // another task's Job that happens to carry this task's Job name (a collision)
    await batch().createNamespacedJob({
      namespace: main.name,
      body: {
        metadata: {
          name: taken,
          labels: {
            "app.kubernetes.io/managed-by": "radflow",
            "radflow.io/task": "someone-else",
            "radflow.io/step": "triage",
          },
        },
        spec: {
          suspend: true,
          template: {
            spec: { restartPolicy: "Never", containers: [{ name: "model", image: "registry.example.org/x:1" }] },
          },
        },
      },
    });
    await createTask(main.name, name, [step("triage")]);
    const failed = await waitTask(main.name, name, "Failed", (t) => t.status?.phase === "Failed", 30_000);
    expect(failed.status?.steps?.[0]).toMatchObject({ phase: "Failed", reason: "JobNameConflict" });
    expect(failed.status?.steps?.[0]?.message).toContain("someone-else");
    expect(cond(failed, "Succeeded")).toMatchObject({ status: "False", reason: "JobNameConflict" });
    const events = await eventsFor(main.name, name);
    expect(events.some((e) => e.type === "Warning" && e.reason === "JobNameConflict")).toBe(true);
    // the other task's Job is left alone
    const other = await batch().readNamespacedJob({ name: taken, namespace: main.name });
    expect(other.metadata?.deletionTimestamp).toBeUndefined();
  });

  it("seven parallel steps with 40-character names: status writes succeed and the task completes", async () => {
    const steps = Array.from({ length: 7 }, (_, i) =>
      step(`${String.fromCharCode(97 + i)}${"x".repeat(39)}`, { KWOK_RUN: "2s", KWOK_RESULT: "{}" }),
    );
    const name = await createTask(main.name, "wide-1", steps);
    const running = await waitTask(main.name, name, "Running", (t) => t.status?.phase === "Running", 30_000);
    // before: the API server refused every status write naming all seven (currentStep 286 characters:
    // "Too long: may not be more than 256") until enough steps had finished
    expect(op.logs()).not.toMatch(/currentStep|Too long/);
    expect((running.status?.currentStep ?? "").length).toBeLessThanOrEqual(256);
    expect(running.status?.currentStep).toMatch(/\+\d$/);
    const done = await waitTask(main.name, name, "Succeeded", (t) => t.status?.phase === "Succeeded", 60_000);
    expect(done.status?.steps?.every((s) => s.phase === "Succeeded")).toBe(true);
    expect(op.logs()).not.toMatch(/currentStep|Too long/);
  });
});

describe("a complete Job whose pod is gone", () => {
  it("fails the step with OutputsLost; the task does not succeed without outputs", async () => {
    let op = startOperator({ namespace: lost.name, args: ["--leader-elect=false"] });
    const name = await createTask(lost.name, "lost-1", [
      step("triage", { KWOK_RUN: "3s", KWOK_RESULT: '{"hemorrhage":true}' }),
    ]);
    try {
      await waitTask(lost.name, name, "step Running", (t) => t.status?.steps?.[0]?.phase === "Running", 30_000);
      await op.kill(); // away while the model finishes and its pod is removed
      await waitFor("the Job to complete", 30_000, async () => {
        const j = await batch().readNamespacedJob({ name: jobName(name, "triage"), namespace: lost.name });
        const complete = j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True");
        return { done: !!complete, seen: j.status };
      });
      await core().deleteCollectionNamespacedPod({
        namespace: lost.name,
        labelSelector: `radflow.io/task=${name}`,
        gracePeriodSeconds: 0,
      });
      await waitFor("the pod to be gone", 30_000, async () => {
        const pods = await core().listNamespacedPod({ namespace: lost.name, labelSelector: `radflow.io/task=${name}` });
        return { done: pods.items.length === 0, seen: pods.items.length };
      });
      op = startOperator({ namespace: lost.name, args: ["--leader-elect=false"] });
      // the operator reads pods from the API server for up to a minute after completion before concluding
      const failed = await waitTask(lost.name, name, "Failed", (t) => isEnded(t), 100_000);
      expect(failed.status?.phase).toBe("Failed"); // before: Succeeded with outputs {}
      expect(failed.status?.steps?.[0]).toMatchObject({ phase: "Failed", reason: "OutputsLost" });
      expect(failed.status?.steps?.[0]?.outputs).toBeUndefined();
      expect(cond(failed, "Succeeded")).toMatchObject({ status: "False", reason: "OutputsLost" });
    } finally {
      await op.stop();
    }
  }, 180_000);
});

const isEnded = (t: InferenceTask) => t.status?.phase === "Succeeded" || t.status?.phase === "Failed";

describe("finished tasks get the operator's default TTL", () => {
  it("deletes a finished task after --task-ttl-seconds unless its workflow set a TTL", async () => {
    const op = startOperator({ namespace: ttl.name, args: ["--leader-elect=false", "--task-ttl-seconds", "3"] });
    try {
      const short = await createTask(ttl.name, "ttl-default", [step("triage", { KWOK_RESULT: "{}" })]);
      const kept = await createTask(ttl.name, "ttl-own", [step("triage", { KWOK_RESULT: "{}" })], {
        ttlSecondsAfterFinished: 3600,
      });
      const done = await waitTask(ttl.name, short, "Succeeded", (t) => t.status?.phase === "Succeeded", 30_000);
      const endedAt = Date.parse(done.status?.completionTime as string);
      await waitFor("the default-TTL task to be deleted", 30_000, async () => {
        const gone = await getTask(ttl.name, short).then(
          () => false,
          () => true,
        );
        return { done: gone, seen: gone };
      });
      const after = Date.now() - endedAt;
      expect(after).toBeGreaterThanOrEqual(2_000); // not before the TTL (completionTime has 1 s resolution)
      const own = await waitTask(ttl.name, kept, "Succeeded", (t) => t.status?.phase === "Succeeded", 30_000);
      await new Promise((r) => setTimeout(r, 4_000));
      expect((await getTask(ttl.name, kept)).metadata.uid).toBe(own.metadata.uid); // its own TTL (1 h) wins
      console.log(`default TTL 3 s: task deleted ${after} ms after completion`);
    } finally {
      await op.stop();
    }
  }, 120_000);
});
