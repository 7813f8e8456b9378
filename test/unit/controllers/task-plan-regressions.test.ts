// Table tests of the InferenceTask planner: observed state (task, Jobs, pods, clock, capacity) in,
// plan (status, writes, Events, audit facts) out. No cluster: the apply step is an integration test.
import { describe, expect, it } from "vitest";
import { type Condition, InferenceTask } from "../../../src/api/v1alpha1/index.ts";
import {
  FINALIZER,
  type JobView,
  type Plan,
  type PlanInput,
  type PodView,
  planTask,
} from "../../../src/controllers/task-plan.ts";
import { jobName } from "../../../src/jobs/job-builder.ts";

const TASK = "head-ct-0123456789abcdef";
const T0 = Date.parse("2025-03-01T10:00:00Z");
const at = (seconds: number) => T0 + seconds * 1000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

interface StepSpec {
  name: string;
  dependsOn?: string[];
  when?: string;
  retries?: number;
}

interface TaskOptions {
  steps?: StepSpec[];
  spec?: Record<string, unknown>;
  status?: unknown;
  finalizers?: string[];
  deletionTimestamp?: string;
}

function makeTask(o: TaskOptions = {}): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: {
      name: TASK,
      namespace: "radiology",
      uid: "5f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11",
      generation: 1,
      creationTimestamp: iso(T0),
      finalizers: o.finalizers ?? [FINALIZER],
      ...(o.deletionTimestamp ? { deletionTimestamp: o.deletionTimestamp } : {}),
    },
    spec: {
      workflowRef: { name: "head-ct", uid: "0a7e2d41-3b7e-4f7e-8d0e-5a4c2b1d9e00", generation: 3 },
      priority: "stat",
      steps: (o.steps ?? [{ name: "detect" }]).map((s) => ({ image: "registry.example.org/ich-triage:1.4", ...s })),
      study: {
        studyInstanceUID: "1.2.840.113619.2.55.3.604688119",
        series: [{ seriesInstanceUID: "1.2.840.113619.2.55.3.604688119.1", modality: "CT", numberOfInstances: 120 }],
      },
      eventId: "evt-1",
      ...o.spec,
    },
    status: o.status,
  });
}

/** The task as the informer returns it after the plan's status (and finalizer) were written. */
function written(task: InferenceTask, p: Plan): InferenceTask {
  return InferenceTask.parse({
    ...task,
    metadata: {
      ...task.metadata,
      finalizers: p.addFinalizer ? [...(task.metadata.finalizers ?? []), FINALIZER] : task.metadata.finalizers,
    },
    status: JSON.parse(JSON.stringify(p.status)),
  });
}

function job(step: string, o: Partial<JobView> = {}): JobView {
  return {
    name: jobName(TASK, step),
    step,
    active: 1,
    succeeded: 0,
    failed: 0,
    suspended: false,
    deleting: false,
    ...o,
  };
}
const completeJob = (step: string) =>
  job(step, { active: 0, succeeded: 1, complete: { reason: "CompletionsReached" } });

function pod(step: string, o: Partial<PodView> = {}): PodView {
  return { name: `${jobName(TASK, step)}-x7k2p`, step, phase: "Pending", created: iso(T0), ...o };
}
const succeededPod = (step: string, message?: string) =>
  pod(step, { phase: "Succeeded", terminated: { exitCode: 0, reason: "Completed", message } });

function plan(task: InferenceTask, o: Partial<Omit<PlanInput, "task">> = {}): Plan {
  return planTask({ task, jobs: [], pods: [], now: T0, capacity: 1, ...o });
}

const _cond = (p: Plan, type: string): Condition | undefined => p.status.conditions?.find((c) => c.type === type);
const step = (p: Plan, name: string) => p.status.steps?.find((s) => s.name === name);

const _UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available";

/** A new single-step task whose first plan created the Job (at T0). */
const _created = () => {
  const t = makeTask({ finalizers: [] });
  return written(t, plan(t));
};

describe("planner regressions (each once a defect)", () => {
  it("D1: pod Succeeded, Job not yet Complete (Job-controller lag): step must not regress to Pending nor QueueTimeout", () => {
    const t0 = makeTask({ spec: { queueTimeoutSeconds: 120 } });
    const t1 = written(t0, plan(t0));
    const t2 = written(
      t1,
      plan(t1, { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })], now: at(5) }),
    );
    expect(t2.status?.phase).toBe("Running");
    // the pod has just succeeded; the Job controller has not yet set Complete
    const p = plan(t2, {
      jobs: [job("detect", { active: 0, succeeded: 1 })],
      pods: [succeededPod("detect", '{"device":true}')],
      now: at(300),
      capacity: 0,
    });
    expect(step(p, "detect")?.phase).not.toBe("Pending");
    expect(p.status.phase).not.toBe("Failed");
  });

  it("D1b: a retry pod after a failed attempt must not QueueTimeout a step that already ran", () => {
    const t0 = makeTask({ steps: [{ name: "detect", retries: 2 }], spec: { queueTimeoutSeconds: 120 } });
    const t1 = written(t0, plan(t0));
    const t2 = written(
      t1,
      plan(t1, { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })], now: at(5) }),
    );
    const p = plan(t2, {
      jobs: [job("detect", { active: 1, failed: 1 })],
      pods: [
        pod("detect", { name: "p1", phase: "Failed", terminated: { exitCode: 1, reason: "Error" } }),
        pod("detect", { name: "p2", created: iso(at(600)), phase: "Pending" }),
      ],
      now: at(601),
      capacity: 0,
    });
    expect(p.status.phase).not.toBe("Failed");
  });

  it("D2: steps listed out of DAG order still run (validation accepts any order)", () => {
    const steps: StepSpec[] = [
      { name: "d", dependsOn: ["b", "c"] },
      { name: "b", dependsOn: ["a"] },
      { name: "c", dependsOn: ["a"] },
      { name: "a" },
    ];
    const t = makeTask({ steps });
    const p = plan(t, {
      jobs: [completeJob("a")],
      pods: [succeededPod("a", "{}")],
      capacity: Number.POSITIVE_INFINITY,
    });
    expect(p.create.map((c) => c.step.name).sort()).toEqual(["b", "c"]);
  });

  it("D3: TTL must not delete a task whose results were never published", () => {
    const t = makeTask({
      spec: { ttlSecondsAfterFinished: 0 },
      status: { phase: "Succeeded", completionTime: iso(T0), steps: [{ name: "detect", phase: "Succeeded" }] },
    });
    const p = plan(t, { now: at(1), resultsRequired: true });
    expect(p.publishResults).toBe(true);
    expect(p.deleteTask).toBe(false);
    // without a results publisher (no NATS), the TTL alone decides
    expect(plan(t, { now: at(1), resultsRequired: false }).deleteTask).toBe(true);
  });

  it("D4a: Job Complete but its pod no longer visible (pod GC / node scale-down): recorded outputs are kept", () => {
    const steps: StepSpec[] = [{ name: "detect" }, { name: "identify", dependsOn: ["detect"] }];
    const t0 = makeTask({ steps });
    const t1 = written(
      t0,
      plan(t0, { jobs: [completeJob("detect")], pods: [succeededPod("detect", '{"device":true}')] }),
    );
    expect(
      step(plan(t1, { jobs: [completeJob("detect")], pods: [succeededPod("detect", '{"device":true}')] }), "detect")
        ?.outputs,
    ).toEqual({ device: true });
    const p = plan(t1, {
      jobs: [completeJob("detect"), job("identify")],
      pods: [pod("identify", { phase: "Running" })],
      now: at(600),
    });
    expect(step(p, "detect")?.outputs).toEqual({ device: true });
  });

  it("D4b: Job Complete seen before the pod's Succeeded update: the dependent `when` must not fail the task", () => {
    const steps: StepSpec[] = [
      { name: "detect" },
      { name: "identify", dependsOn: ["detect"], when: "steps.detect.outputs.device == true" },
    ];
    const t0 = makeTask({ steps });
    const t1 = written(t0, plan(t0, { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })] }));
    const p = plan(t1, { jobs: [completeJob("detect")], pods: [pod("detect", { phase: "Running" })], now: at(30) });
    expect(p.status.phase).not.toBe("Failed");
  });
});
