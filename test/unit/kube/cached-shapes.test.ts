// The Job and Pod caches keep what radflow reads and drop the pod template: the planner's views
// of a real step Job and its pod are the same from the full object and from the cached one.
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { OperatorConfig } from "../../../src/config/operator-config.ts";
import { jobIsRunning, jobView, podView } from "../../../src/controllers/inferencetask.ts";
import { buildJob } from "../../../src/jobs/job-builder.ts";
import { cachedJob, cachedPod } from "../../../src/kube/cached-shapes.ts";
import { plain } from "../../../src/kube/informer.ts";

const task = InferenceTask.parse({
  apiVersion: "radflow.io/v1alpha1",
  kind: "InferenceTask",
  metadata: { name: "ct-head-abc", namespace: "radiology", uid: "u-1", resourceVersion: "7" },
  spec: {
    workflowRef: { name: "ct-head", uid: "w-1", generation: 1 },
    eventId: "e-1",
    priority: "stat",
    study: {
      studyInstanceUID: "1.2.826.0.1.3680043.8.498.1",
      series: [{ seriesInstanceUID: "1.2.826.0.1.3680043.8.498.1.1", modality: "CT", numberOfInstances: 120 }],
    },
    steps: [{ name: "bleed", image: "registry.example.org/bleed:1", resources: { gpu: 1 } }],
  },
});

function fullJob(): V1Job {
  const step = task.spec.steps[0];
  if (!step) throw new Error("no step");
  const j = buildJob(
    task,
    step,
    { earlier: { score: 0.9, text: "x".repeat(2000) } },
    OperatorConfig.parse({ identity: "t" }),
  );
  return plain({
    ...j,
    metadata: { ...j.metadata, uid: "j-1", resourceVersion: "11", creationTimestamp: "2026-12-03T10:00:00Z" },
    status: {
      startTime: "2026-12-03T10:00:01Z",
      completionTime: "2026-12-03T10:00:30Z",
      succeeded: 1,
      conditions: [{ type: "Complete", status: "True", reason: "CompletionsReached", message: "done" }],
    },
  }) as V1Job;
}

function fullPod(job: V1Job): V1Pod {
  return plain({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${job.metadata?.name}-x1y2z`,
      namespace: "radiology",
      uid: "p-1",
      resourceVersion: "12",
      creationTimestamp: "2026-12-03T10:00:01Z",
      labels: job.spec?.template.metadata?.labels,
      ownerReferences: [
        { apiVersion: "batch/v1", kind: "Job", name: job.metadata?.name, uid: "j-1", controller: true },
      ],
    },
    spec: { ...job.spec?.template.spec, nodeName: "gpu-node-1" },
    status: {
      phase: "Succeeded",
      conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: "2026-12-03T10:00:02Z" }],
      containerStatuses: [
        {
          name: "model",
          image: "registry.example.org/bleed:1",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 0, reason: "Completed", message: '{"bleed":false}' } },
        },
      ],
    },
  }) as V1Pod;
}

describe("cached Job and Pod shapes", () => {
  it("the planner sees the same Job and pod from the cached shape, which has no pod template", () => {
    const job = fullJob();
    const pod = fullPod(job);
    const cj = cachedJob(job);
    const cp = cachedPod(pod);
    expect(jobView(cj)).toEqual(jobView(job));
    expect(jobIsRunning(cj)).toBe(jobIsRunning(job));
    expect(podView(cp)).toEqual(podView(pod));
    expect(cj.spec?.template).toBeUndefined();
    expect(cp.spec?.containers).toBeUndefined();
    expect(cp.spec?.nodeName).toBe("gpu-node-1");
    expect(cj.metadata?.ownerReferences).toEqual(job.metadata?.ownerReferences);
    // most of a step's bytes were the template
    expect(JSON.stringify(cj).length).toBeLessThan(JSON.stringify(job).length / 3);
    expect(JSON.stringify(cp).length).toBeLessThan(JSON.stringify(pod).length / 2);
  });

  it("a suspended Job (Kueue) stays suspended in the cache", () => {
    const job = fullJob();
    (job.spec as { suspend?: boolean }).suspend = true;
    delete job.status;
    expect(jobView(cachedJob(job)).suspended).toBe(true);
    expect(jobIsRunning(cachedJob(job))).toBe(true);
  });
});
