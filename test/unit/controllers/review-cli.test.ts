// `radflow review`'s pure parts: arguments, which step a verdict is for, and the patch it writes.
import { describe, expect, it } from "vitest";
import { InferenceTask } from "../../../src/api/v1alpha1/index.ts";
import { chooseStep, parseArgs, verdictPatch } from "../../../src/cmd/review.ts";

function task(status: unknown, reviews?: unknown[], extraReview = false): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "fx-1", namespace: "rad", resourceVersion: "42" },
    spec: {
      workflowRef: { name: "fx", uid: "u", generation: 1 },
      priority: "routine",
      steps: [
        { name: "detect", image: "m:1" },
        { name: "review", dependsOn: ["detect"], review: {} },
        ...(extraReview ? [{ name: "second", dependsOn: ["detect"], review: {} }] : []),
      ],
      study: { studyInstanceUID: "1.2.3", series: [] },
      eventId: "e",
      ...(reviews ? { reviews } : {}),
    },
    status,
  });
}
const awaitingStep = (name: string) => ({ name, phase: "Running", reason: "AwaitingReview" });
const V = { step: "review", verdict: "Accepted" as const, reviewer: "alice", time: "2026-01-01T00:00:00Z" };

describe("radflow review", () => {
  it("parses accept/reject, the task, namespace, step and reason", () => {
    expect(parseArgs(["reject", "fx-1", "-n", "rad", "--step", "review", "--reason", "artefact"])).toEqual({
      verdict: "Rejected",
      task: "fx-1",
      namespace: "rad",
      step: "review",
      reason: "artefact",
    });
    expect(() => parseArgs(["approve", "fx-1"])).toThrow(/accept or reject/);
    expect(() => parseArgs(["accept"])).toThrow(/which task/);
    expect(parseArgs(["--help"])).toBe("help");
  });

  it("picks the one review awaiting a verdict", () => {
    expect(chooseStep(task({ phase: "Running", steps: [awaitingStep("review")] }))).toEqual({ step: "review" });
  });

  it("says why not: nothing awaiting, several awaiting, a step that is no review, one decided already", () => {
    expect(chooseStep(task({ phase: "Running", steps: [] }))).toMatchObject({
      error: expect.stringMatching(/no review awaiting/),
    });
    expect(
      chooseStep(task({ phase: "Running", steps: [awaitingStep("review"), awaitingStep("second")] }, undefined, true)),
    ).toMatchObject({ error: expect.stringMatching(/several reviews .*--step/) });
    expect(chooseStep(task({}), "detect")).toMatchObject({ error: expect.stringMatching(/no review step detect/) });
    expect(chooseStep(task({}, [V]), "review")).toMatchObject({ error: expect.stringMatching(/verdict already/) });
    expect(
      chooseStep(task({ steps: [{ name: "review", phase: "Failed", reason: "ReviewTimeout" }] }), "review"),
    ).toMatchObject({
      error: expect.stringMatching(/is over \(Failed: ReviewTimeout\)/),
    });
  });

  it("--step gives a verdict before the step is reached", () => {
    expect(chooseStep(task({ phase: "Running", steps: [] }), "review")).toEqual({ step: "review" });
  });

  it("the patch appends to spec.reviews and carries the resourceVersion it read (compare-and-swap)", () => {
    const second = { ...V, step: "second" };
    expect(verdictPatch(task({}, [V], true), second)).toEqual({
      metadata: { resourceVersion: "42" },
      spec: { reviews: [V, second] },
    });
  });
});
