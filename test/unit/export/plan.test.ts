import { describe, expect, it } from "vitest";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { exportMsgId, planExports } from "../../../src/export/plan.ts";
import { ExportRequestEvent } from "../../../src/export/request.ts";
import { buildResultEvents } from "../../../src/ingest/results.ts";

function task(
  steps: Record<string, unknown>[],
  statusSteps: Record<string, unknown>[],
  over: Record<string, unknown> = {},
  phase = "Succeeded",
): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "head-ct-abc", namespace: "radiology", uid: "uid-1" },
    spec: {
      workflowRef: { name: "head-ct", uid: "wf", generation: 1 },
      priority: "stat",
      steps,
      storage: { pvc: { claimName: "studies" } },
      study: {
        studyInstanceUID: "1.2.3",
        location: "studies/abc",
        series: [{ seriesInstanceUID: "1.2.3.1", modality: "CT", numberOfInstances: 1 }],
      },
      eventId: "ev-1",
      ...over,
    },
    status: { phase, completionTime: "2025-03-01T09:00:40Z", steps: statusSteps },
  });
}

const decisions = (t: InferenceTask) =>
  planExports(t).map((m) => [m.event.data.step, m.event.data.destination, m.event.data.decision, m.event.data.reason]);

describe("planExports", () => {
  it("sends a step's results when its `when` over the step's outputs is true, and says Skipped when false", () => {
    const steps = [
      { name: "detect", image: "m/ich:1", export: [{ destination: "pacs", when: "outputs.bleed == true" }] },
    ];
    const yes = task(steps, [{ name: "detect", phase: "Succeeded", outputs: { bleed: true } }]);
    const no = task(steps, [{ name: "detect", phase: "Succeeded", outputs: { bleed: false } }]);
    expect(decisions(yes)).toEqual([["detect", "pacs", "send", undefined]]);
    expect(decisions(no)).toEqual([["detect", "pacs", "Skipped", "WhenFalse"]]);
    const [m] = planExports(yes);
    expect(ExportRequestEvent.parse(m?.event).data).toMatchObject({
      content: "auto",
      image: "m/ich:1",
      outputPath: "results/head-ct-abc/detect",
      outputs: { bleed: true },
      study: { studyInstanceUID: "1.2.3", location: "studies/abc" },
      storage: { pvc: { claimName: "studies" } },
    });
    expect(m?.msgId).toBe(exportMsgId("uid-1", "detect", "pacs"));
    expect(m?.subject).toBe("radflow.task.export");
  });

  it("a `when` that cannot be evaluated is Failed with ConditionError, never read as false", () => {
    const t = task(
      [{ name: "detect", image: "m:1", export: [{ destination: "pacs", when: "outputs.missing.deeper == 1" }] }],
      [{ name: "detect", phase: "Succeeded", outputs: {} }],
    );
    const [m] = planExports(t);
    expect(m?.event.data).toMatchObject({ decision: "Failed", reason: "ConditionError" });
  });

  it("a skipped step's exports are Skipped (StepSkipped); other steps can read steps.* too", () => {
    const t = task(
      [
        { name: "detect", image: "m:1" },
        {
          name: "identify",
          image: "m:2",
          dependsOn: ["detect"],
          when: "steps.detect.outputs.device == true",
          export: [{ destination: "pacs" }],
        },
        {
          name: "report",
          image: "m:3",
          dependsOn: ["detect"],
          export: [{ destination: "pacs", when: "steps.detect.outputs.device == false", content: "sr" }],
        },
      ],
      [
        { name: "detect", phase: "Succeeded", outputs: { device: false } },
        { name: "identify", phase: "Skipped" },
        { name: "report", phase: "Succeeded", outputs: {} },
      ],
    );
    expect(decisions(t)).toEqual([
      ["identify", "pacs", "Skipped", "StepSkipped"],
      ["report", "pacs", "send", undefined],
    ]);
    expect(planExports(t)[1]?.event.data.content).toBe("sr");
  });

  it("the workflow-level export is sugar: every destination, unconditional, on the last step(s); a step's own entry wins", () => {
    const t = task(
      [
        { name: "detect", image: "m:1" },
        { name: "report", image: "m:2", dependsOn: ["detect"], export: [{ destination: "pacs", when: "false" }] },
      ],
      [
        { name: "detect", phase: "Succeeded" },
        { name: "report", phase: "Succeeded" },
      ],
      { export: [{ name: "pacs" }, { name: "archive" }, { name: "MONAI_PACS" }] },
    );
    expect(decisions(t)).toEqual([
      ["report", "pacs", "Skipped", "WhenFalse"],
      ["report", "archive", "send", undefined],
    ]);
  });

  it("a task that did not succeed exports nothing", () => {
    const steps = [{ name: "detect", image: "m:1", export: [{ destination: "pacs" }] }];
    expect(planExports(task(steps, [{ name: "detect", phase: "Failed" }], {}, "Failed"))).toEqual([]);
  });

  it("the results path publishes the export requests next to the task's result, with stable ids", () => {
    const t = task(
      [{ name: "detect", image: "m:1", export: [{ destination: "pacs" }, { destination: "pacs-web" }] }],
      [{ name: "detect", phase: "Succeeded", outputs: { bleed: true } }],
    );
    const msgs = buildResultEvents(t);
    expect(msgs.map((m) => [m.kind, m.subject])).toEqual([
      ["native", "radflow.task.succeeded"],
      ["export", "radflow.task.export"],
      ["export", "radflow.task.export"],
    ]);
    expect(buildResultEvents(t)).toEqual(msgs);
    expect(new Set(msgs.map((m) => m.msgId)).size).toBe(3);
  });
});
