// The task cache keeps a finished, published InferenceTask without its steps snapshot, study,
// storage and export: what the controllers read of it (the terminal plan: TTL, finalizer,
// deletion, no status write; work-queue lane; metrics) is the same as from the whole task.
import { describe, expect, it } from "vitest";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { FINALIZER, type PlanInput, planTask } from "../../../src/controllers/task-plan.ts";
import { cachedTask, isSettledTask, isTrimmedTask } from "../../../src/kube/cached-shapes.ts";
import { plain } from "../../../src/kube/informer.ts";

const END = "2026-12-03T10:00:30Z";

function rawTask(status: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) {
  return plain({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: {
      name: "ct-head-abc",
      namespace: "radiology",
      uid: "u-1",
      resourceVersion: "7",
      generation: 1,
      creationTimestamp: "2026-12-03T10:00:00Z",
      finalizers: [FINALIZER],
      labels: { "radflow.io/workflow": "ct-head" },
      managedFields: [{ manager: "radflow", fieldsV1: { "f:status": {} } }],
      ...extra,
    },
    spec: {
      workflowRef: { name: "ct-head", uid: "w-1", generation: 1 },
      eventId: "e-1",
      eventSource: "/gateway/a",
      priority: "stat",
      ttlSecondsAfterFinished: 600,
      study: {
        studyInstanceUID: "1.2.826.0.1.3680043.8.498.1",
        accessionNumber: "ACC-1",
        series: Array.from({ length: 20 }, (_, i) => ({
          seriesInstanceUID: `1.2.826.0.1.3680043.8.498.1.${i}`,
          modality: "CT",
          seriesDescription: `Head ${i} w/o contrast 5mm`,
          numberOfInstances: 120,
        })),
      },
      steps: [
        {
          name: "bleed",
          image: "registry.example.org/bleed:1",
          resources: { gpu: 1 },
          env: Array.from({ length: 30 }, (_, i) => ({ name: `MODEL_OPT_${i}`, value: "x".repeat(60) })),
        },
      ],
      storage: { pvc: { claimName: "studies" } },
    },
    status,
  });
}

const finished = (extra: Record<string, unknown> = {}) => ({
  observedGeneration: 1,
  phase: "Succeeded",
  currentStep: "bleed",
  conditions: [
    { type: "Succeeded", status: "True", reason: "Succeeded", message: "1 step(s) succeeded", lastTransitionTime: END },
  ],
  steps: [{ name: "bleed", phase: "Succeeded", jobName: "ct-head-abc-bleed", attempts: 1, outputs: { bleed: false } }],
  startTime: "2026-12-03T10:00:01Z",
  completionTime: END,
  duration: "29s",
  ...extra,
});

const plan = (task: InferenceTask, now: number) => {
  const input: PlanInput = {
    task,
    jobs: [],
    pods: [],
    now,
    capacity: 0,
    resultsRequired: true,
    defaultTtlSeconds: 86400,
  };
  return planTask(input);
};

describe("cachedTask", () => {
  it("drops the steps snapshot, study, storage and managedFields of a finished task whose results went out", () => {
    const raw = rawTask(finished({ resultsPublished: END }));
    const t = cachedTask(raw);
    expect(isSettledTask(t)).toBe(true);
    expect(isTrimmedTask(t)).toBe(true);
    expect(t.spec.steps).toEqual([]);
    expect(t.spec.study).toBeUndefined();
    expect(t.spec.storage).toBeUndefined();
    expect(JSON.stringify(t)).not.toContain("ACC-1");
    expect(JSON.stringify(t)).not.toContain("managedFields");
    expect(JSON.stringify(t).length).toBeLessThan(JSON.stringify(raw).length / 3);
    // kept: what the controllers read
    expect(t.status).toEqual(InferenceTask.parse(raw).status);
    expect(t.metadata.finalizers).toEqual([FINALIZER]);
    expect(t.spec).toMatchObject({ priority: "stat", ttlSecondsAfterFinished: 600, eventId: "e-1" });
    expect(t.spec.workflowRef).toEqual({ name: "ct-head", uid: "w-1", generation: 1 });
    // the mark survives a spread (the reconciler's own copy after a status write)
    expect(isTrimmedTask({ ...t, status: t.status })).toBe(true);
  });

  it("keeps a task whole while it runs, and a finished one whose results are not yet published", () => {
    for (const status of [undefined, { phase: "Running" }, finished()]) {
      const t = cachedTask(rawTask(status));
      expect(isTrimmedTask(t)).toBe(false);
      expect(t.spec.steps).toHaveLength(1);
      expect(t.spec.study.accessionNumber).toBe("ACC-1");
      expect(t.spec.storage).toMatchObject({ pvc: { claimName: "studies" } });
    }
  });

  it("the planner makes the same plan from the trimmed task as from the whole one", () => {
    const due = Date.parse(END) + 600_000;
    const cases: [string, Record<string, unknown>, Record<string, unknown>, number][] = [
      ["TTL not yet due", finished({ resultsPublished: END }), {}, due - 5_000],
      ["TTL due: delete", finished({ resultsPublished: END }), {}, due + 1],
      ["being deleted: finalizer off", finished({ resultsPublished: END }), { deletionTimestamp: END }, due - 5_000],
      ["failed", finished({ phase: "Failed", resultsPublished: END }), {}, due - 5_000],
    ];
    for (const [what, status, meta, now] of cases) {
      const whole = InferenceTask.parse(rawTask(status, meta));
      const trimmed = cachedTask(rawTask(status, meta));
      expect(isTrimmedTask(trimmed), what).toBe(true);
      const a = plan(whole, now);
      const b = plan(trimmed, now);
      expect(b, what).toEqual(a);
      // and nothing is written from it but metadata: no status patch, no Job, no result, no audit fact
      expect(b.status, what).toEqual(trimmed.status);
      expect([b.create, b.audits, b.publishResults], what).toEqual([[], [], false]);
    }
  });
});
