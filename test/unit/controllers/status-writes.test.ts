// What counts as a change worth a status write (src/controllers/status-writes.ts): what people
// and other controllers act on — phase, a condition's status or reason, a step's phase, outputs or
// end reason — and not a transient reason, a message or an attempt count.
import { describe, expect, it } from "vitest";
import type { Condition, InferenceTaskStatus, StepStatus } from "../../../src/api/v1alpha1/index.ts";
import {
  COMPLETING_SETTLE_MS,
  RUNNING_SETTLE_MS,
  significant,
  worthWriting,
  writeDecision,
} from "../../../src/controllers/status-writes.ts";

const JOB = "head-ct-0123456789abcdef-detect";
const cond = (status: Condition["status"], reason: string, message = ""): Condition => ({
  type: "Succeeded",
  status,
  reason,
  message,
  lastTransitionTime: "2025-03-01T10:00:00Z",
});
const step = (o: Partial<StepStatus> = {}): StepStatus => ({
  name: "detect",
  phase: "Pending",
  reason: "JobCreated",
  jobName: JOB,
  startTime: "2025-03-01T10:00:00Z",
  ...o,
});
const status = (o: Partial<InferenceTaskStatus> = {}, s: Partial<StepStatus> = {}): InferenceTaskStatus => ({
  phase: "Running",
  conditions: [cond("Unknown", "Running")],
  steps: [step({ phase: "Running", reason: "Running", ...s })],
  startTime: "2025-03-01T10:00:00Z",
  ...o,
});

describe("worthWriting: a task already written", () => {
  const stored = status();

  it("the same status, or one that differs only in undefined members, is not written", () => {
    expect(worthWriting(status(), stored)).toBe(false);
    expect(worthWriting({ ...status(), completionTime: undefined }, stored)).toBe(false);
  });

  it("a transient reason, a message or an attempt count of a step on its way is not written", () => {
    expect(worthWriting(status({}, { reason: "Completing", message: "reading the model's outputs" }), stored)).toBe(
      false,
    );
    expect(worthWriting(status({}, { reason: "Retrying", attempts: 2 }), stored)).toBe(false);
    expect(worthWriting(status({ currentStep: "detect" }), stored)).toBe(false);
  });

  it("a condition's message alone is not written; its status or reason is", () => {
    expect(worthWriting(status({ conditions: [cond("Unknown", "Running", "new words")] }), stored)).toBe(false);
    expect(worthWriting(status({ conditions: [cond("Unknown", "WaitingForGPU")] }), stored)).toBe(true);
    expect(worthWriting(status({ conditions: [cond("True", "Running")] }), stored)).toBe(true);
    const added: Condition = { ...cond("True", "ImagePullBackOff"), type: "StartBlocked" };
    expect(worthWriting(status({ conditions: [cond("Unknown", "Running"), added] }), stored)).toBe(true);
  });

  it("a new task or step phase is written", () => {
    expect(worthWriting(status({ phase: "Succeeded" }), stored)).toBe(true);
    expect(worthWriting(status({}, { phase: "WaitingForGPU", reason: "Unschedulable" }), stored)).toBe(true);
  });

  it("a step's outputs are written", () => {
    expect(worthWriting(status({}, { outputs: { fracture: true } }), stored)).toBe(true);
  });

  it("why a step ended is written; why it is on its way is not, except a refused Job create", () => {
    const failed = status({}, { phase: "Failed", reason: "OOMKilled" });
    expect(worthWriting(status({}, { phase: "Failed", reason: "DeadlineExceeded" }), failed)).toBe(true);
    const refused = status({ phase: "Pending" }, { phase: "Pending", reason: "JobCreateFailed" });
    expect(worthWriting(refused, status({ phase: "Pending" }, { phase: "Pending", reason: "Queued" }))).toBe(true);
  });

  it("the completion time is written", () => {
    const done = status({ phase: "Succeeded", completionTime: "2025-03-01T10:01:00Z" });
    expect(worthWriting({ ...done, completionTime: "2025-03-01T10:02:00Z" }, done)).toBe(true);
  });
});

describe("worthWriting: the first write of a task", () => {
  const pending = (steps: StepStatus[], conditions = [cond("Unknown", "Queued")]): InferenceTaskStatus => ({
    phase: "Pending",
    conditions,
    steps,
  });

  it("is put off while all it would say is that the step Jobs were created", () => {
    expect(worthWriting(pending([step()]), undefined)).toBe(false);
    expect(worthWriting(pending([step({ reason: "Starting" })]), {})).toBe(false);
    const waiting = step({ name: "report", reason: "WaitingForDependencies", jobName: undefined });
    expect(worthWriting(pending([step(), waiting]), undefined)).toBe(false);
  });

  it("is made at once for a step without a Job (Queued behind the limit) or whose create was refused", () => {
    expect(worthWriting(pending([step({ reason: "Queued", jobName: undefined })]), undefined)).toBe(true);
    expect(worthWriting(pending([step({ reason: "JobCreateFailed", jobName: undefined })]), undefined)).toBe(true);
  });

  it("is made at once when a condition other than Succeeded has something to say", () => {
    const blocked: Condition = { ...cond("True", "ImagePullBackOff"), type: "StartBlocked" };
    expect(
      worthWriting(pending([step({ reason: "ImagePullBackOff" })], [cond("Unknown", "Queued"), blocked]), undefined),
    ).toBe(true);
  });

  it("is made at once for any other phase", () => {
    expect(worthWriting(status(), undefined)).toBe(true);
    expect(worthWriting(pending([step({ phase: "WaitingForGPU", reason: "Unschedulable" })]), undefined)).toBe(true);
  });

  it("a Pending task that was written before is compared as usual", () => {
    const stored = pending([step({ reason: "Queued", jobName: undefined })]);
    expect(worthWriting(pending([step()]), stored)).toBe(false); // Queued → JobCreated: a reason on its way
    expect(worthWriting(pending([step()]), { ...stored, phase: "Running" })).toBe(true);
  });
});

describe("significant", () => {
  it("keeps phase, condition type/status/reason, step phase/outputs/end reason and the completion time", () => {
    const s = status(
      { phase: "Failed", completionTime: "2025-03-01T10:01:00Z" },
      { phase: "Failed", reason: "OOMKilled", message: "exit 137", attempts: 3 },
    );
    expect(significant(s)).toEqual({
      phase: "Failed",
      conditions: [["Succeeded", "Unknown", "Running"]],
      steps: [["detect", "Failed", undefined, "OOMKilled"]],
      completionTime: "2025-03-01T10:01:00Z",
    });
    expect(significant(undefined)).toEqual({ phase: undefined, conditions: [], steps: [], completionTime: undefined });
  });
});

describe("writeDecision: news that settles first", () => {
  const created: InferenceTaskStatus = { phase: "Pending", conditions: [cond("Unknown", "Queued")], steps: [step()] };
  const running = { settleMs: RUNNING_SETTLE_MS };

  it("steps that only started running settle, on a first write and after one", () => {
    expect(writeDecision(status(), undefined)).toEqual(running);
    const queued = { ...created, steps: [step({ reason: "Queued" })] };
    expect(writeDecision(status(), queued)).toEqual(running);
    const first = status({}, { name: "detect", phase: "Succeeded", reason: "Completed", outputs: { ok: true } });
    const two = (s: Partial<StepStatus>) => ({
      ...first,
      steps: [...(first.steps ?? []), step({ name: "report", ...s })],
    });
    expect(writeDecision(two({ phase: "Running", reason: "Running" }), two({}))).toEqual(running);
  });

  it("a model that has exited 0 waits longer for its Job's verdict, unless another step still runs", () => {
    expect(writeDecision(status({}, { reason: "Completing" }), undefined)).toEqual({ settleMs: COMPLETING_SETTLE_MS });
    const both = status();
    both.steps = [
      step({ phase: "Running", reason: "Completing" }),
      step({ name: "b", phase: "Running", reason: "Running" }),
    ];
    expect(writeDecision(both, undefined)).toEqual(running);
    expect(COMPLETING_SETTLE_MS).toBeGreaterThan(RUNNING_SETTLE_MS);
  });

  it("an end, outputs, a failure, a GPU wait or its end, and an awaited review are written at once", () => {
    expect(writeDecision(status({ phase: "Succeeded" }, { phase: "Succeeded", reason: "Completed" }), undefined)).toBe(
      "write",
    );
    expect(writeDecision(status({}, { outputs: { ok: true } }), status())).toBe("write");
    expect(writeDecision(status({ phase: "Failed" }, { phase: "Failed", reason: "OOMKilled" }), status())).toBe(
      "write",
    );
    const gpu = { ...created, steps: [step({ phase: "WaitingForGPU", reason: "Unschedulable" })] };
    expect(writeDecision(gpu, created)).toBe("write");
    expect(writeDecision(status(), gpu)).toBe("write");
    const review = status({}, { reason: "AwaitingReview", jobName: undefined });
    expect(writeDecision(review, undefined)).toBe("write");
  });

  it("what is not worth a write is skipped, as before", () => {
    expect(writeDecision(created, undefined)).toBe("skip");
    expect(writeDecision(status({}, { reason: "Completing" }), status())).toBe("skip");
  });
});
