// The operator against the real API server, Job controller, scheduler and KWOK GPU nodes.
// Tasks are created directly here (ingest has its own tests); the operator runs as a child process.
import { CoordinationV1Api, type V1Job, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from "vitest";
import type { InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { batch, core, createTask as createTaskFixture, custom, kubeConfig, useNamespace, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const ns = useNamespace("operator");
const G = { group: "radflow.io", version: "v1alpha1" };

type StepIn = Record<string, unknown> & { name: string };

function step(name: string, extra: Record<string, unknown> = {}, env: Record<string, string> = {}): StepIn {
  return {
    name,
    image: `registry.example.org/models/${name}:1.0`,
    env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
    ...extra,
  };
}

async function createWorkflow(name: string, steps: StepIn[], spec: Record<string, unknown> = {}) {
  const wf = await custom().createNamespacedCustomObject({
    ...G,
    namespace: ns.name,
    plural: "aiworkflows",
    body: {
      apiVersion: "radflow.io/v1alpha1",
      kind: "AIWorkflow",
      metadata: { name },
      spec: { priority: "routine", trigger: { match: { modalities: ["CT"] } }, steps, ...spec },
    },
  });
  return wf as { metadata: { uid: string; generation: number }; spec: Record<string, unknown> };
}

let seq = 0;
function createTask(
  workflow: string,
  steps: StepIn[],
  spec: Record<string, unknown> = {},
  name = `${workflow}-${++seq}`,
): Promise<string> {
  return createTaskFixture({ namespace: ns.name, name, workflow, steps, spec });
}

async function getTask(name: string): Promise<InferenceTask> {
  return (await custom().getNamespacedCustomObject({
    ...G,
    namespace: ns.name,
    plural: "inferencetasks",
    name,
  })) as InferenceTask;
}

async function waitTask(name: string, what: string, pred: (t: InferenceTask) => boolean, timeoutMs = 60_000) {
  return waitFor(`task ${name}: ${what}`, timeoutMs, async () => {
    const t = await getTask(name);
    return { done: pred(t), value: t, seen: t.status };
  });
}

async function jobsOf(task: string): Promise<V1Job[]> {
  return (await batch().listNamespacedJob({ namespace: ns.name, labelSelector: `radflow.io/task=${task}` })).items;
}

describe("radflow operator", () => {
  let op: OperatorProcess;
  beforeAll(async () => {
    op = startOperator({ namespace: ns.name, args: ["--leader-elect=false"] });
  });
  beforeEach(() => {
    onTestFailed(() => console.error(`--- operator ${op.identity} ---\n${op.logs().slice(-6000)}`));
  });
  afterAll(async () => {
    await op?.stop();
  });

  it("runs a one-step task to Succeeded with the model's outputs in status", async () => {
    const t = await createTask("one", [step("triage", {}, { KWOK_RESULT: '{"hemorrhage":false,"score":0.02}' })]);
    const done = await waitTask(t, "Succeeded", (x) => x.status?.phase === "Succeeded");
    expect(done.status?.steps?.[0]?.outputs).toEqual({ hemorrhage: false, score: 0.02 });
    expect(done.status?.conditions?.find((c) => c.type === "Succeeded")?.status).toBe("True");
    expect(done.status?.completionTime).toBeTruthy();
    const jobs = await jobsOf(t);
    expect(jobs).toHaveLength(1);
    const pod = jobs[0]?.spec?.template.spec;
    expect(jobs[0]?.metadata?.ownerReferences?.[0]?.kind).toBe("InferenceTask");
    expect(pod?.containers[0]?.resources?.limits?.["nvidia.com/gpu"]).toBe("1");
    expect(pod?.containers[0]?.securityContext?.allowPrivilegeEscalation).toBe(false);
  });

  it("runs the cascade's second model only when the first one's output says so", async () => {
    const steps = (device: boolean) => [
      step("detect", {}, { KWOK_RESULT: JSON.stringify({ device }) }),
      step(
        "identify",
        { dependsOn: ["detect"], when: "steps.detect.outputs.device == true" },
        { KWOK_RESULT: '{"model":"X1"}' },
      ),
    ];
    const yes = await createTask("cascade", steps(true));
    const no = await createTask("cascade", steps(false));
    const a = await waitTask(yes, "Succeeded", (x) => x.status?.phase === "Succeeded");
    const b = await waitTask(no, "Succeeded", (x) => x.status?.phase === "Succeeded");
    expect(a.status?.steps?.map((s) => s.phase)).toEqual(["Succeeded", "Succeeded"]);
    expect(a.status?.steps?.[1]?.outputs).toEqual({ model: "X1" });
    expect(b.status?.steps?.map((s) => s.phase)).toEqual(["Succeeded", "Skipped"]);
    expect(await jobsOf(no)).toHaveLength(1);
  });

  it("shows a GPU wait in status and resolves it when a GPU frees", async () => {
    // each A100 node has 4 GPUs: the second 4-GPU step must wait for the first
    const big = (run: string) =>
      step("segment", { resources: { gpu: 4, gpuProduct: "NVIDIA-A100-SXM4-80GB" } }, { KWOK_RUN: run });
    const first = await createTask("gpuwait", [big("6s")]);
    await waitTask(first, "Running", (x) => x.status?.phase === "Running");
    const second = await createTask("gpuwait", [big("0s")]);
    const waiting = await waitTask(second, "WaitingForGPU", (x) => x.status?.steps?.[0]?.phase === "WaitingForGPU");
    const cond = waiting.status?.conditions?.find((c) => c.type === "WaitingForGPU");
    expect(cond?.status).toBe("True");
    expect(cond?.message).toMatch(/nvidia\.com\/gpu/);
    const events = await core().listNamespacedEvent({ namespace: ns.name });
    expect(events.items.some((e) => e.involvedObject.name === second && e.reason === "WaitingForGPU")).toBe(true);
    const done = await waitTask(
      second,
      "Succeeded after the GPU freed",
      (x) => x.status?.phase === "Succeeded",
      60_000,
    );
    expect(done.status?.conditions?.find((c) => c.type === "WaitingForGPU")?.status).toBe("False");
  });

  it("does not count a GPU wait against timeoutSeconds, and fails a model that runs past it", async () => {
    const a100 = (run: string, timeoutSeconds: number) =>
      step(
        "segment",
        { timeoutSeconds, resources: { gpu: 4, gpuProduct: "NVIDIA-A100-SXM4-80GB" } },
        { KWOK_RUN: run },
      );
    const hog = await createTask("deadline", [a100("6s", 60)]);
    await waitTask(hog, "Running", (x) => x.status?.phase === "Running");
    // waits ~6 s for the GPUs, then runs 1 s: within its 3 s run limit
    const patient = await createTask("deadline", [a100("1s", 3)]);
    await waitTask(patient, "WaitingForGPU", (x) => x.status?.steps?.[0]?.phase === "WaitingForGPU");
    const ok = await waitTask(
      patient,
      "Succeeded",
      (x) => x.status?.phase === "Succeeded" || x.status?.phase === "Failed",
    );
    expect(ok.status?.phase).toBe("Succeeded");
    const slow = await createTask("deadline", [step("slow", { timeoutSeconds: 2 }, { KWOK_RUN: "60s" })]);
    const failed = await waitTask(slow, "Failed", (x) => x.status?.phase === "Failed", 30_000);
    expect(failed.status?.steps?.[0]?.reason).toBe("DeadlineExceeded");
    expect(failed.status?.conditions?.find((c) => c.type === "Succeeded")?.reason).toBe("DeadlineExceeded");
  });

  it("fails loudly with QueueTimeout when no GPU comes, and removes the Job", async () => {
    const t = await createTask("timeout", [step("huge", { resources: { gpu: 8 } })], { queueTimeoutSeconds: 3 });
    const failed = await waitTask(t, "Failed", (x) => x.status?.phase === "Failed", 30_000);
    const c = failed.status?.conditions?.find((x) => x.type === "Succeeded");
    expect(c?.reason).toBe("QueueTimeout");
    expect(c?.message).toMatch(/queueTimeoutSeconds=3/);
    await waitFor("the timed-out task's Job to be deleted", 30_000, async () => {
      const jobs = (await jobsOf(t)).filter((j) => !j.metadata?.deletionTimestamp);
      return { done: jobs.length === 0, seen: jobs.map((j) => j.metadata?.name) };
    });
  });

  it("retries a failing model, then fails with the pod's reason", async () => {
    const t = await createTask("retry", [
      step("oom", { retries: 1 }, { KWOK_EXIT_CODE: "137", KWOK_REASON: "OOMKilled" }),
    ]);
    const failed = await waitTask(t, "Failed", (x) => x.status?.phase === "Failed", 90_000);
    const s = failed.status?.steps?.[0];
    expect(s?.phase).toBe("Failed");
    expect(s?.attempts).toBe(2);
    expect(s?.reason).toBe("OOMKilled");
    expect(s?.message).toMatch(/exited with code 137/);
    expect(failed.status?.conditions?.find((c) => c.type === "Succeeded")?.reason).toBe("StepFailed");
  });

  it("cancels a running task: the Job is removed and the task ends Canceled", async () => {
    const t = await createTask("cancel", [step("slow", {}, { KWOK_RUN: "120s" })]);
    await waitTask(t, "Running", (x) => x.status?.phase === "Running");
    await custom().patchNamespacedCustomObject({
      ...G,
      namespace: ns.name,
      plural: "inferencetasks",
      name: t,
      body: [{ op: "add", path: "/spec/cancel", value: true }],
    });
    const c = await waitTask(t, "Canceled", (x) => x.status?.phase === "Canceled");
    expect(c.status?.steps?.[0]?.phase).toBe("Canceled");
    await waitFor("the canceled task's Job to be deleted", 30_000, async () => {
      const jobs = (await jobsOf(t)).filter((j) => !j.metadata?.deletionTimestamp);
      return { done: jobs.length === 0, seen: jobs.length };
    });
  });

  it("deleting a task removes its Jobs through the finalizer", async () => {
    const t = await createTask("delete", [step("slow", {}, { KWOK_RUN: "120s" })]);
    await waitTask(t, "Running", (x) => x.status?.phase === "Running");
    expect((await getTask(t)).metadata.finalizers).toContain("radflow.io/cleanup-jobs");
    await custom().deleteNamespacedCustomObject({ ...G, namespace: ns.name, plural: "inferencetasks", name: t });
    await waitFor("the task and its Job to be gone", 30_000, async () => {
      const jobs = (await jobsOf(t)).filter((j) => !j.metadata?.deletionTimestamp);
      const gone = await getTask(t).then(
        () => false,
        () => true,
      );
      return { done: gone && jobs.length === 0, seen: { gone, jobs: jobs.length } };
    });
  });
});

describe("operator crash", () => {
  it("SIGKILLed mid-task and restarted, completes the task without a duplicate Job", async () => {
    let op = startOperator({ namespace: ns.name, args: ["--leader-elect=false"] });
    const first = op;
    onTestFailed(() =>
      console.error(`--- operators ---\n${first.logs().slice(-5000)}\n---\n${op.logs().slice(-5000)}`),
    );
    const steps = [
      step("first", {}, { KWOK_RUN: "3s", KWOK_RESULT: '{"ok":true}' }),
      step("second", { dependsOn: ["first"] }),
    ];
    const t = await createTask("crash", steps);
    await waitTask(t, "first step running", (x) => x.status?.steps?.[0]?.phase === "Running");
    await op.kill();
    op = startOperator({ namespace: ns.name, args: ["--leader-elect=false"] });
    try {
      const done = await waitTask(t, "Succeeded after restart", (x) => x.status?.phase === "Succeeded");
      expect(done.status?.steps?.map((s) => s.phase)).toEqual(["Succeeded", "Succeeded"]);
      const jobs = await jobsOf(t);
      expect(jobs.map((j) => j.metadata?.labels?.["radflow.io/step"]).sort()).toEqual(["first", "second"]);
      const pods = await core().listNamespacedPod({ namespace: ns.name, labelSelector: `radflow.io/task=${t}` });
      expect(pods.items).toHaveLength(2);
    } finally {
      await op.stop();
    }
  });
});

describe("leader election", () => {
  it("lets only the leader write and hands over within the lease time when it dies", async () => {
    const fast = ["--lease-duration-ms", "6000", "--renew-deadline-ms", "4000", "--retry-period-ms", "1000"];
    const a = startOperator({ namespace: ns.name, identity: `leader-a-${ns.name}`, args: fast });
    await new Promise((r) => setTimeout(r, 2500)); // a takes the lease first
    const b = startOperator({ namespace: ns.name, identity: `leader-b-${ns.name}`, args: fast });
    try {
      const leases = kubeConfig().makeApiClient(CoordinationV1Api);
      const lease = await waitFor("a Lease held by replica a", 20_000, async () => {
        const l = await leases.readNamespacedLease({ name: "radflow-operator", namespace: ns.name });
        return { done: l.spec?.holderIdentity === a.identity, value: l, seen: l.spec?.holderIdentity };
      });
      expect(lease.spec?.leaseDurationSeconds).toBe(6);
      const t1 = await createTask("leader", [step("s")]);
      await waitTask(t1, "Succeeded", (x) => x.status?.phase === "Succeeded");
      const reporters = async (task: string) =>
        (await core().listNamespacedEvent({ namespace: ns.name })).items
          .filter((e) => e.involvedObject.name === task)
          .map((e) => e.reportingInstance);
      expect(new Set(await reporters(t1))).toEqual(new Set([a.identity]));

      const killedAt = Date.now();
      await a.kill();
      const t2 = await createTask("leader", [step("s")]);
      await waitTask(t2, "Succeeded under the new leader", (x) => x.status?.phase === "Succeeded", 30_000);
      const handover = Date.now() - killedAt;
      expect(handover).toBeLessThan(6000 + 10_000); // lease time plus a retry and the task's own run
      expect(new Set(await reporters(t2))).toEqual(new Set([b.identity]));
    } finally {
      await a.kill().catch(() => undefined);
      await b.stop();
    }
  });
});

describe("dispatch", () => {
  it("completes 200 tasks with maxRunning respected and stat dispatched before batch", async () => {
    const op = startOperator({
      namespace: ns.name,
      args: ["--leader-elect=false", "--max-running-jobs", "6", "--workers", "16"],
    });
    try {
      await createWorkflow("bulk", [step("m")], { priority: "batch", concurrency: { maxRunning: 4 } });
      await createWorkflow("urgent-ct", [step("m")], { priority: "stat" });
      // watch Job creations in commit order
      const order: { wf: string; at: number }[] = [];
      let maxBulkRunning = 0;
      const running = new Map<string, string>();
      const w = new Watch(kubeConfig());
      const req = await w.watch(
        `/apis/batch/v1/namespaces/${ns.name}/jobs`,
        { labelSelector: "radflow.io/task" },
        (type, obj: V1Job) => {
          const wf = obj.metadata?.labels?.["radflow.io/workflow"] as string;
          const name = obj.metadata?.name as string;
          if (type === "ADDED") order.push({ wf, at: Date.now() });
          const finished = obj.status?.conditions?.some(
            (c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True",
          );
          if (type === "DELETED" || finished) running.delete(name);
          else running.set(name, wf);
          const bulk = [...running.values()].filter((x) => x === "bulk").length;
          maxBulkRunning = Math.max(maxBulkRunning, bulk);
        },
        () => undefined,
      );
      const slow = { KWOK_RUN: "1s" };
      const batchNames: string[] = [];
      for (let i = 0; i < 150; i++)
        batchNames.push(await createTask("bulk", [step("m", {}, slow)], { priority: "batch" }, `bulk-${i}`));
      await new Promise((r) => setTimeout(r, 2000));
      const statNames: string[] = [];
      const statStart = order.length;
      for (let i = 0; i < 50; i++)
        statNames.push(await createTask("urgent-ct", [step("m")], { priority: "stat" }, `stat-${i}`));
      await waitFor(
        "all 200 tasks to succeed",
        240_000,
        async () => {
          const list = (await custom().listNamespacedCustomObject({
            ...G,
            namespace: ns.name,
            plural: "inferencetasks",
          })) as {
            items: InferenceTask[];
          };
          const mine = list.items.filter((t) => /^(bulk|stat)-/.test(t.metadata.name as string));
          const ok = mine.filter((t) => t.status?.phase === "Succeeded").length;
          return { done: ok === 200, seen: `${ok}/200 succeeded` };
        },
        1000,
      );
      req.abort();
      expect(maxBulkRunning).toBeLessThanOrEqual(4);
      // once the stat tasks arrived, every stat Job was created before the batch queue moved on:
      // at most the few batch Jobs already admitted (global cap 6) may slip in between
      const after = order.slice(statStart);
      const lastStat = after.map((o) => o.wf).lastIndexOf("urgent-ct");
      const bulkBeforeLastStat = after.slice(0, lastStat).filter((o) => o.wf === "bulk").length;
      expect(after.filter((o) => o.wf === "urgent-ct")).toHaveLength(50);
      expect(bulkBeforeLastStat).toBeLessThanOrEqual(6);
    } finally {
      await op.stop();
    }
  }, 300_000);
});
