// The clinical review gate and mandatory outputs, through the pure planner: a review step waits
// (AwaitingReview) for spec.reviews or its timeout, its verdict becomes outputs later steps'
// `when` reads; a model run without a required output fails with MissingOutput.
import { describe, expect, it } from "vitest";
import { AIWorkflow, type Condition, InferenceTask } from "../../../src/api/v1alpha1/index.ts";
import { missingOutputs } from "../../../src/controllers/required-outputs.ts";
import { awaitingReviews, reviewWaits } from "../../../src/controllers/review.ts";
import { FINALIZER, type Plan, planTask } from "../../../src/controllers/task-plan.ts";
import { stepViews } from "./views.ts";

const TASK = "fracture-0123456789abcdef";
const T0 = Date.parse("2026-03-01T10:00:00Z");
const at = (seconds: number) => T0 + seconds * 1000;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const PATIENT = "PAT-4471-ZX";
const ACCESSION = "ACC-99812";

type Obj = Record<string, unknown>;

/** detect (model) → review → export (model, runs only when accepted) */
function steps(review: Obj = {}): Obj[] {
  return [
    { name: "detect", image: "registry.example.org/fracture:2" },
    { name: "review", dependsOn: ["detect"], review },
    {
      name: "send",
      image: "registry.example.org/send:1",
      dependsOn: ["review"],
      when: "steps.review.outputs.accepted == true",
    },
  ];
}

function makeTask(o: { steps?: Obj[]; reviews?: Obj[]; status?: unknown } = {}): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: {
      name: TASK,
      namespace: "radiology",
      uid: "6f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11",
      generation: 1,
      creationTimestamp: iso(T0),
      finalizers: [FINALIZER],
    },
    spec: {
      workflowRef: { name: "fracture", uid: "1a7e2d41-3b7e-4f7e-8d0e-5a4c2b1d9e00", generation: 1 },
      priority: "urgent",
      steps: o.steps ?? steps(),
      study: {
        studyInstanceUID: "1.2.840.113619.2.55.3.1",
        accessionNumber: ACCESSION,
        series: [
          {
            seriesInstanceUID: "1.2.840.113619.2.55.3.1.1",
            modality: "DX",
            numberOfInstances: 2,
            attributes: { "00100020": { vr: "LO", Value: [PATIENT] } },
          },
        ],
      },
      eventId: "evt-1",
      ...(o.reviews ? { reviews: o.reviews } : {}),
    },
    status: o.status,
  });
}

const views = stepViews(TASK, iso(T0));
const { job, succeededPod } = views;
/** Complete at 10 s: a Job whose pod is missing waits from there for it (the pod-visibility grace). */
const completeJob = (step: string) => views.completeJob(step, { at: iso(at(10)) });
const detectDone = { jobs: [completeJob("detect")], pods: [succeededPod("detect", '{"fracture":true}')] };

function plan(task: InferenceTask, o: Partial<Parameters<typeof planTask>[0]> = {}): Plan {
  return planTask({ task, jobs: [], pods: [], now: T0, capacity: 4, ...o });
}
/** The task as the next reconcile sees it after this plan's status write (spec edits applied). */
function next(task: InferenceTask, p: Plan, spec: Obj = {}): InferenceTask {
  return InferenceTask.parse({
    ...task,
    spec: { ...task.spec, ...spec },
    status: JSON.parse(JSON.stringify(p.status)),
  });
}
const stepOf = (p: Plan, name: string) => p.status.steps?.find((s) => s.name === name);
const cond = (p: Plan, type: string): Condition | undefined => p.status.conditions?.find((c) => c.type === type);
const verdict = (v: "Accepted" | "Rejected", time = iso(at(600))) => ({
  step: "review",
  verdict: v,
  reviewer: "dr.house@radiology",
  time,
  reason: `checked for ${PATIENT}`,
});

/** The task waiting for its review: detect succeeded at 30 s. */
function awaiting(review: Obj = {}) {
  const t = makeTask({ steps: steps(review) });
  const p = plan(t, { ...detectDone, now: at(30) });
  return { t, p };
}

describe("review gate: waiting", () => {
  it("a review step whose dependencies are done waits visibly: Running/AwaitingReview, no Job, no GPU slot", () => {
    const { p } = awaiting();
    expect(p.create).toEqual([]);
    expect(p.waitingForCapacity).toBe(false);
    expect(stepOf(p, "review")).toMatchObject({
      phase: "Running",
      reason: "AwaitingReview",
      startTime: iso(at(30)),
      review: { requestedAt: iso(at(30)), deadline: iso(at(30 + 86400)) },
    });
    expect(stepOf(p, "send")).toMatchObject({ phase: "Pending", reason: "WaitingForDependencies" });
    expect(p.status.phase).toBe("Running");
    expect(cond(p, "AwaitingReview")).toMatchObject({ status: "True", reason: "AwaitingReview" });
    expect(p.events).toContainEqual(expect.objectContaining({ type: "Normal", reason: "AwaitingReview" }));
    // looked at again when the review times out
    expect(p.requeueAfterMs).toBe(86400 * 1000 + 50);
  });

  it("keeps waiting across reconciles with the same deadline and no repeated Event", () => {
    const { t, p } = awaiting({ timeoutSeconds: 3600 });
    const p2 = plan(next(t, p), { ...detectDone, now: at(1800) });
    expect(stepOf(p2, "review")).toMatchObject({ phase: "Running", review: { deadline: iso(at(30 + 3600)) } });
    expect(p2.events.filter((e) => e.reason === "AwaitingReview")).toEqual([]);
    expect(cond(p2, "AwaitingReview")?.lastTransitionTime).toBe(cond(p, "AwaitingReview")?.lastTransitionTime);
  });

  it("the queue timeout does not apply to a review (it is no wait for a GPU)", () => {
    const t = makeTask({ steps: steps() });
    const t2 = InferenceTask.parse({ ...t, spec: { ...t.spec, queueTimeoutSeconds: 60 } });
    const p = plan(t2, { ...detectDone, now: at(30) });
    const p2 = plan(next(t2, p), { ...detectDone, now: at(3600) });
    expect(p2.status.phase).toBe("Running");
  });
});

describe("review gate: verdicts", () => {
  it("accepted: outputs.accepted true, who and when in status, the dependent step starts", () => {
    const { t, p } = awaiting();
    const p2 = plan(next(t, p, { reviews: [verdict("Accepted")] }), { ...detectDone, now: at(700) });
    expect(stepOf(p2, "review")).toMatchObject({
      phase: "Succeeded",
      reason: "Accepted",
      outputs: { accepted: true, verdict: "Accepted" },
      completionTime: iso(at(700)),
      review: {
        requestedAt: iso(at(30)),
        verdict: "Accepted",
        reviewer: "dr.house@radiology",
        reviewedAt: iso(at(600)),
      },
    });
    expect(p2.create.map((c) => c.step.name)).toEqual(["send"]);
    expect(p2.create[0]?.inputs).toEqual({ review: { accepted: true, verdict: "Accepted" } });
    expect(cond(p2, "AwaitingReview")).toMatchObject({ status: "False", reason: "Accepted" });
    expect(p2.events).toContainEqual({
      type: "Normal",
      reason: "ReviewAccepted",
      note: "step review accepted by dr.house@radiology",
    });
  });

  it("rejected: outputs.accepted false, the gated step is Skipped, the task Succeeds (the review was done)", () => {
    const { t, p } = awaiting();
    const p2 = plan(next(t, p, { reviews: [verdict("Rejected")] }), { ...detectDone, now: at(700) });
    expect(stepOf(p2, "review")).toMatchObject({
      phase: "Succeeded",
      reason: "Rejected",
      outputs: { accepted: false, verdict: "Rejected" },
    });
    expect(stepOf(p2, "send")).toMatchObject({ phase: "Skipped" });
    expect(p2.create).toEqual([]);
    expect(p2.status.phase).toBe("Succeeded");
    expect(cond(p2, "AwaitingReview")).toMatchObject({ status: "False", reason: "Rejected" });
  });

  it("a verdict given before the step was reached is applied as soon as it is", () => {
    const t = makeTask({ reviews: [verdict("Accepted", iso(at(5)))] });
    const p = plan(t, { ...detectDone, now: at(30) });
    expect(stepOf(p, "review")).toMatchObject({ phase: "Succeeded", reason: "Accepted" });
  });

  it("once decided, the step keeps its verdict", () => {
    const { t, p } = awaiting();
    const t2 = next(t, p, { reviews: [verdict("Accepted")] });
    const p2 = plan(t2, { ...detectDone, now: at(700) });
    const p3 = plan(next(t2, p2), { ...detectDone, jobs: [...detectDone.jobs, job("send")], now: at(800) });
    expect(stepOf(p3, "review")).toEqual(stepOf(p2, "review"));
    expect(p3.events.filter((e) => e.reason.startsWith("Review"))).toEqual([]);
  });

  it("no PHI and no reviewer's note in conditions, step messages or Events", () => {
    const { t, p } = awaiting();
    const p2 = plan(next(t, p, { reviews: [verdict("Rejected")] }), { ...detectDone, now: at(700) });
    const text = JSON.stringify([p.status.conditions, p2.status.conditions, p.events, p2.events, p2.status.steps]);
    for (const s of [PATIENT, ACCESSION, "1.2.840.113619", "checked for"]) expect(text).not.toContain(s);
  });
});

describe("review gate: timeout", () => {
  it("onTimeout Fail (the default): the step fails with ReviewTimeout, and so does the task", () => {
    const { t, p } = awaiting({ timeoutSeconds: 600 });
    const p2 = plan(next(t, p), { ...detectDone, now: at(630) });
    expect(stepOf(p2, "review")).toMatchObject({
      phase: "Failed",
      reason: "ReviewTimeout",
      review: { verdict: "TimedOut" },
    });
    expect(p2.status.phase).toBe("Failed");
    expect(cond(p2, "Succeeded")).toMatchObject({ status: "False", reason: "ReviewTimeout" });
    expect(cond(p2, "AwaitingReview")).toMatchObject({ status: "False", reason: "ReviewTimeout" });
    expect(p2.events).toContainEqual(expect.objectContaining({ type: "Warning", reason: "ReviewTimeout" }));
  });

  it("onTimeout Skip: the step is Skipped with accepted false; the gated step is Skipped, the task Succeeds", () => {
    const { t, p } = awaiting({ timeoutSeconds: 600, onTimeout: "Skip" });
    const p2 = plan(next(t, p), { ...detectDone, now: at(630) });
    expect(stepOf(p2, "review")).toMatchObject({
      phase: "Skipped",
      reason: "ReviewTimeout",
      outputs: { accepted: false, verdict: "TimedOut" },
    });
    expect(stepOf(p2, "send")).toMatchObject({ phase: "Skipped", reason: "ConditionFalse" });
    expect(p2.status.phase).toBe("Succeeded");
  });

  it("a cancel while waiting ends the review as Canceled", () => {
    const { t, p } = awaiting();
    const p2 = plan(next(t, p, { cancel: true }), { ...detectDone, now: at(60) });
    expect(stepOf(p2, "review")).toMatchObject({ phase: "Canceled" });
    expect(p2.status.phase).toBe("Canceled");
  });
});

describe("review gate: metrics helpers", () => {
  it("reviewWaits: seconds from request to verdict, once", () => {
    const { t, p } = awaiting();
    const p2 = plan(next(t, p, { reviews: [verdict("Accepted")] }), { ...detectDone, now: at(700) });
    expect(reviewWaits(p.status.steps, p2.status.steps)).toEqual([
      { step: "review", verdict: "Accepted", seconds: 570 },
    ]);
    expect(reviewWaits(p2.status.steps, p2.status.steps)).toEqual([]);
  });

  it("awaitingReviews: count and oldest wait by priority", () => {
    const { t, p } = awaiting();
    expect(awaitingReviews([next(t, p)], at(330))).toEqual(new Map([["urgent", { count: 1, oldestSeconds: 300 }]]));
  });
});

describe("mandatory outputs (outputs.required)", () => {
  const model = (required: string[]) => [{ name: "seg", image: "registry.example.org/seg:1", outputs: { required } }];

  it("a success that reports every required output passes", () => {
    const t = makeTask({ steps: model(["report", "mask"]) });
    const p = plan(t, {
      jobs: [completeJob("seg")],
      pods: [succeededPod("seg", '{"report":"r.pdf","mask":"m.nii"}')],
      now: at(30),
    });
    expect(stepOf(p, "seg")).toMatchObject({ phase: "Succeeded" });
  });

  it("a success without one fails the step with MissingOutput naming it, and the task with MissingOutput", () => {
    const t = makeTask({ steps: model(["report", "mask"]) });
    const p = plan(t, { jobs: [completeJob("seg")], pods: [succeededPod("seg", '{"mask":"m.nii"}')], now: at(30) });
    expect(stepOf(p, "seg")).toMatchObject({ phase: "Failed", reason: "MissingOutput" });
    expect(stepOf(p, "seg")?.message).toContain('"report"');
    expect(stepOf(p, "seg")?.message).not.toContain('"mask"');
    expect(p.status.phase).toBe("Failed");
    expect(cond(p, "Succeeded")).toMatchObject({ status: "False", reason: "MissingOutput" });
    expect(p.audits).toContainEqual(expect.objectContaining({ kind: "StepFinished", reason: "MissingOutput" }));
  });

  it("an empty termination message lacks every required output", () => {
    const t = makeTask({ steps: model(["report"]) });
    const p = plan(t, { jobs: [completeJob("seg")], pods: [succeededPod("seg", undefined)], now: at(30) });
    expect(stepOf(p, "seg")).toMatchObject({ phase: "Failed", reason: "MissingOutput" });
  });

  it("null counts as missing; false and 0 do not", () => {
    expect(missingOutputs({ outputs: { required: ["a", "b", "c"] } }, { a: null, b: false, c: 0 })).toEqual(["a"]);
  });
});

describe("the schema", () => {
  const wf = (stepsList: Obj[]) =>
    AIWorkflow.safeParse({
      apiVersion: "radflow.io/v1alpha1",
      kind: "AIWorkflow",
      metadata: { name: "wf" },
      spec: { trigger: {}, steps: stepsList },
    });

  it("a review step needs no image and defaults to 24 h, Fail", () => {
    const r = wf(steps());
    expect(r.error?.issues).toBeUndefined();
    expect(r.data?.spec.steps[1]?.review).toEqual({ timeoutSeconds: 86400, onTimeout: "Fail", onReject: "Continue" });
  });

  it("a step with neither image nor review, or with both, is refused at the field", () => {
    const none = wf([{ name: "x" }]);
    expect(none.error?.issues.map((i) => i.path.join("."))).toContain("spec.steps.0.image");
    const both = wf([{ name: "x", image: "a:1", review: {} }]);
    expect(both.error?.issues.map((i) => i.path.join("."))).toContain("spec.steps.0.review");
  });

  it("a task's review must name one of its review steps", () => {
    expect(() => makeTask({ reviews: [{ ...verdict("Accepted"), step: "detect" }] })).toThrow(/review step/);
  });
});

describe("review gate: onReject", () => {
  it("Fail: a rejection fails the step and the task; nothing after it runs", () => {
    const { t, p } = awaiting({ onReject: "Fail" });
    const p2 = plan(next(t, p, { reviews: [verdict("Rejected")] }), { ...detectDone, now: at(700) });
    expect(stepOf(p2, "review")).toMatchObject({
      phase: "Failed",
      reason: "Rejected",
      outputs: { accepted: false, verdict: "Rejected" },
      review: { verdict: "Rejected", reviewer: "dr.house@radiology" },
    });
    expect(p2.create).toEqual([]);
    expect(p2.status.phase).toBe("Failed");
    expect(stepOf(p2, "send")).toMatchObject({ phase: "Canceled" });
    expect(cond(p2, "Succeeded")?.message).toContain("rejected by dr.house@radiology");
  });

  it("Fail: an acceptance continues as usual", () => {
    const { t, p } = awaiting({ onReject: "Fail" });
    const p2 = plan(next(t, p, { reviews: [verdict("Accepted")] }), { ...detectDone, now: at(700) });
    expect(p2.create.map((c) => c.step.name)).toEqual(["send"]);
  });
});

describe("review gate: the audit record names the reviewer as the requestor", () => {
  it("DICOM AuditMessage and FHIR AuditEvent: the reviewer requests, radflow and the AEs do not", async () => {
    const { defaultAuditCodes } = await import("../../../src/audit/codes.ts");
    const { renderAuditMessage } = await import("../../../src/audit/dicom-audit-message.ts");
    const { renderFhirAuditEvent } = await import("../../../src/audit/fhir-audit-event.ts");
    const fact = {
      id: "uid:ReviewVerdict:review:Accepted",
      kind: "ReviewVerdict" as const,
      time: "2026-03-01T10:10:00Z",
      outcome: "success" as const,
      namespace: "radiology",
      workflow: "fracture",
      task: TASK,
      step: "review",
      reason: "Accepted",
      user: "dr.house@radiology",
      study: { studyInstanceUID: "1.2.3", callingAETitle: "CR_1", calledAETitle: "RADFLOW" },
    };
    const src = { sourceId: "radflow@t", application: "radflow-operator", hostname: "h", processId: "1" };
    const xml = renderAuditMessage(fact, defaultAuditCodes(), src);
    const requestors = [...xml.matchAll(/<ActiveParticipant UserID="([^"]+)"[^>]*UserIsRequestor="true"/g)].map(
      (m) => m[1],
    );
    expect(requestors).toEqual(["dr.house@radiology"]);
    const fhir = renderFhirAuditEvent(fact, defaultAuditCodes(), src);
    expect(fhir.agent.filter((a) => a.requestor).map((a) => a.who.display)).toEqual(["dr.house@radiology"]);
    expect(fhir.type).toMatchObject({ code: "ReviewVerdict" });
  });
});

describe("review gate: audit facts from status", () => {
  it("one ReviewVerdict per decided review: the reviewer as user, the note as description, stable id", async () => {
    const { reviewFacts } = await import("../../../src/audit/review-facts.ts");
    const { t, p } = awaiting();
    expect(reviewFacts(next(t, p))).toEqual([]);
    const t2 = next(t, p, { reviews: [verdict("Rejected")] });
    const p2 = plan(t2, { ...detectDone, now: at(700) });
    const facts = reviewFacts(next(t2, p2));
    expect(facts).toEqual([
      expect.objectContaining({
        id: `${t.metadata.uid}:ReviewVerdict:review:Rejected`,
        kind: "ReviewVerdict",
        time: new Date(at(600)).toISOString(),
        outcome: "success",
        step: "review",
        reason: "Rejected",
        user: "dr.house@radiology",
        description: `checked for ${PATIENT}`,
        task: TASK,
      }),
    ]);
    expect(reviewFacts(next(t2, p2))).toEqual(facts);
  });

  it("a timeout that fails the task is a serious failure, without a user", async () => {
    const { reviewFacts } = await import("../../../src/audit/review-facts.ts");
    const { t, p } = awaiting({ timeoutSeconds: 60 });
    const p2 = plan(next(t, p), { ...detectDone, now: at(100) });
    expect(reviewFacts(next(t, p2))).toEqual([
      expect.objectContaining({ reason: "TimedOut", outcome: "seriousFailure", time: new Date(at(90)).toISOString() }),
    ]);
    expect(reviewFacts(next(t, p2))[0]?.user).toBeUndefined();
  });
});

describe("review gate: metrics", () => {
  it("radflow_review_wait_seconds observes the wait once; the gauges count waiting reviews by priority", async () => {
    const { registry } = await import("../../../src/metrics/metrics.ts");
    const { observeReviewWaits, updateReviewGauges } = await import("../../../src/controllers/review-metrics.ts");
    const { t, p } = awaiting();
    const waiting = next(t, p);
    updateReviewGauges([waiting], at(330));
    const value = async (name: string, labels: Record<string, string>) =>
      (await registry.getSingleMetric(name)?.get())?.values.find((v) =>
        Object.entries(labels).every(([k, x]) => v.labels[k] === x),
      )?.value;
    expect(await value("radflow_reviews_awaiting", { priority: "urgent" })).toBe(1);
    expect(await value("radflow_review_wait_oldest_seconds", { priority: "urgent" })).toBe(300);
    const t2 = next(t, p, { reviews: [verdict("Accepted")] });
    const p2 = plan(t2, { ...detectDone, now: at(700) });
    observeReviewWaits(t2, p2.status);
    observeReviewWaits(next(t2, p2), p2.status); // the same status again: no second observation
    const count = await value("radflow_review_wait_seconds", { verdict: "Accepted", le: "+Inf" });
    const sum = (await registry.getSingleMetric("radflow_review_wait_seconds")?.get())?.values.find(
      (v) =>
        (v as { metricName?: string }).metricName === "radflow_review_wait_seconds_sum" &&
        v.labels.verdict === "Accepted",
    )?.value;
    expect(count).toBe(1);
    expect(sum).toBe(570);
  });
});
