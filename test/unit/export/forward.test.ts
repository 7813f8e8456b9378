// Forward-only workflows (issue 13): a step with no image whose every export is `content: study`
// runs no Job and succeeds at once, and its export sends the received study's own files, as
// stored, from the gateway's volume. A step export with `content: study` after a model sends the
// study too (MONAI's "export the input").
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/aiworkflow.ts";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { planTask } from "../../../src/controllers/task-plan.ts";
import { instancesFor } from "../../../src/export/instances.ts";
import { planExports } from "../../../src/export/plan.ts";
import { makeInstance } from "../gateway/dicom-fixture.ts";

const root = mkdtempSync(path.join(tmpdir(), "rf-forward-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const T0 = Date.parse("2026-12-03T10:00:00Z");

function workflow(steps: Record<string, unknown>[], exp?: { name: string }[]) {
  return AIWorkflow.safeParse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name: "forward-ct", namespace: "radiology" },
    spec: { trigger: { sources: { calledAETitles: ["RADFLOW"] } }, steps, ...(exp ? { export: exp } : {}) },
  });
}

function task(steps: Record<string, unknown>[], status?: Record<string, unknown>, exp?: { name: string }[]) {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "forward-ct-1", namespace: "radiology", uid: "uid-f", finalizers: ["radflow.io/cleanup-jobs"] },
    spec: {
      workflowRef: { name: "forward-ct", uid: "w", generation: 1 },
      priority: "routine",
      steps,
      study: {
        studyInstanceUID: "1.2.3",
        location: "studies/fw1",
        series: [{ seriesInstanceUID: "1.2.3.1", modality: "CT", numberOfInstances: 2 }],
      },
      eventId: "e",
      ...(exp ? { export: exp } : {}),
    },
    ...(status ? { status } : {}),
  });
}

const FORWARD = { name: "forward", export: [{ destination: "pacs", content: "study" }] };

describe("forwarding steps", () => {
  it("the API takes a step without image or review only when every export sends the study", () => {
    expect(workflow([FORWARD]).success).toBe(true);
    const auto = workflow([{ name: "forward", export: [{ destination: "pacs" }] }]);
    expect(auto.success).toBe(false);
    expect(auto.error?.issues[0]?.message).toMatch(/forwarding step/);
    expect(workflow([{ name: "nothing" }]).success).toBe(false);
  });

  it("runs no Job: the step succeeds at once, so does the task, and no GPU slot is taken", () => {
    const t = task([FORWARD]);
    const first = planTask({ task: t, jobs: [], pods: [], now: T0, capacity: 0 });
    expect(first.create).toEqual([]);
    expect(first.status.steps).toMatchObject([{ name: "forward", phase: "Succeeded", reason: "Forwarding" }]);
    expect(first.status.phase).toBe("Succeeded");
  });

  it("a forwarding step after a model waits for it, then succeeds without a Job of its own", () => {
    const steps = [
      { name: "detect", image: "m/ich:1" },
      { ...FORWARD, dependsOn: ["detect"] },
    ];
    const p = planTask({ task: task(steps), jobs: [], pods: [], now: T0, capacity: 1 });
    expect(p.create.map((c) => c.step.name)).toEqual(["detect"]);
    expect(p.status.steps?.find((s) => s.name === "forward")?.phase).toBe("Pending");
  });

  it("the export sends the study's own files, byte for byte, from the gateway's volume", async () => {
    const dir = path.join(root, "studies/fw1/1.2.3.1");
    mkdirSync(dir, { recursive: true });
    const files = [1, 2].map((i) => {
      const p = path.join(dir, `${i}.dcm`);
      writeFileSync(p, makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: `1.2.3.1.${i}` }));
      return p;
    });
    writeFileSync(path.join(dir, "journal.json"), "{}"); // not DICOM: not sent
    const done = task([FORWARD], {
      phase: "Succeeded",
      completionTime: "2026-12-03T10:00:01Z",
      steps: [{ name: "forward", phase: "Succeeded", reason: "Forwarding" }],
    });
    const [m] = planExports(done);
    expect(m?.event.data).toMatchObject({ step: "forward", destination: "pacs", content: "study", decision: "send" });
    const sent = await instancesFor(root, m!.event.data);
    expect(sent).toEqual(files.map((p) => ({ kind: "file", path: p })));
    expect(readFileSync(files[0]!).subarray(128, 132).toString()).toBe("DICM");
  });

  it("the workflow-level export names a forwarding step's study, not an SR", () => {
    const fwd = { name: "forward", export: [{ destination: "archive", content: "study" }] };
    const done = task(
      [fwd],
      { phase: "Succeeded", steps: [{ name: "forward", phase: "Succeeded", reason: "Forwarding" }] },
      [{ name: "pacs" }],
    );
    expect(planExports(done).map((m) => [m.event.data.destination, m.event.data.content])).toEqual([
      ["archive", "study"],
      ["pacs", "study"],
    ]);
  });

  it("a study that is not on the volume is a clear Failed export", async () => {
    const t = task([FORWARD], { phase: "Succeeded", steps: [{ name: "forward", phase: "Succeeded" }] });
    const data = { ...planExports(t)[0]!.event.data, study: { studyInstanceUID: "9.9", location: "studies/none" } };
    await expect(instancesFor(root, data)).rejects.toMatchObject({ reason: "StudyNotFound" });
  });
});
