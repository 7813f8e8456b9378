// Task audit facts from status (src/audit/task-facts.ts) and the task audit controller's ledger
// (src/controllers/task-audit.ts): a sink that is down loses nothing and blocks nothing, facts go
// out once and in lifecycle order, a task whose results went out is left alone, and a GPU wait a
// later status no longer shows is still recorded.
import { describe, expect, it } from "vitest";
import { InferenceTask, type InferenceTaskStatus } from "../../../src/api/v1alpha1/index.ts";
import type { AuditFact, AuditSink } from "../../../src/audit/facts.ts";
import { factId, taskFacts } from "../../../src/audit/task-facts.ts";
import { TaskAuditor } from "../../../src/controllers/task-audit.ts";

const UID = "5f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11";
const KEY = "radiology/head-ct-0123456789abcdef";

function task(status?: InferenceTaskStatus, more: Record<string, unknown> = {}): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "head-ct-0123456789abcdef", namespace: "radiology", uid: UID, ...more },
    spec: {
      workflowRef: { name: "head-ct", uid: "w", generation: 1 },
      priority: "stat",
      steps: [{ name: "detect", image: "registry.example.org/ich:1" }],
      study: { studyInstanceUID: "1.2.3.4", accessionNumber: "ACC1", series: [] },
      eventId: "evt-1",
    },
    status,
  });
}

const started: InferenceTaskStatus = {
  phase: "Pending",
  steps: [{ name: "detect", phase: "Pending", reason: "JobCreated", jobName: "j", startTime: "2025-03-01T10:00:00Z" }],
};
const waiting: InferenceTaskStatus = {
  phase: "Pending",
  steps: [
    {
      name: "detect",
      phase: "WaitingForGPU",
      reason: "Unschedulable",
      jobName: "j",
      startTime: "2025-03-01T10:00:00Z",
    },
  ],
  conditions: [
    {
      type: "WaitingForGPU",
      status: "True",
      reason: "Unschedulable",
      message: "",
      lastTransitionTime: "2025-03-01T10:00:01Z",
    },
  ],
};
const succeeded: InferenceTaskStatus = {
  phase: "Succeeded",
  completionTime: "2025-03-01T10:00:09Z",
  steps: [
    {
      name: "detect",
      phase: "Succeeded",
      jobName: "j",
      startTime: "2025-03-01T10:00:00Z",
      completionTime: "2025-03-01T10:00:09Z",
      outputs: { volumeMl: 12 },
    },
  ],
  conditions: [
    { type: "Succeeded", status: "True", reason: "Succeeded", message: "", lastTransitionTime: "2025-03-01T10:00:09Z" },
  ],
};

/** A sink that can be switched off, keeping what it accepted. */
function sink(): AuditSink & { up: boolean; got: AuditFact[] } {
  const s = {
    up: true,
    got: [] as AuditFact[],
    async record(f: AuditFact) {
      if (!s.up) throw new Error("publishing to radflow.audit.StepStarted: timeout");
      s.got.push(f);
    },
  };
  return s;
}

describe("taskFacts", () => {
  it("derives every fact a finished task's status implies, in lifecycle order, with the one id scheme", () => {
    const facts = taskFacts(task({ ...succeeded, resultsPublished: "2025-03-01T10:00:10Z" }));
    expect(facts.map((f) => f.kind)).toEqual(["StepStarted", "StepFinished", "TaskSucceeded", "ResultsPublished"]);
    expect(facts.map((f) => f.id)).toEqual([
      factId(UID, "StepStarted", "detect", undefined),
      `${UID}:StepFinished:detect:`,
      `${UID}:TaskSucceeded::`,
      `${UID}:ResultsPublished::`,
    ]);
    // times come from status, so deriving again gives the same facts
    expect(facts[0]?.time).toBe("2025-03-01T10:00:00Z");
    expect(facts[2]?.time).toBe("2025-03-01T10:00:09Z");
    expect(facts[0]?.study).toEqual({ studyInstanceUID: "1.2.3.4", accessionNumber: "ACC1" });
  });

  it("names a queue timeout TaskTimedOut and a failure's reason", () => {
    const failed = (reason: string): InferenceTaskStatus => ({
      phase: "Failed",
      steps: [{ name: "detect", phase: "Canceled", reason }],
      conditions: [
        { type: "Succeeded", status: "False", reason, message: "m", lastTransitionTime: "2025-03-01T10:00:09Z" },
      ],
    });
    expect(taskFacts(task(failed("QueueTimeout"))).map((f) => f.kind)).toEqual(["TaskTimedOut"]);
    expect(taskFacts(task(failed("StepFailed"))).map((f) => [f.kind, f.reason])).toEqual([
      ["TaskFailed", "StepFailed"],
    ]);
  });
});

describe("TaskAuditor", () => {
  it("keeps facts while the sink is down and records each once, in order, when it is back", async () => {
    const s = sink();
    const a = new TaskAuditor(s);
    s.up = false;
    expect(a.observe(task(started))).toBe(true);
    await expect(a.flush(KEY)).rejects.toThrow(/timeout/);
    expect(a.observe(task(waiting))).toBe(true); // the GPU wait, which the next status no longer shows
    expect(a.observe(task(succeeded))).toBe(true);
    await expect(a.reconcile(KEY)).rejects.toThrow(/timeout/);
    expect(a.pendingCount).toBe(4);
    s.up = true;
    await a.reconcile(KEY);
    expect(s.got.map((f) => f.kind)).toEqual(["StepStarted", "GPUWait", "StepFinished", "TaskSucceeded"]);
    expect(a.owes(KEY)).toBe(false);
    // seeing the same status again records nothing new
    expect(a.observe(task(succeeded))).toBe(false);
    await a.reconcile(KEY);
    expect(s.got).toHaveLength(4);
  });

  it("leaves a task whose results went out alone (a restart does not repeat its facts)", async () => {
    const s = sink();
    const a = new TaskAuditor(s);
    expect(a.observe(task({ ...succeeded, resultsPublished: "2025-03-01T10:00:10Z" }))).toBe(false);
    await a.reconcile(KEY);
    expect(s.got).toEqual([]);
    expect(a.pendingCount).toBe(0);
  });

  it("owes a deleted task's TaskCanceled until it is recorded", async () => {
    const s = sink();
    const a = new TaskAuditor(s);
    s.up = false;
    a.observe(task(started, { deletionTimestamp: "2025-03-01T10:00:05Z" }));
    expect(a.owes(KEY)).toBe(true);
    await expect(a.flush(KEY)).rejects.toThrow();
    s.up = true;
    await a.flush(KEY);
    expect(s.got.map((f) => [f.kind, f.reason])).toEqual([
      ["StepStarted", undefined],
      ["TaskCanceled", "Deleted"],
    ]);
    expect(a.owes(KEY)).toBe(false);
    a.forget(task(started));
    expect(a.pendingCount).toBe(0);
  });

  it("records the facts a plan noted under the same ids as those derived from status", async () => {
    const s = sink();
    const a = new TaskAuditor(s);
    a.planned(task(started), [{ kind: "StepStarted", outcome: "success", step: "detect" }], "2025-03-01T10:00:00Z");
    a.observe(task(started));
    await a.flush(KEY);
    expect(s.got.map((f) => f.id)).toEqual([`${UID}:StepStarted:detect:`]);
  });
});

describe("TaskAuditor and the trimmed cache", () => {
  it("drops a stamped task's ledger without reading its study (the cache keeps settled tasks without it)", async () => {
    const s = sink();
    const a = new TaskAuditor(s);
    a.observe(task(succeeded));
    await a.flush(KEY);
    const trimmed = task({ ...succeeded, resultsPublished: "2025-03-01T10:00:10Z" });
    (trimmed.spec as { study?: unknown }).study = undefined;
    expect(() => a.observe(trimmed)).not.toThrow();
    expect(a.pendingCount).toBe(0);
    expect(a.owes(KEY)).toBe(false);
  });
});
