// The planner's named policies one at a time (src/controllers/plan/): the table tests in
// task-plan.test.ts drive them through planTask; these pin each policy's own rule.
import { describe, expect, it } from "vitest";
import { type Condition, InferenceTask, type Step, type StepStatus } from "../../../src/api/v1alpha1/index.ts";
import { taskConditions } from "../../../src/controllers/plan/conditions.ts";
import { failedJob, jobInProgress, type ObserveLimits } from "../../../src/controllers/plan/observe-step.ts";
import { endedTaskTtl, nextRequeue } from "../../../src/controllers/plan/requeue.ts";
import { currentStep } from "../../../src/controllers/plan/status.ts";
import { evaluateWhen } from "../../../src/controllers/plan/step-phase.ts";
import { planSteps } from "../../../src/controllers/plan/steps.ts";
import { startWaiters, stopUnfinished, taskPhase } from "../../../src/controllers/plan/task-phase.ts";
import { transitions } from "../../../src/controllers/plan/transitions.ts";
import { stepViews } from "./views.ts";

const TASK = "chest-ct-0123456789abcdef";
const T0 = Date.parse("2025-06-01T08:00:00Z");
const at = (s: number) => T0 + s * 1000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const { pod } = stepViews(TASK, iso(T0));
const LIMITS: ObserveLimits = {
  maxBytes: 4096,
  timeoutSeconds: 600,
  gpuResource: "nvidia.com/gpu",
  startTimeoutSeconds: 300,
};

function task(spec: Record<string, unknown> = {}, status?: unknown): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: TASK, namespace: "radiology", uid: "u-1", generation: 2, creationTimestamp: iso(T0) },
    spec: {
      workflowRef: { name: "chest-ct", uid: "w-1", generation: 1 },
      priority: "routine",
      steps: [{ name: "a", image: "registry.example.org/m:1" }],
      study: { studyInstanceUID: "1.2.3", series: [] },
      eventId: "e-1",
      ...spec,
    },
    status,
  });
}
const st = (name: string, phase: StepStatus["phase"], o: Partial<StepStatus> = {}): StepStatus => ({
  name,
  phase,
  ...o,
});

describe("observe: a failed Job", () => {
  it("names the last failed pod's reason, but the Job's DeadlineExceeded wins", () => {
    const pods = [
      pod("a", { phase: "Failed", created: iso(at(1)), terminated: { exitCode: 1, reason: "Error" } }),
      pod("a", { phase: "Failed", created: iso(at(5)), terminated: { exitCode: 137, reason: "OOMKilled" } }),
    ];
    expect(failedJob({ reason: "BackoffLimitExceeded" }, pods, 2, true)).toMatchObject({
      phase: "Failed",
      reason: "OOMKilled",
      message: "model container exited with code 137 (OOMKilled); 2 attempts; Job: BackoffLimitExceeded",
    });
    expect(failedJob({ reason: "DeadlineExceeded" }, pods, 2, true).reason).toBe("DeadlineExceeded");
    expect(failedJob({ message: "gone" }, [], 1, false)).toMatchObject({
      reason: "JobFailed",
      message: "gone; 1 attempt; Job: Failed",
    });
  });
});

describe("observe: a Job on its way", () => {
  it("an unschedulable pod is a GPU wait only when GPUs are what is missing", () => {
    const gpu = pod("a", { unschedulable: "0/2 nodes are available: 2 Insufficient nvidia.com/gpu." });
    const vol = pod("a", { unschedulable: "0/2 nodes are available: 2 node(s) had volume node affinity conflict." });
    expect(jobInProgress([gpu], T0, LIMITS, 1, false).phase).toBe("WaitingForGPU");
    expect(jobInProgress([vol], T0, LIMITS, 1, false)).toMatchObject({ phase: "Pending", reason: "Unschedulable" });
  });

  it("a container that cannot start is Pending with its reason, rechecked at, and Failed after, the start timeout", () => {
    const stuck = pod("a", { scheduledAt: iso(T0), waiting: { reason: "ImagePullBackOff", message: "not found" } });
    expect(jobInProgress([stuck], at(10), LIMITS, 1, false)).toMatchObject({
      phase: "Pending",
      reason: "ImagePullBackOff",
      recheckAt: at(300),
    });
    expect(jobInProgress([stuck], at(300), LIMITS, 1, false)).toMatchObject({
      phase: "Failed",
      reason: "ImagePullBackOff",
    });
  });

  it("a running model is rechecked at its timeout and fails after it", () => {
    const running = pod("a", { phase: "Running", runningSince: iso(at(20)) });
    expect(jobInProgress([running], at(30), LIMITS, 1, true)).toMatchObject({
      phase: "Running",
      recheckAt: at(620),
    });
    expect(jobInProgress([running], at(621), LIMITS, 1, true)).toMatchObject({
      phase: "Failed",
      reason: "DeadlineExceeded",
    });
  });
});

describe("each step: `when`", () => {
  it("reads the study and the steps decided so far; an error is an error, never a skip", () => {
    const decided = new Map([["a", st("a", "Succeeded", { outputs: { score: 0.9 } })]]);
    const t = task();
    const step = (when?: string) =>
      task({ steps: [{ name: "b", image: "registry.example.org/m:1", ...(when ? { when } : {}) }] }).spec
        .steps[0] as Step;
    expect(evaluateWhen(step("steps.a.outputs.score > 0.5"), t, decided)).toEqual({ run: true });
    expect(evaluateWhen(step("steps.a.outputs.score > 0.95"), t, decided)).toEqual({ run: false });
    expect(evaluateWhen(step("steps.a.outputs.missing > 0.5"), t, decided)).toHaveProperty("error");
    expect(evaluateWhen(step(), t, decided)).toEqual({ run: true });
  });
});

describe("all steps: slots", () => {
  it("ready steps share the free slots in dependency order; the rest are Queued", () => {
    const steps = ["x", "y", "z"].map((name) => ({ name, image: "registry.example.org/m:1" }));
    const p = planSteps({ task: task({ steps }), jobs: [], pods: [], now: T0, capacity: 2 });
    expect(p.create.map((c) => c.step.name)).toEqual(["x", "y"]);
    expect(p.steps.map((s) => s.reason)).toEqual(["JobCreated", "JobCreated", "Queued"]);
    expect(p.waitingForCapacity).toBe(true);
  });
});

describe("task phase", () => {
  const none = new Set<string>();
  it("cancel wins over a failure, a failure over the queue timeout, the timeout over success", () => {
    const failed = [st("a", "Failed", { reason: "OOMKilled" }), st("b", "Pending", { startTime: iso(T0) })];
    expect(taskPhase(task({ cancel: true }), failed, [], T0).phase).toBe("Canceled");
    expect(taskPhase(task(), failed, [], T0)).toMatchObject({ phase: "Failed", reason: "StepFailed" });
    const waiting = [st("b", "Pending", { startTime: iso(T0) })];
    const timed = taskPhase(task({ queueTimeoutSeconds: 60 }), waiting, startWaiters(waiting, none), at(60));
    expect(timed).toMatchObject({ phase: "Failed", reason: "QueueTimeout" });
  });

  it("a step that has run is not waiting to start, whatever its phase says", () => {
    const steps = [st("a", "Pending", { startTime: iso(T0) }), st("b", "WaitingForGPU", { startTime: iso(T0) })];
    expect(startWaiters(steps, new Set(["a"])).map((s) => s.name)).toEqual(["b"]);
    expect(startWaiters([st("c", "Pending")], none)).toEqual([]); // no Job asked for yet
  });

  it("an ended task cancels its unfinished steps and keeps the finished ones as they were", () => {
    const done = st("a", "Succeeded", { completionTime: iso(T0) });
    const out = stopUnfinished(
      [done, st("b", "Running")],
      { phase: "Failed", reason: "QueueTimeout", message: "" },
      at(5),
    );
    expect(out[0]).toBe(done);
    expect(out[1]).toEqual({
      name: "b",
      phase: "Canceled",
      reason: "QueueTimeout",
      message: "task ended: QueueTimeout",
      completionTime: iso(at(5)),
    });
  });
});

describe("conditions", () => {
  const running = { phase: "Running" as const, reason: "Running", message: "" };
  it("WaitingForGPU and StartBlocked appear while they hold, turn False after, and are absent for tasks never held", () => {
    const gpu = [st("a", "WaitingForGPU", { message: "Insufficient nvidia.com/gpu" })];
    const first = taskConditions(undefined, running, gpu, T0, 2);
    expect(first.map((c) => [c.type, c.status, c.reason])).toEqual([
      ["Succeeded", "Unknown", "WaitingForGPU"],
      ["WaitingForGPU", "True", "Unschedulable"],
    ]);
    const later = taskConditions(first, running, [st("a", "Running")], at(9), 2);
    expect(later.map((c) => [c.type, c.status, c.reason])).toEqual([
      ["Succeeded", "Unknown", "Running"],
      ["WaitingForGPU", "False", "Scheduled"],
    ]);
    expect((later[1] as Condition).lastTransitionTime).toBe(iso(at(9)));
    expect((later[0] as Condition).observedGeneration).toBe(2);
    expect(taskConditions(undefined, running, [st("a", "Running")], T0, 2)).toHaveLength(1);
  });
});

describe("Events and audit facts", () => {
  const verdict = { phase: "Succeeded" as const, reason: "Succeeded", message: "1 step(s) succeeded, 0 skipped" };
  const base = { prevSteps: new Map(), create: [], reviewed: [], prevPhase: "Running" as const, verdict };
  it("a one-step task tells its end only; a multi-step task tells each step too", () => {
    const one = transitions({ ...base, multiStep: false, steps: [st("a", "Succeeded")] });
    expect(one.events.map((e) => e.reason)).toEqual(["Succeeded"]);
    expect(one.audits.map((a) => a.kind)).toEqual(["StepFinished", "TaskSucceeded"]);
    const two = transitions({ ...base, multiStep: true, steps: [st("a", "Succeeded"), st("b", "Succeeded")] });
    expect(two.events.map((e) => e.reason)).toEqual(["StepSucceeded", "StepSucceeded", "Succeeded"]);
  });

  it("says nothing again for a phase already recorded", () => {
    const prevSteps = new Map([["a", st("a", "Succeeded")]]);
    const again = transitions({
      ...base,
      prevSteps,
      prevPhase: "Succeeded",
      multiStep: false,
      steps: [st("a", "Succeeded")],
    });
    expect(again).toEqual({ events: [], audits: [] });
  });
});

describe("requeue and TTL", () => {
  it("the earliest of a queue timeout coming due and a recheck (plus 50 ms), never under 50 ms", () => {
    const t = task({ queueTimeoutSeconds: 60 });
    const waiting = [st("a", "Pending", { startTime: iso(T0) })];
    expect(nextRequeue(t, "Pending", waiting, [], at(20), undefined)).toBe(40_000);
    expect(nextRequeue(t, "Pending", waiting, [at(25)], at(20), undefined)).toBe(5_050);
    expect(nextRequeue(t, "Pending", waiting, [], at(60), undefined)).toBe(50);
    expect(nextRequeue(task(), "Running", [], [], at(20), undefined)).toBeUndefined();
  });

  it("an ending task is looked at again when its TTL is due", () => {
    expect(nextRequeue(task(), "Succeeded", [], [at(25)], T0, 600)).toBe(600_000);
    expect(nextRequeue(task({ ttlSecondsAfterFinished: 30 }), "Failed", [], [], T0, 600)).toBe(30_000);
    expect(nextRequeue(task(), "Succeeded", [], [], T0, undefined)).toBeUndefined();
  });

  it("an ended task is deleted at its TTL, and not before its results were published when they must be", () => {
    const ended = (resultsPublished?: boolean) =>
      task(
        {},
        { phase: "Succeeded", completionTime: iso(T0), ...(resultsPublished ? { resultsPublished: iso(T0) } : {}) },
      );
    const input = (t: InferenceTask, now: number) => ({
      task: t,
      jobs: [],
      pods: [],
      now,
      capacity: 0,
      defaultTtlSeconds: 60,
    });
    expect(endedTaskTtl(input(ended(), at(10)))).toEqual({ deleteTask: false, requeueAfterMs: 50_000 });
    expect(endedTaskTtl(input(ended(), at(60)))).toEqual({ deleteTask: true });
    expect(endedTaskTtl({ ...input(ended(), at(60)), resultsRequired: true })).toEqual({ deleteTask: false });
    expect(endedTaskTtl({ ...input(ended(true), at(60)), resultsRequired: true })).toEqual({ deleteTask: true });
  });
});

describe("currentStep", () => {
  it("the steps on their way, else the last that finished other than by cancel", () => {
    expect(currentStep([st("a", "Succeeded"), st("b", "Running"), st("c", "WaitingForGPU")])).toBe("b,c");
    expect(currentStep([st("a", "Pending", { startTime: iso(T0) }), st("b", "Pending")])).toBe("a");
    expect(currentStep([st("a", "Succeeded"), st("b", "Canceled")])).toBe("a");
  });
});
