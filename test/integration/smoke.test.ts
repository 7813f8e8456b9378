// Proof that the local cluster's parts are real: the scheduler fits GPUs, the Job controller
// retries and completes, KWOK runs pods, the garbage collector follows owner references, and
// JetStream de-duplicates. Each test fails when the component it relies on is absent.
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { batch, core, natsUrl, useNamespace, waitFor } from "./helpers.ts";

const ns = useNamespace("smoke");

function gpuJob(
  name: string,
  gpus: number,
  extra: { backoffLimit?: number; annotations?: Record<string, string> } = {},
): V1Job {
  return {
    metadata: { name },
    spec: {
      backoffLimit: extra.backoffLimit ?? 0,
      template: {
        metadata: { annotations: extra.annotations },
        spec: {
          restartPolicy: "Never",
          tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
          containers: [
            {
              name: "model",
              image: "registry.example.org/smoke:1",
              resources: gpus > 0 ? { limits: { "nvidia.com/gpu": String(gpus) } } : undefined,
            },
          ],
        },
      },
    },
  };
}

async function podsOf(job: string): Promise<V1Pod[]> {
  return (await core().listNamespacedPod({ namespace: ns.name, labelSelector: `job-name=${job}` })).items;
}

describe("local cluster", () => {
  it("schedules a 1-GPU Job onto a GPU node, runs its pod to Succeeded and completes the Job", async () => {
    await batch().createNamespacedJob({ namespace: ns.name, body: gpuJob("one-gpu", 1) });
    const job = await waitFor("Job one-gpu to be Complete", 60_000, async () => {
      const j = await batch().readNamespacedJob({ name: "one-gpu", namespace: ns.name });
      const complete = j.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True");
      return { done: !!complete, value: j, seen: j.status };
    });
    expect(job.status?.succeeded).toBe(1);
    const [pod] = await podsOf("one-gpu");
    expect(pod?.status?.phase).toBe("Succeeded");
    const node = await core().readNode({ name: pod?.spec?.nodeName as string });
    expect(node.status?.allocatable?.["nvidia.com/gpu"]).toBe("4");
    expect(node.metadata?.labels?.["nvidia.com/gpu.product"]).toMatch(/^NVIDIA-/);
  });

  it("keeps a 5-GPU Job's pod Pending as unschedulable (no node has 5 GPUs)", async () => {
    await batch().createNamespacedJob({ namespace: ns.name, body: gpuJob("five-gpu", 5) });
    const cond = await waitFor("the 5-GPU pod to be marked Unschedulable by the scheduler", 60_000, async () => {
      const [pod] = await podsOf("five-gpu");
      const c = pod?.status?.conditions?.find((x) => x.type === "PodScheduled");
      return { done: c?.reason === "Unschedulable", value: c, seen: pod?.status };
    });
    expect(cond?.message).toMatch(/nvidia\.com\/gpu/);
    const [pod] = await podsOf("five-gpu");
    expect(pod?.status?.phase).toBe("Pending");
    expect(pod?.spec?.nodeName).toBeUndefined();
  });

  it("retries a failing pod up to backoffLimit and fails the Job with the pod's reason", async () => {
    await batch().createNamespacedJob({
      namespace: ns.name,
      body: gpuJob("fails", 0, {
        backoffLimit: 1,
        annotations: { "kwok.radflow.io/exit-code": "137", "kwok.radflow.io/reason": "OOMKilled" },
      }),
    });
    const job = await waitFor("Job fails to be Failed", 90_000, async () => {
      const j = await batch().readNamespacedJob({ name: "fails", namespace: ns.name });
      const failed = j.status?.conditions?.find((c) => c.type === "Failed" && c.status === "True");
      return { done: !!failed, value: j, seen: j.status };
    });
    expect(job.status?.conditions?.find((c) => c.type === "Failed")?.reason).toBe("BackoffLimitExceeded");
    const pods = await podsOf("fails");
    expect(pods).toHaveLength(2); // the first attempt and one retry
    for (const p of pods) {
      const t = p.status?.containerStatuses?.[0]?.state?.terminated;
      expect(t?.exitCode).toBe(137);
      expect(t?.reason).toBe("OOMKilled");
    }
  });

  it("garbage-collects a Job when its owner is deleted", async () => {
    const owner = await core().createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: "owner" } } });
    const job = gpuJob("owned", 0);
    job.metadata!.ownerReferences = [
      { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata!.uid!, blockOwnerDeletion: true },
    ];
    await batch().createNamespacedJob({ namespace: ns.name, body: job });
    await core().deleteNamespacedConfigMap({ name: "owner", namespace: ns.name });
    await waitFor("the garbage collector to delete Job owned", 60_000, async () => {
      try {
        const j = await batch().readNamespacedJob({ name: "owned", namespace: ns.name });
        return { done: false, seen: `still there (deletionTimestamp=${j.metadata?.deletionTimestamp})` };
      } catch (e) {
        return { done: (e as { code?: number }).code === 404, seen: (e as Error).message };
      }
    });
  });
});

describe("JetStream", () => {
  it("stores a message published twice with the same Nats-Msg-Id once", async () => {
    const nc = await connect({ servers: natsUrl() });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = `SMOKE_${Date.now()}`;
      await jsm.streams.add({ name: stream, subjects: [`smoke.${stream}.>`], duplicate_window: 60_000_000_000 });
      const js = jetstream(nc);
      const a = await js.publish(`smoke.${stream}.x`, "one", { msgID: "same-id" });
      const b = await js.publish(`smoke.${stream}.x`, "one", { msgID: "same-id" });
      expect(a.duplicate).toBe(false);
      expect(b.duplicate).toBe(true);
      expect((await jsm.streams.info(stream)).state.messages).toBe(1);
      await jsm.streams.delete(stream);
    } finally {
      await nc.close();
    }
  });
});
