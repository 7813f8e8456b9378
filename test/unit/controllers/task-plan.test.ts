// Table tests of the InferenceTask planner: observed state (task, Jobs, pods, clock, capacity) in,
// plan (status, writes, Events, audit facts) out. No cluster: the apply step is an integration test.
import { describe, expect, it } from "vitest";
import { type Condition, InferenceTask } from "../../../src/api/v1alpha1/index.ts";
import {
  FINALIZER,
  formatDuration,
  type JobView,
  type Plan,
  type PlanInput,
  type PlannedAudit,
  type PlannedEvent,
  type PodView,
  parseOutputs,
  planTask,
  sameJson,
  summariseSteps,
} from "../../../src/controllers/task-plan.ts";
import { jobName } from "../../../src/jobs/job-builder.ts";
import { stepViews } from "./views.ts";

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

const { job, completeJob, pod, succeededPod } = stepViews(TASK, iso(T0));

function plan(task: InferenceTask, o: Partial<Omit<PlanInput, "task">> = {}): Plan {
  return planTask({ task, jobs: [], pods: [], now: T0, capacity: 1, ...o });
}

const cond = (p: Plan, type: string): Condition | undefined => p.status.conditions?.find((c) => c.type === type);
const step = (p: Plan, name: string) => p.status.steps?.find((s) => s.name === name);

const UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available";

/** A new single-step task whose first plan created the Job (at T0). */
const created = () => {
  const t = makeTask({ finalizers: [] });
  return written(t, plan(t));
};

describe("planTask: a new task", () => {
  const cases: {
    name: string;
    capacity: number;
    steps?: StepSpec[];
    want: Record<string, unknown>;
    events: Partial<PlannedEvent>[];
    audits: Partial<PlannedAudit>[];
  }[] = [
    {
      name: "capacity 1: finalizer added and the first step's Job created",
      capacity: 1,
      want: {
        addFinalizer: true,
        create: [{ step: { name: "detect" }, inputs: {} }],
        waitingForCapacity: false,
        status: {
          phase: "Pending",
          observedGeneration: 1,
          steps: [
            {
              name: "detect",
              phase: "Pending",
              reason: "JobCreated",
              jobName: jobName(TASK, "detect"),
              attempts: 0,
              startTime: iso(T0),
            },
          ],
        },
      },
      // a one-step task: no per-step Normal Event (the audit record still says it)
      events: [],
      audits: [{ kind: "StepStarted", outcome: "success", step: "detect" }],
    },
    {
      name: "capacity 0: Queued and waiting for capacity, no Job",
      capacity: 0,
      want: {
        addFinalizer: true,
        create: [],
        waitingForCapacity: true,
        status: {
          phase: "Pending",
          conditions: [{ type: "Succeeded", status: "Unknown", reason: "Queued", observedGeneration: 1 }],
          steps: [{ name: "detect", phase: "Pending", reason: "Queued", startTime: iso(T0) }],
        },
      },
      events: [],
      audits: [],
    },
    {
      name: "capacity 1 with two independent steps: one Job, the other Queued",
      capacity: 1,
      steps: [{ name: "detect" }, { name: "segment" }],
      want: {
        create: [{ step: { name: "detect" } }],
        waitingForCapacity: true,
        status: {
          steps: [
            { name: "detect", reason: "JobCreated" },
            { name: "segment", phase: "Pending", reason: "Queued" },
          ],
        },
      },
      events: [{ reason: "StepStarted", note: "step detect: Job created" }],
      audits: [{ kind: "StepStarted", step: "detect" }],
    },
    {
      name: "unlimited capacity with two independent steps: both Jobs",
      capacity: Number.POSITIVE_INFINITY,
      steps: [{ name: "detect" }, { name: "segment" }],
      want: {
        create: [{ step: { name: "detect" } }, { step: { name: "segment" } }],
        waitingForCapacity: false,
      },
      events: [{ reason: "StepStarted" }, { reason: "StepStarted" }],
      audits: [{ kind: "StepStarted" }, { kind: "StepStarted" }],
    },
  ];

  it.each(cases)("$name", ({ capacity, steps, want, events, audits }) => {
    const p = plan(makeTask({ finalizers: [], steps }), { capacity });
    expect(p).toMatchObject(want);
    expect(p.events).toHaveLength(events.length);
    for (const e of events) expect(p.events).toContainEqual(expect.objectContaining(e));
    expect(p.audits).toHaveLength(audits.length);
    for (const a of audits) expect(p.audits).toContainEqual(expect.objectContaining(a));
    expect(p.deleteJobs).toEqual([]);
    expect(p.publishResults).toBe(false);
  });

  it("does not add the finalizer twice", () => {
    expect(plan(makeTask({ finalizers: ["other.io/x", FINALIZER] })).addFinalizer).toBe(false);
  });
});

describe("planTask: observing a step's Job and pod", () => {
  const cases: {
    name: string;
    jobs: JobView[];
    pods: PodView[];
    want: Record<string, unknown>;
    succeeded: Partial<Condition>;
    events: Partial<PlannedEvent>[];
    audits: Partial<PlannedAudit>[];
    check?: (p: Plan) => void;
  }[] = [
    {
      name: "Job without pods: Pending/Starting",
      jobs: [job("detect")],
      pods: [],
      want: { status: { phase: "Pending", steps: [{ phase: "Pending", reason: "Starting", startTime: iso(T0) }] } },
      succeeded: { status: "Unknown", reason: "Queued" },
      events: [],
      audits: [],
    },
    {
      name: "pending pod: Pending/Starting",
      jobs: [job("detect")],
      pods: [pod("detect")],
      want: { status: { phase: "Pending", steps: [{ phase: "Pending", reason: "Starting", attempts: 1 }] } },
      succeeded: { status: "Unknown", reason: "Queued" },
      events: [],
      audits: [],
    },
    {
      name: "unschedulable pod: WaitingForGPU with the scheduler's message",
      jobs: [job("detect")],
      pods: [pod("detect", { unschedulable: UNSCHEDULABLE })],
      want: {
        status: {
          phase: "Pending",
          steps: [{ phase: "WaitingForGPU", reason: "Unschedulable", message: UNSCHEDULABLE }],
        },
      },
      succeeded: { status: "Unknown", reason: "WaitingForGPU" },
      events: [{ type: "Warning", reason: "WaitingForGPU", note: `step detect: ${UNSCHEDULABLE}` }],
      audits: [{ kind: "GPUWait", outcome: "success", step: "detect", description: UNSCHEDULABLE }],
      check: (p) =>
        expect(cond(p, "WaitingForGPU")).toMatchObject({
          status: "True",
          reason: "Unschedulable",
          message: `step detect: ${UNSCHEDULABLE}`,
          lastTransitionTime: iso(at(10)),
        }),
    },
    {
      name: "running pod: task Running, startTime set",
      jobs: [job("detect")],
      pods: [pod("detect", { phase: "Running" })],
      want: {
        status: {
          phase: "Running",
          startTime: iso(at(10)),
          currentStep: "detect",
          steps: [{ phase: "Running", reason: "Running", startTime: iso(T0) }],
        },
      },
      succeeded: { status: "Unknown", reason: "Running" },
      events: [],
      audits: [],
    },
    {
      name: "Kueue-suspended Job: Pending/AwaitingAdmission",
      jobs: [job("detect", { suspended: true, active: 0 })],
      pods: [],
      want: { status: { phase: "Pending", steps: [{ phase: "Pending", reason: "AwaitingAdmission" }] } },
      succeeded: { status: "Unknown", reason: "Queued" },
      events: [],
      audits: [],
    },
    {
      name: 'Job Complete with termination message {"device":true}: outputs copied, task Succeeded',
      jobs: [completeJob("detect")],
      pods: [succeededPod("detect", '{"device":true}\n')],
      want: {
        deleteJobs: [],
        publishResults: true,
        status: {
          phase: "Succeeded",
          startTime: iso(at(10)),
          completionTime: iso(at(10)),
          duration: "0s",
          steps: [
            {
              phase: "Succeeded",
              reason: "Completed",
              outputs: { device: true },
              completionTime: iso(at(10)),
              jobName: jobName(TASK, "detect"),
            },
          ],
        },
      },
      succeeded: { status: "True", reason: "Succeeded", message: "1 step(s) succeeded, 0 skipped" },
      events: [{ type: "Normal", reason: "Succeeded" }],
      audits: [
        { kind: "StepFinished", outcome: "success", step: "detect" },
        { kind: "TaskSucceeded", outcome: "success" },
      ],
    },
    {
      name: "Job Complete without a termination message: empty outputs",
      jobs: [completeJob("detect")],
      pods: [succeededPod("detect")],
      want: { status: { phase: "Succeeded", steps: [{ phase: "Succeeded", outputs: {} }] } },
      succeeded: { status: "True" },
      events: [{ reason: "Succeeded" }],
      audits: [{ kind: "StepFinished" }, { kind: "TaskSucceeded" }],
    },
    {
      name: "Job Failed (BackoffLimitExceeded) after an OOMKilled pod: task Failed/StepFailed naming step and exit code",
      jobs: [
        job("detect", {
          active: 0,
          failed: 1,
          failedCondition: { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" },
        }),
      ],
      pods: [pod("detect", { phase: "Failed", terminated: { exitCode: 137, reason: "OOMKilled" } })],
      want: {
        deleteJobs: [],
        publishResults: true,
        status: {
          phase: "Failed",
          completionTime: iso(at(10)),
          steps: [{ phase: "Failed", reason: "OOMKilled", attempts: 1 }],
        },
      },
      succeeded: { status: "False", reason: "StepFailed" },
      events: [
        { type: "Warning", reason: "StepFailed" },
        { type: "Warning", reason: "StepFailed" },
      ],
      audits: [
        { kind: "StepFinished", outcome: "seriousFailure", step: "detect", reason: "OOMKilled" },
        { kind: "TaskFailed", outcome: "seriousFailure", reason: "StepFailed" },
      ],
      check: (p) => {
        const m = cond(p, "Succeeded")?.message ?? "";
        expect(m).toContain("step detect failed");
        expect(m).toContain("exited with code 137 (OOMKilled)");
        expect(m).toContain("BackoffLimitExceeded");
      },
    },
    {
      name: "Job Failed after retries: the message describes the last attempt",
      jobs: [job("detect", { active: 0, failed: 3, failedCondition: { reason: "BackoffLimitExceeded" } })],
      pods: [
        pod("detect", {
          name: "p3",
          created: iso(at(8)),
          phase: "Failed",
          terminated: { exitCode: 2, reason: "Error" },
        }),
        pod("detect", { name: "p1", created: iso(at(1)), phase: "Failed", terminated: { exitCode: 137 } }),
        pod("detect", { name: "p2", created: iso(at(4)), phase: "Failed", terminated: { exitCode: 1 } }),
      ],
      want: { status: { phase: "Failed", steps: [{ phase: "Failed", reason: "Error", attempts: 3 }] } },
      succeeded: { status: "False", reason: "StepFailed" },
      events: [{ reason: "StepFailed" }, { reason: "StepFailed" }],
      audits: [{ kind: "StepFinished" }, { kind: "TaskFailed" }],
      check: (p) =>
        expect(step(p, "detect")?.message).toBe(
          "model container exited with code 2 (Error); 3 attempts; Job: BackoffLimitExceeded",
        ),
    },
    {
      name: "Job Failed without pod details: the Job's reason and message",
      jobs: [
        job("detect", {
          active: 0,
          failed: 1,
          failedCondition: { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" },
        }),
      ],
      pods: [],
      want: { status: { phase: "Failed", steps: [{ phase: "Failed", reason: "BackoffLimitExceeded" }] } },
      succeeded: { status: "False", reason: "StepFailed" },
      events: [{ reason: "StepFailed" }, { reason: "StepFailed" }],
      audits: [{ kind: "StepFinished" }, { kind: "TaskFailed" }],
      check: (p) => expect(step(p, "detect")?.message).toContain("Job has reached the specified backoff limit"),
    },
    {
      name: "Job Failed with DeadlineExceeded: task Failed/DeadlineExceeded",
      jobs: [
        job("detect", {
          active: 0,
          failed: 1,
          failedCondition: { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" },
        }),
      ],
      pods: [pod("detect", { phase: "Failed", terminated: { exitCode: 137, reason: "Error" } })],
      want: { status: { phase: "Failed", steps: [{ phase: "Failed", reason: "DeadlineExceeded" }] } },
      succeeded: { status: "False", reason: "DeadlineExceeded" },
      events: [{ reason: "StepFailed" }, { type: "Warning", reason: "DeadlineExceeded" }],
      audits: [{ kind: "StepFinished" }, { kind: "TaskFailed", reason: "DeadlineExceeded" }],
    },
  ];

  it.each(cases)("$name", ({ jobs, pods, want, succeeded, events, audits, check }) => {
    const p = plan(created(), { jobs, pods, now: at(10), capacity: 0 });
    expect(p).toMatchObject(want);
    expect(p.create).toEqual([]);
    expect(cond(p, "Succeeded")).toMatchObject({ type: "Succeeded", observedGeneration: 1, ...succeeded });
    expect(p.events).toHaveLength(events.length);
    for (const e of events) expect(p.events).toContainEqual(expect.objectContaining(e));
    expect(p.audits).toHaveLength(audits.length);
    for (const a of audits) expect(p.audits).toContainEqual(expect.objectContaining(a));
    check?.(p);
  });
});

describe("planTask: step outputs from the termination message", () => {
  const chain: StepSpec[] = [
    { name: "detect" },
    { name: "identify", dependsOn: ["detect"], when: "steps.detect.outputs.device == true" },
  ];
  const detectDone = (message: string | undefined) => ({
    jobs: [completeJob("detect")],
    pods: [succeededPod("detect", message)],
  });

  it("true: the dependent step's Job is created with the outputs as inputs", () => {
    const p = plan(makeTask({ steps: chain }), { ...detectDone('{"device":true,"score":0.97}'), now: at(30) });
    expect(p.create).toEqual([
      { step: expect.objectContaining({ name: "identify" }), inputs: { detect: { device: true, score: 0.97 } } },
    ]);
    expect(p.status).toMatchObject({
      phase: "Running",
      steps: [
        { name: "detect", phase: "Succeeded", outputs: { device: true, score: 0.97 } },
        { name: "identify", phase: "Pending", reason: "JobCreated", jobName: jobName(TASK, "identify") },
      ],
    });
  });

  it("false: the dependent step is Skipped and the task Succeeds", () => {
    const p = plan(makeTask({ steps: chain }), { ...detectDone('{"device":false}'), now: at(30) });
    expect(p.create).toEqual([]);
    expect(p.status).toMatchObject({
      phase: "Succeeded",
      steps: [
        { name: "detect", phase: "Succeeded" },
        { name: "identify", phase: "Skipped", reason: "ConditionFalse", completionTime: iso(at(30)) },
      ],
    });
    expect(cond(p, "Succeeded")).toMatchObject({ status: "True", message: "1 step(s) succeeded, 1 skipped" });
    expect(p.audits).toContainEqual({ kind: "StepFinished", outcome: "success", step: "identify", reason: "Skipped" });
    expect(p.publishResults).toBe(true);
  });

  it("a `when` that reads a missing output fails the step with ConditionError, never skips it", () => {
    const p = plan(makeTask({ steps: chain }), { ...detectDone('{"bleed":true}'), now: at(30) });
    expect(p.create).toEqual([]);
    expect(step(p, "identify")).toMatchObject({ phase: "Failed", reason: "ConditionError" });
    expect(step(p, "identify")?.message).toMatch(/^`when` could not be evaluated: .*device/);
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "ConditionError" });
    expect(p.audits).toContainEqual(
      expect.objectContaining({ kind: "StepFinished", outcome: "seriousFailure", reason: "ConditionError" }),
    );
    // and it stays failed on the next look: the decision is recorded, not re-evaluated
    const again = plan(written(makeTask({ steps: chain }), p), { ...detectDone('{"bleed":true}'), now: at(40) });
    expect(again.status.phase).toBe("Failed");
  });

  const bigObject = JSON.stringify({ mask: "x".repeat(4100) });
  const invalid: [string, string][] = [
    ["not JSON", "device=true"],
    ["a JSON array", "[true]"],
    ["a JSON number", "42"],
    ["a JSON string", '"device"'],
    ["JSON null", "null"],
    ["truncated JSON", '{"device":tr'],
    ["an object larger than 4096 bytes", bigObject],
  ];
  it.each(invalid)("%s: the step Fails with InvalidOutput and the task with StepFailed", (_name, message) => {
    const p = plan(makeTask({ steps: chain }), { ...detectDone(message), now: at(30) });
    expect(p.create).toEqual([]);
    expect(step(p, "detect")).toMatchObject({ phase: "Failed", reason: "InvalidOutput" });
    expect(step(p, "detect")?.outputs).toBeUndefined();
    expect(step(p, "identify")).toMatchObject({ phase: "Canceled" });
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "StepFailed" });
    expect(cond(p, "Succeeded")?.message).toContain("step detect failed: termination message");
  });

  it("honours terminationMessageMaxBytes", () => {
    const message = JSON.stringify({ label: "é".repeat(40) }); // 92 bytes, 52 characters
    const input = { ...detectDone(message), now: at(30) };
    expect(step(plan(makeTask(), { ...input, terminationMessageMaxBytes: 92 }), "detect")?.phase).toBe("Succeeded");
    expect(step(plan(makeTask(), { ...input, terminationMessageMaxBytes: 91 }), "detect")).toMatchObject({
      phase: "Failed",
      reason: "InvalidOutput",
    });
  });
});

describe("parseOutputs", () => {
  const ok: [string | undefined, Record<string, unknown>][] = [
    [undefined, {}],
    ["", {}],
    [" \n", {}],
    ['{"device":true}', { device: true }],
    ['  {"findings":[{"label":"ich","p":0.9}]}\n', { findings: [{ label: "ich", p: 0.9 }] }],
    [JSON.stringify({ m: "y".repeat(4096 - 8) }), { m: "y".repeat(4088) }], // exactly 4096 bytes
  ];
  it.each(ok)("%j → outputs", (message, outputs) => {
    expect(parseOutputs(message, 4096)).toEqual({ ok: true, outputs });
  });

  const bad: [string, RegExp][] = [
    ["[1,2]", /must be a JSON object/],
    ["null", /must be a JSON object/],
    ["true", /must be a JSON object/],
    ["{", /not valid JSON/],
    [JSON.stringify({ m: "y".repeat(4089) }), /larger than 4096 bytes/],
  ];
  it.each(bad)("%j → error", (message, error) => {
    const r = parseOutputs(message, 4096);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(error);
  });

  // A model may print anything to its termination log, patient data included; the error lands in
  // status, a Kubernetes Event and an audit description, none of which may carry PHI (§7).
  it.each([
    "DOE^JOHN 1.2.840.113619.2.55 ACC20250301",
    '{"patient": DOE^JOHN, "accession": ACC20250301}',
    "Traceback: ValueError DOE^JOHN",
  ])("does not echo the message back in its error: %s", (message) => {
    const r = parseOutputs(message, 4096);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatch(/not valid JSON/);
      expect(r.error).not.toContain("DOE");
      expect(r.error).not.toContain("ACC2025");
    }
  });
});

describe("planTask: DAG order (diamond a → b, c → d)", () => {
  const diamond: StepSpec[] = [
    { name: "a" },
    { name: "b", dependsOn: ["a"] },
    { name: "c", dependsOn: ["a"] },
    { name: "d", dependsOn: ["b", "c"] },
  ];
  const done = (s: string, out: object) => ({ job: completeJob(s), pod: succeededPod(s, JSON.stringify(out)) });
  const running = (s: string) => ({ job: job(s), pod: pod(s, { phase: "Running" }) });
  type Obs = { job: JobView; pod: PodView };
  const input = (obs: Obs[]) => ({ jobs: obs.map((o) => o.job), pods: obs.map((o) => o.pod) });
  const INF = Number.POSITIVE_INFINITY;

  it("runs a, then b and c together, then d with both outputs, then Succeeds", () => {
    let t = makeTask({ steps: diamond });
    const stages: { obs: Obs[]; create: string[]; phases: string[]; phase: string }[] = [
      { obs: [], create: ["a"], phases: ["Pending", "Pending", "Pending", "Pending"], phase: "Pending" },
      { obs: [running("a")], create: [], phases: ["Running", "Pending", "Pending", "Pending"], phase: "Running" },
      {
        obs: [done("a", { ok: 1 })],
        create: ["b", "c"],
        phases: ["Succeeded", "Pending", "Pending", "Pending"],
        phase: "Running",
      },
      {
        obs: [done("a", { ok: 1 }), done("b", { b: 1 }), running("c")],
        create: [],
        phases: ["Succeeded", "Succeeded", "Running", "Pending"],
        phase: "Running",
      },
      {
        obs: [done("a", { ok: 1 }), done("b", { b: 1 }), done("c", { c: 2 })],
        create: ["d"],
        phases: ["Succeeded", "Succeeded", "Succeeded", "Pending"],
        phase: "Running",
      },
      {
        obs: [done("a", { ok: 1 }), done("b", { b: 1 }), done("c", { c: 2 }), done("d", {})],
        create: [],
        phases: ["Succeeded", "Succeeded", "Succeeded", "Succeeded"],
        phase: "Succeeded",
      },
    ];
    stages.forEach((s, i) => {
      const p = plan(t, { ...input(s.obs), now: at(i * 10), capacity: INF });
      expect(
        p.create.map((c) => c.step.name),
        `stage ${i}`,
      ).toEqual(s.create);
      expect(
        p.status.steps?.map((x) => x.phase),
        `stage ${i}`,
      ).toEqual(s.phases);
      expect(p.status.phase, `stage ${i}`).toBe(s.phase);
      if (s.create.includes("d")) expect(p.create[0]?.inputs).toEqual({ b: { b: 1 }, c: { c: 2 } });
      t = written(t, p);
    });
  });

  it("d waits while only one of b and c is done", () => {
    const p = plan(makeTask({ steps: diamond }), {
      ...input([done("a", {}), done("b", {}), running("c")]),
      capacity: INF,
    });
    expect(step(p, "d")).toMatchObject({
      phase: "Pending",
      reason: "WaitingForDependencies",
      message: "waiting for b, c",
    });
    expect(p.create).toEqual([]);
  });

  it("with one free slot, b starts and c is Queued", () => {
    const p = plan(makeTask({ steps: diamond }), { ...input([done("a", {})]), capacity: 1 });
    expect(p.create.map((c) => c.step.name)).toEqual(["b"]);
    expect(p.waitingForCapacity).toBe(true);
    expect(step(p, "c")).toMatchObject({ phase: "Pending", reason: "Queued" });
  });

  it("a skipped dependency counts as done", () => {
    const steps: StepSpec[] = [
      { name: "a" },
      { name: "b", dependsOn: ["a"], when: "steps.a.outputs.run == true" },
      { name: "c", dependsOn: ["a"] },
      { name: "d", dependsOn: ["b", "c"] },
    ];
    const p = plan(makeTask({ steps }), { ...input([done("a", { run: false }), done("c", {})]), capacity: INF });
    expect(step(p, "b")?.phase).toBe("Skipped");
    expect(p.create.map((c) => c.step.name)).toEqual(["d"]);
  });

  it("a failed dependency fails the task: d never starts, c's running Job is deleted", () => {
    const failedB = {
      job: job("b", { active: 0, failed: 1, failedCondition: { reason: "BackoffLimitExceeded" } }),
      pod: pod("b", { phase: "Failed", terminated: { exitCode: 1, reason: "Error" } }),
    };
    const p = plan(makeTask({ steps: diamond }), { ...input([done("a", {}), failedB, running("c")]), capacity: INF });
    expect(p.create).toEqual([]);
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "StepFailed" });
    expect(cond(p, "Succeeded")?.message).toContain("step b failed: model container exited with code 1");
    expect(p.status.steps?.map((s) => [s.name, s.phase, s.reason])).toEqual([
      ["a", "Succeeded", "Completed"],
      ["b", "Failed", "Error"],
      ["c", "Canceled", "StepFailed"],
      ["d", "Canceled", "StepFailed"],
    ]);
    expect(p.deleteJobs).toEqual([jobName(TASK, "c")]);
    expect(p.publishResults).toBe(true);
  });
});

describe("planTask: queue timeout", () => {
  const waiting = (queueTimeoutSeconds: number) => {
    const t = makeTask({ spec: { queueTimeoutSeconds } });
    const observed = { jobs: [job("detect")], pods: [pod("detect", { unschedulable: UNSCHEDULABLE })] };
    return { t: written(t, plan(t, { ...observed, now: T0 })), observed };
  };

  it.each([
    [0, 300_000],
    [100, 200_000],
    [299.5, 500],
    [299.99, 50],
  ])("at %ss of a 300 s timeout, still waiting: requeue after %i ms", (s, requeueAfterMs) => {
    const { t, observed } = waiting(300);
    const p = plan(t, { ...observed, now: at(s), capacity: 0 });
    expect(p.status.phase).toBe("Pending");
    expect(p.requeueAfterMs).toBe(requeueAfterMs);
    expect(p.deleteJobs).toEqual([]);
  });

  it("once exceeded while WaitingForGPU: Failed/QueueTimeout, Jobs deleted, loud", () => {
    const { t, observed } = waiting(300);
    const p = plan(t, { ...observed, now: at(300), capacity: 0 });
    expect(p.status).toMatchObject({
      phase: "Failed",
      completionTime: iso(at(300)),
      steps: [{ name: "detect", phase: "Canceled", reason: "QueueTimeout", completionTime: iso(at(300)) }],
    });
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "QueueTimeout" });
    expect(cond(p, "Succeeded")?.message).toBe(
      `step detect waited 300s without starting (queueTimeoutSeconds=300): ${UNSCHEDULABLE}`,
    );
    expect(p.deleteJobs).toEqual([jobName(TASK, "detect")]);
    expect(p.requeueAfterMs).toBeUndefined();
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "QueueTimeout" }));
    expect(p.audits).toContainEqual(
      expect.objectContaining({ kind: "TaskTimedOut", outcome: "seriousFailure", reason: "QueueTimeout" }),
    );
    expect(p.publishResults).toBe(true);
  });

  it("also applies to a step Queued behind the concurrency limit", () => {
    const t0 = makeTask({ spec: { queueTimeoutSeconds: 60 } });
    const t = written(t0, plan(t0, { capacity: 0 }));
    expect(plan(t, { now: at(59), capacity: 0 })).toMatchObject({ status: { phase: "Pending" }, requeueAfterMs: 1000 });
    const p = plan(t, { now: at(60), capacity: 0 });
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")?.reason).toBe("QueueTimeout");
    expect(p.waitingForCapacity).toBe(false);
  });

  it("does not apply to a step that is running", () => {
    const t0 = makeTask({ spec: { queueTimeoutSeconds: 60 } });
    const t = written(t0, plan(t0));
    const p = plan(t, { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })], now: at(3600) });
    expect(p.status.phase).toBe("Running");
    expect(p.requeueAfterMs).toBe(3600 * 1000 + 50); // only the run deadline (timeoutSeconds from container start)
  });

  it("does not apply to steps waiting for their dependencies", () => {
    const steps = [{ name: "a" }, { name: "b", dependsOn: ["a"] }];
    const t0 = makeTask({ steps, spec: { queueTimeoutSeconds: 60 } });
    const t = written(t0, plan(t0));
    const p = plan(t, { jobs: [job("a")], pods: [pod("a", { phase: "Running" })], now: at(3600) });
    expect(p.status.phase).toBe("Running");
    expect(step(p, "b")?.reason).toBe("WaitingForDependencies");
  });
});

describe("planTask: cancel", () => {
  it("spec.cancel: Canceled, active Jobs deleted, unfinished steps Canceled", () => {
    const steps: StepSpec[] = [{ name: "a" }, { name: "b" }, { name: "c", dependsOn: ["a", "b"] }];
    const p = plan(makeTask({ steps, spec: { cancel: true } }), {
      jobs: [completeJob("a"), job("b")],
      pods: [succeededPod("a", "{}"), pod("b", { phase: "Running" })],
      now: at(5),
      capacity: 5,
    });
    expect(p.status.phase).toBe("Canceled");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "Canceled" });
    expect(p.status.steps?.map((s) => [s.name, s.phase])).toEqual([
      ["a", "Succeeded"],
      ["b", "Canceled"],
      ["c", "Canceled"],
    ]);
    expect(p.create).toEqual([]);
    expect(p.waitingForCapacity).toBe(false);
    expect(p.deleteJobs).toEqual([jobName(TASK, "b")]);
    expect(p.audits).toContainEqual({ kind: "TaskCanceled", outcome: "minorFailure", reason: "Canceled" });
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Normal", reason: "Canceled" }));
    expect(p.events.map((e) => e.reason)).not.toContain("StepStarted");
  });

  it("a new canceled task starts nothing", () => {
    const p = plan(makeTask({ spec: { cancel: true } }), { capacity: 1 });
    expect(p.create).toEqual([]);
    expect(p.status.phase).toBe("Canceled");
    expect(p.audits.map((a) => a.kind)).toEqual(["TaskCanceled"]);
  });
});

describe("planTask: deletion", () => {
  const deleting = (finalizers: string[], status?: unknown) =>
    makeTask({ finalizers, deletionTimestamp: iso(at(100)), status });
  const cases: {
    name: string;
    task: InferenceTask;
    jobs: JobView[];
    deleteJobs: string[];
    removeFinalizer: boolean;
    audits: string[];
  }[] = [
    {
      name: "live Jobs: delete them, keep the finalizer",
      task: deleting([FINALIZER]),
      jobs: [job("detect"), completeJob("other")],
      deleteJobs: [jobName(TASK, "detect"), jobName(TASK, "other")],
      removeFinalizer: false,
      audits: [],
    },
    {
      name: "Jobs already being deleted: no new delete, still keep the finalizer",
      task: deleting([FINALIZER]),
      jobs: [job("detect", { deleting: true })],
      deleteJobs: [],
      removeFinalizer: false,
      audits: [],
    },
    {
      name: "no Jobs left: remove the finalizer, audit the unfinished task as canceled",
      task: deleting([FINALIZER]),
      jobs: [],
      deleteJobs: [],
      removeFinalizer: true,
      audits: ["TaskCanceled"],
    },
    {
      name: "no Jobs left, task had ended: remove the finalizer, nothing to audit",
      task: deleting([FINALIZER], { phase: "Succeeded", completionTime: iso(T0) }),
      jobs: [],
      deleteJobs: [],
      removeFinalizer: true,
      audits: [],
    },
    {
      name: "finalizer not ours: nothing to remove",
      task: deleting(["other.io/keep"]),
      jobs: [],
      deleteJobs: [],
      removeFinalizer: false,
      audits: [],
    },
  ];
  it.each(cases)("$name", ({ task, jobs, deleteJobs, removeFinalizer, audits }) => {
    const p = plan(task, { jobs, now: at(101) });
    expect(p.deleteJobs).toEqual(deleteJobs);
    expect(p.removeFinalizer).toBe(removeFinalizer);
    expect(p.addFinalizer).toBe(false);
    expect(p.create).toEqual([]);
    expect(p.audits.map((a) => a.kind)).toEqual(audits);
  });
});

describe("planTask: an ended task", () => {
  const ended = (o: { resultsPublished?: string; ttl?: number; phase?: "Succeeded" | "Failed" | "Canceled" }) =>
    makeTask({
      spec: o.ttl === undefined ? {} : { ttlSecondsAfterFinished: o.ttl },
      status: {
        phase: o.phase ?? "Succeeded",
        completionTime: iso(T0),
        resultsPublished: o.resultsPublished,
        steps: [{ name: "detect", phase: "Succeeded", outputs: {} }],
      },
    });
  const cases: {
    name: string;
    task: InferenceTask;
    now: number;
    jobs?: JobView[];
    want: Partial<Plan>;
    requeue?: number;
  }[] = [
    {
      name: "results not yet published: publish",
      task: ended({}),
      now: at(1),
      want: { publishResults: true, deleteTask: false },
    },
    {
      name: "results published, no TTL: nothing to do",
      task: ended({ resultsPublished: iso(T0) }),
      now: at(1),
      want: { publishResults: false, deleteTask: false, deleteJobs: [] },
    },
    {
      name: "TTL not yet due: requeue when it is",
      task: ended({ resultsPublished: iso(T0), ttl: 60 }),
      now: at(20),
      want: { deleteTask: false },
      requeue: 40_000,
    },
    {
      name: "TTL due: delete the task",
      task: ended({ resultsPublished: iso(T0), ttl: 60 }),
      now: at(60),
      want: { deleteTask: true },
    },
    {
      name: "a Job still running after the end: delete it",
      task: ended({ resultsPublished: iso(T0), phase: "Failed" }),
      now: at(1),
      jobs: [job("detect"), completeJob("other"), job("gone", { deleting: true })],
      want: { deleteJobs: [jobName(TASK, "detect")] },
    },
  ];
  it.each(cases)("$name", ({ task, now, jobs, want, requeue }) => {
    const p = plan(task, { now, jobs: jobs ?? [], capacity: 5 });
    expect(p).toMatchObject(want);
    expect(p.requeueAfterMs).toBe(requeue);
    expect(p.status).toBe(task.status);
    expect(p.create).toEqual([]);
    expect(p.events).toEqual([]);
    expect(p.audits).toEqual([]);
  });

  it("the plan that ends a task asks for the TTL requeue", () => {
    const p = plan(makeTask({ spec: { ttlSecondsAfterFinished: 600 } }), {
      jobs: [completeJob("detect")],
      pods: [succeededPod("detect", "{}")],
      now: at(5),
    });
    expect(p.status.phase).toBe("Succeeded");
    expect(p.requeueAfterMs).toBe(600_000);
  });
});

describe("planTask: conditions and status writes", () => {
  it("lastTransitionTime changes only when a condition's status does", () => {
    const gpuWait = { jobs: [job("detect")], pods: [pod("detect", { unschedulable: UNSCHEDULABLE })] };
    const running = { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })] };
    const done = { jobs: [completeJob("detect")], pods: [succeededPod("detect", "{}")] };
    let t = created(); // Succeeded=Unknown since T0
    const stages: {
      obs: Partial<PlanInput>;
      now: number;
      succeeded: [string, string, number];
      gpu?: [string, number];
    }[] = [
      { obs: gpuWait, now: at(10), succeeded: ["Unknown", "WaitingForGPU", T0], gpu: ["True", at(10)] },
      { obs: gpuWait, now: at(20), succeeded: ["Unknown", "WaitingForGPU", T0], gpu: ["True", at(10)] },
      { obs: running, now: at(30), succeeded: ["Unknown", "Running", T0], gpu: ["False", at(30)] },
      { obs: running, now: at(40), succeeded: ["Unknown", "Running", T0], gpu: ["False", at(30)] },
      { obs: done, now: at(50), succeeded: ["True", "Succeeded", at(50)], gpu: ["False", at(30)] },
    ];
    for (const s of stages) {
      const p = plan(t, { ...s.obs, now: s.now, capacity: 0 });
      const [status, reason, since] = s.succeeded;
      expect(cond(p, "Succeeded"), `at ${s.now}`).toMatchObject({ status, reason, lastTransitionTime: iso(since) });
      if (s.gpu) {
        expect(cond(p, "WaitingForGPU"), `at ${s.now}`).toMatchObject({
          status: s.gpu[0],
          lastTransitionTime: iso(s.gpu[1]),
        });
      }
      t = written(t, p);
    }
  });

  it("a running task with a step waiting for a GPU says so in its Succeeded reason", () => {
    const t = makeTask({ steps: [{ name: "a" }, { name: "b" }] });
    const p = plan(t, {
      jobs: [job("a"), job("b")],
      pods: [pod("a", { phase: "Running" }), pod("b", { unschedulable: UNSCHEDULABLE })],
      now: at(5),
    });
    expect(p.status.phase).toBe("Running");
    expect(p.status.currentStep).toBe("a,b");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "Unknown", reason: "WaitingForGPU" });
  });

  it("the WaitingForGPU Event and audit are emitted once, on the transition", () => {
    const obs = { jobs: [job("detect")], pods: [pod("detect", { unschedulable: UNSCHEDULABLE })] };
    const first = plan(created(), { ...obs, now: at(10) });
    expect(first.audits.map((a) => a.kind)).toEqual(["GPUWait"]);
    const second = plan(written(created(), first), { ...obs, now: at(20) });
    expect(second.events).toEqual([]);
    expect(second.audits).toEqual([]);
  });

  const cases: { name: string; steps?: StepSpec[]; spec?: Record<string, unknown>; input: Partial<PlanInput> }[] = [
    { name: "Queued (no capacity)", input: { capacity: 0 } },
    { name: "Starting", input: { jobs: [job("detect")], pods: [pod("detect")] } },
    {
      name: "WaitingForGPU with a queue timeout",
      spec: { queueTimeoutSeconds: 600 },
      input: { jobs: [job("detect")], pods: [pod("detect", { unschedulable: UNSCHEDULABLE })] },
    },
    { name: "AwaitingAdmission", input: { jobs: [job("detect", { suspended: true })] } },
    { name: "Running", input: { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })] } },
    {
      name: "Running with a dependent step waiting",
      steps: [{ name: "detect" }, { name: "identify", dependsOn: ["detect"] }],
      input: { jobs: [job("detect")], pods: [pod("detect", { phase: "Running" })] },
    },
    {
      name: "Running, first step done with outputs",
      steps: [{ name: "detect" }, { name: "identify", dependsOn: ["detect"] }],
      input: {
        jobs: [completeJob("detect"), job("identify")],
        pods: [succeededPod("detect", '{"device":true}'), pod("identify", { phase: "Running" })],
      },
    },
  ];
  it.each(cases)("re-planning an unchanged state ($name) gives the same status: no write", ({ steps, spec, input }) => {
    const t0 = makeTask({ steps, spec });
    const first = plan(t0, { now: at(1), ...input });
    const t = written(t0, first);
    const again = plan(t, { ...input, now: at(61) });
    expect(sameJson(again.status, t.status)).toBe(true);
    expect(again.create).toEqual([]);
    expect(again.events).toEqual([]);
    expect(again.audits).toEqual([]);
    expect(again.deleteJobs).toEqual([]);
  });
});

describe("sameJson", () => {
  const cases: [string, unknown, unknown, boolean][] = [
    ["key order", { a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 }, true],
    ["undefined members", { a: 1, b: undefined }, { a: 1 }, true],
    ["nested undefined", { s: [{ n: "x", m: undefined }] }, { s: [{ n: "x" }] }, true],
    ["array order matters", { s: [1, 2] }, { s: [2, 1] }, false],
    ["changed value", { phase: "Running" }, { phase: "Pending" }, false],
    ["null is not absent", { a: null }, {}, false],
    ["extra key", { a: 1, b: 2 }, { a: 1 }, false],
  ];
  it.each(cases)("%s", (_name, a, b, same) => {
    expect(sameJson(a, b)).toBe(same);
  });
});

describe("formatDuration", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [-5000, "0s"],
    [499, "0s"],
    [500, "1s"],
    [59_000, "59s"],
    [60_000, "1m0s"],
    [72_000, "1m12s"],
    [3_600_000, "1h0m0s"],
    [3_661_000, "1h1m1s"],
    [90_061_000, "25h1m1s"],
  ];
  it.each(cases)("%i ms → %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

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

describe("hardening (issue 12): steps that cannot succeed fail loudly", () => {
  it("a complete Job whose pod is gone fails the step with OutputsLost; a one-step task does not publish success", () => {
    const t = created();
    const gone = { jobs: [job("detect", { active: 0, succeeded: 1, complete: { at: iso(T0) } })], pods: [] };
    // first: read pods from the API server and look again (the cache may lag)
    const early = plan(t, { ...gone, now: at(5), capacity: 0 });
    expect(early.needsLivePods).toBe(true);
    expect(step(early, "detect")).toMatchObject({ phase: "Running", reason: "Completing" });
    // still gone after the grace period: the outputs are unknown, not empty
    const p = plan(t, { ...gone, now: at(61), capacity: 0 });
    expect(step(p, "detect")).toMatchObject({ phase: "Failed", reason: "OutputsLost" });
    expect(step(p, "detect")?.outputs).toBeUndefined();
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "OutputsLost" });
    expect(p.publishResults).toBe(true); // a failed result, not "succeeded" without findings
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "OutputsLost" }));
    expect(p.audits.map((a) => a.kind)).not.toContain("TaskSucceeded");
  });

  describe("a container the kubelet cannot start", () => {
    const scheduled = iso(at(2));
    const stuck = (reason: string, message?: string) => ({
      jobs: [job("detect")],
      pods: [pod("detect", { scheduledAt: scheduled, waiting: { reason, message } })],
    });

    it.each([
      ["ImagePullBackOff", 'Back-off pulling image "registry.example.org/ich-triage:1.4"'],
      ["ErrImagePull", "rpc error: not found"],
      ["CreateContainerConfigError", "container has runAsNonRoot and image will run as root"],
      ["InvalidImageName", "couldn't parse image reference"],
    ])("%s: shown at once on the step, a StartBlocked condition and a Warning Event", (reason, message) => {
      const p = plan(created(), { ...stuck(reason, message), now: at(10), capacity: 0, startTimeoutSeconds: 120 });
      expect(step(p, "detect")).toMatchObject({ phase: "Pending", reason });
      expect(step(p, "detect")?.message).toContain(message);
      expect(cond(p, "StartBlocked")).toMatchObject({ status: "True", reason });
      expect(p.events).toContainEqual({ type: "Warning", reason, note: expect.stringContaining("step detect") });
      expect(p.status.phase).toBe("Pending");
      // looked at again when the start timeout comes due (scheduled at 2 s + 120 s)
      expect(p.requeueAfterMs).toBe(at(122) - at(10) + 50);
      // the Event is not repeated while nothing changes
      expect(plan(written(created(), p), { ...stuck(reason, message), now: at(20), capacity: 0 }).events).toEqual([]);
    });

    it("fails the step after the start timeout, counted from scheduling, and removes the Job", () => {
      const t = written(created(), plan(created(), { ...stuck("ImagePullBackOff"), now: at(10), capacity: 0 }));
      const before = plan(t, { ...stuck("ImagePullBackOff"), now: at(121), capacity: 0, startTimeoutSeconds: 120 });
      expect(before.status.phase).toBe("Pending");
      const p = plan(t, { ...stuck("ImagePullBackOff"), now: at(122), capacity: 0, startTimeoutSeconds: 120 });
      expect(step(p, "detect")).toMatchObject({ phase: "Failed", reason: "ImagePullBackOff" });
      expect(step(p, "detect")?.message).toMatch(/did not start within 120s \(start timeout 120s\): ImagePullBackOff/);
      expect(p.status.phase).toBe("Failed");
      expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "StepFailed" });
      expect(p.deleteJobs).toEqual([jobName(TASK, "detect")]);
      expect(p.publishResults).toBe(true);
    });

    it("the default start timeout is five minutes", () => {
      const t = created();
      expect(plan(t, { ...stuck("ImagePullBackOff"), now: at(301), capacity: 0 }).status.phase).toBe("Pending");
      expect(plan(t, { ...stuck("ImagePullBackOff"), now: at(302), capacity: 0 }).status.phase).toBe("Failed");
    });

    it("normal progress (ContainerCreating) is not a start failure, however long an image pull takes", () => {
      const p = plan(created(), { ...stuck("ContainerCreating"), now: at(3600), capacity: 0 });
      expect(step(p, "detect")).toMatchObject({ phase: "Pending", reason: "Starting" });
      expect(cond(p, "StartBlocked")).toBeUndefined();
    });

    it("a container that starts after a back-off clears the condition", () => {
      const t = written(created(), plan(created(), { ...stuck("ImagePullBackOff"), now: at(10), capacity: 0 }));
      const p = plan(t, {
        jobs: [job("detect")],
        pods: [pod("detect", { phase: "Running", runningSince: iso(at(30)) })],
        now: at(31),
        capacity: 0,
      });
      expect(step(p, "detect")?.phase).toBe("Running");
      expect(cond(p, "StartBlocked")).toMatchObject({ status: "False" });
    });
  });

  it("a Job name held by another task's Job fails the step with JobNameConflict (condition and Event)", () => {
    const t = created();
    const p = plan(t, { now: at(1), capacity: 1, jobConflicts: { detect: "it belongs to task other step detect" } });
    expect(p.create).toEqual([]);
    expect(step(p, "detect")).toMatchObject({ phase: "Failed", reason: "JobNameConflict" });
    expect(step(p, "detect")?.message).toContain("it belongs to task other step detect");
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "JobNameConflict" });
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "StepFailed" }));
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "JobNameConflict" }));
    // recorded: the next look (no conflict input, the foreign Job is not this task's) keeps it failed
    const again = plan(written(t, p), { now: at(2), capacity: 1 });
    expect(again.status.phase).toBe("Failed");
    expect(again.create).toEqual([]);
  });

  it("storage nobody allowed (a task created directly) fails the step with StorageNotAllowed, no Job", () => {
    const t = created();
    const why = "storage.pvc.claimName 'x' is not a PersistentVolumeClaim the platform allowed for radflow";
    const p = plan(t, { now: at(1), capacity: 1, storageRefusal: why });
    expect(p.create).toEqual([]);
    expect(step(p, "detect")).toMatchObject({ phase: "Failed", reason: "StorageNotAllowed", message: why });
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "StorageNotAllowed" });
  });

  it("seven parallel steps with 40-character names: currentStep fits the schema's 256 characters", () => {
    const steps = Array.from({ length: 7 }, (_, i) => ({ name: `${String.fromCharCode(97 + i)}${"x".repeat(39)}` }));
    const p = plan(makeTask({ steps }), { capacity: Number.POSITIVE_INFINITY });
    expect(p.create).toHaveLength(7);
    // joined they would be 286 characters, and the API server answers 422 to the status write
    expect(steps.map((s) => s.name).join(",").length).toBe(286);
    const current = p.status.currentStep as string;
    expect(current.length).toBeLessThanOrEqual(256);
    expect(current).toMatch(/^ax{39},bx{39},.* \+\d$/);
    expect(() => InferenceTask.parse({ ...makeTask({ steps }), status: p.status })).not.toThrow();
  });

  it("summariseSteps keeps short lists whole and says how many it left out", () => {
    expect(summariseSteps(["a", "b"])).toBe("a,b");
    expect(summariseSteps(["aaaa", "bbbb", "cccc"], 10)).toBe("aaaa +2");
    expect(summariseSteps(["aaaaaaaaaaaa", "b"], 5)).toBe("+2");
  });
});

describe("finished tasks get a default TTL (issue 12)", () => {
  const ended = (spec: Record<string, unknown> = {}, published = true) =>
    makeTask({
      spec,
      status: {
        phase: "Succeeded",
        completionTime: iso(T0),
        resultsPublished: published ? iso(T0) : undefined,
        steps: [{ name: "detect", phase: "Succeeded", outputs: {} }],
      },
    });
  const day = 86_400;
  it("deleted once the operator's default is due, requeued until then", () => {
    expect(plan(ended(), { now: at(100), defaultTtlSeconds: day })).toMatchObject({
      deleteTask: false,
      requeueAfterMs: (day - 100) * 1000,
    });
    expect(plan(ended(), { now: at(day), defaultTtlSeconds: day }).deleteTask).toBe(true);
  });
  it("the workflow's ttlSecondsAfterFinished wins over the default", () => {
    expect(plan(ended({ ttlSecondsAfterFinished: 60 }), { now: at(60), defaultTtlSeconds: day }).deleteTask).toBe(true);
    expect(plan(ended({ ttlSecondsAfterFinished: 7 * day }), { now: at(day), defaultTtlSeconds: day }).deleteTask).toBe(
      false,
    );
  });
  it("a default of 0 keeps finished tasks", () => {
    expect(plan(ended(), { now: at(10 * day), defaultTtlSeconds: 0 }).deleteTask).toBe(false);
  });
  it("never before the results are published", () => {
    const p = plan(ended({}, false), { now: at(2 * day), defaultTtlSeconds: day, resultsRequired: true });
    expect(p.publishResults).toBe(true);
    expect(p.deleteTask).toBe(false);
  });
  it("the plan that ends a task asks for the default TTL requeue", () => {
    const p = plan(makeTask(), {
      jobs: [completeJob("detect")],
      pods: [succeededPod("detect", "{}")],
      now: at(5),
      defaultTtlSeconds: day,
    });
    expect(p.status.phase).toBe("Succeeded");
    expect(p.requeueAfterMs).toBe(day * 1000);
  });
});
