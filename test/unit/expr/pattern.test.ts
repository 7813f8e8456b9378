// seriesDescriptionPattern runs on RE2 (issue 12, item 7): linear time, case-insensitive search as
// before, and syntax RE2 does not have is refused when the workflow is validated.
import { describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/aiworkflow.ts";
import type { StudyEvent } from "../../../src/api/v1alpha1/events.ts";
import { validateWorkflow } from "../../../src/controllers/aiworkflow.ts";
import { checkPattern, compilePattern, type Pattern } from "../../../src/expr/pattern.ts";
import { matchWorkflow } from "../../../src/ingest/route.ts";

const REDOS = "^(\\w+\\s?)+$";
// 39 word characters and a final character that makes the match fail: JavaScript's RegExp
// backtracks through 2^39 ways to split the word (26 characters took 19 s here)
const DESCRIPTION = `${"a".repeat(39)}!`;

function workflow(pattern: string): AIWorkflow {
  return AIWorkflow.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name: "p", namespace: "radiology", uid: "uid-p", generation: 1 },
    spec: {
      trigger: { match: { seriesDescriptionPattern: pattern } },
      steps: [{ name: "infer", image: "registry.example.org/model:1" }],
    },
    status: {
      conditions: [{ type: "Ready", status: "True", reason: "Valid", lastTransitionTime: "2025-01-01T00:00:00Z" }],
    },
  });
}

const event = (description: string) =>
  ({
    specversion: "1.0",
    id: "e1",
    source: "test",
    type: "radflow.study.received",
    study: {
      studyInstanceUID: "1.2.3",
      series: [{ seriesInstanceUID: "1.2.3.1", modality: "CT", seriesDescription: description, numberOfInstances: 1 }],
    },
  }) as unknown as StudyEvent;

describe("seriesDescriptionPattern", () => {
  it("answers the catastrophic-backtracking pattern on a 40-character description in milliseconds", () => {
    const p = compilePattern(REDOS) as Pattern;
    p.test("warm up");
    const t0 = performance.now();
    expect(p.test(DESCRIPTION)).toBe(false);
    expect(p.test("Head w o contrast")).toBe(true);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it("routes a study against it without stalling", () => {
    const t0 = performance.now();
    expect(matchWorkflow(event(DESCRIPTION), workflow(REDOS))).toEqual({
      match: false,
      why: "no series meets trigger.match",
    });
    expect(matchWorkflow(event("axial head"), workflow(REDOS))).toEqual({ match: true });
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("searches anywhere in the description, case-insensitively, as before", () => {
    const p = compilePattern("head|brain") as Pattern;
    expect(p.test("CT HEAD w/o")).toBe(true);
    expect(p.test("Brain MRI")).toBe(true);
    expect(p.test("chest")).toBe(false);
    expect((compilePattern("^t1") as Pattern).test("T1 post")).toBe(true);
    expect((compilePattern("^t1") as Pattern).test("post T1")).toBe(false);
  });

  it.each([
    ["(?=x)head", /invalid or unsupported Perl syntax/],
    ["(a)\\1", /invalid escape sequence/],
    ["[head", /missing closing \]/],
    ["a{2000}", /invalid repeat count/],
  ])("refuses %s, which RE2 does not accept", (pattern, why) => {
    expect(checkPattern(pattern)).toMatch(/^not a valid RE2 regular expression: /);
    expect(checkPattern(pattern)).toMatch(why);
  });

  it("makes a workflow with such a pattern not Ready, naming the field", () => {
    const v = validateWorkflow(workflow("(?<!contrast)head"));
    expect(v).toMatchObject({ ok: false, reason: "InvalidPattern" });
    expect(v.message).toMatch(/trigger\.match\.seriesDescriptionPattern is not a valid RE2 regular expression/);
    expect(validateWorkflow(workflow(REDOS)).ok).toBe(true);
  });
});
