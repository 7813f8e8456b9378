import { describe, expect, it } from "vitest";
import { MonaiExportRequestEvent, TaskResultEvent } from "../../../src/api/v1alpha1/events.ts";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { buildResultEvents, resultLocation, resultMsgId } from "../../../src/ingest/results.ts";

function task(phase: string, over: Record<string, unknown> = {}, status: Record<string, unknown> = {}): InferenceTask {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "head-ct-0123456789abcdef", namespace: "radiology", uid: "task-uid-1" },
    spec: {
      workflowRef: { name: "head-ct", uid: "wf-uid", generation: 2 },
      priority: "stat",
      steps: [
        { name: "detect", image: "m/detect:1" },
        { name: "report", image: "m/report:1", dependsOn: ["detect"] },
      ],
      storage: { s3: { uri: "s3://imaging/studies/" } },
      study: {
        studyInstanceUID: "1.2.3.4",
        accessionNumber: "ACC1",
        location: "s3://imaging/studies/in/abc",
        series: [{ seriesInstanceUID: "1.2.3.4.1", modality: "CT", numberOfInstances: 3 }],
      },
      eventId: "ev-1",
      eventTime: "2025-03-01T09:00:00.000Z",
      ...over,
    },
    status: {
      phase,
      startTime: "2025-03-01T09:00:02Z",
      completionTime: "2025-03-01T09:00:40Z",
      steps: [
        { name: "detect", phase: "Succeeded", outputs: { bleed: true, score: 0.93 } },
        { name: "report", phase: "Succeeded", outputs: { files: ["results/sr.dcm", "results/seg.dcm"] } },
      ],
      ...status,
    },
  });
}

describe("buildResultEvents", () => {
  it("a succeeded task gives io.radflow.task.succeeded with outputs and the result location", () => {
    const [m, ...rest] = buildResultEvents(task("Succeeded"));
    expect(rest).toHaveLength(0);
    expect(m?.subject).toBe("radflow.task.succeeded");
    expect(m?.msgId).toBe(resultMsgId("task-uid-1", "succeeded"));
    const ev = TaskResultEvent.parse(m?.event);
    expect(ev).toMatchObject({
      specversion: "1.0",
      id: m?.msgId,
      type: "io.radflow.task.succeeded",
      source: "/apis/radflow.io/v1alpha1/namespaces/radiology/inferencetasks/head-ct-0123456789abcdef",
      time: "2025-03-01T09:00:40Z",
      data: {
        task: { namespace: "radiology", name: "head-ct-0123456789abcdef", uid: "task-uid-1" },
        workflow: { name: "head-ct", uid: "wf-uid", generation: 2 },
        eventId: "ev-1",
        priority: "stat",
        phase: "Succeeded",
        study: { studyInstanceUID: "1.2.3.4", accessionNumber: "ACC1", location: "s3://imaging/studies/in/abc" },
        outputs: { detect: { bleed: true, score: 0.93 }, report: { files: ["results/sr.dcm", "results/seg.dcm"] } },
        resultLocation: "s3://imaging/studies/results/head-ct-0123456789abcdef",
      },
    });
    expect(ev.data.reason).toBeUndefined();
  });

  it("a failed or canceled task gives io.radflow.task.failed with the reason, and no export", () => {
    const failed = task(
      "Failed",
      { export: [{ name: "PACS", plugin: "monaiscu" }] },
      {
        conditions: [
          {
            type: "Succeeded",
            status: "False",
            reason: "QueueTimeout",
            message: "no GPU within 300 s",
            lastTransitionTime: "2025-03-01T09:05:00Z",
          },
        ],
      },
    );
    const msgs = buildResultEvents(failed);
    expect(msgs.map((m) => m.subject)).toEqual(["radflow.task.failed"]);
    const ev = TaskResultEvent.parse(msgs[0]?.event);
    expect(ev.type).toBe("io.radflow.task.failed");
    expect(ev.data).toMatchObject({ phase: "Failed", reason: "QueueTimeout", message: "no GPU within 300 s" });
    expect(msgs[0]?.msgId).not.toBe(resultMsgId("task-uid-1", "succeeded"));

    const canceled = TaskResultEvent.parse(buildResultEvents(task("Canceled"))[0]?.event);
    expect(canceled.type).toBe("io.radflow.task.failed");
    expect(canceled.data).toMatchObject({ phase: "Canceled", reason: "Canceled" });
  });

  it("is the same message when built again (a republish is dropped by Nats-Msg-Id)", () => {
    expect(buildResultEvents(task("Succeeded"))).toEqual(buildResultEvents(task("Succeeded")));
  });

  it("a succeeded task with export destinations adds one MONAI ExportRequestEvent per plugin", () => {
    const t = task("Succeeded", {
      export: [
        { name: "PACS-A", plugin: "monaiscu" },
        { name: "PACS-B", plugin: "monaiscu" },
        { name: "archive", plugin: "dicomweb" },
      ],
    });
    const msgs = buildResultEvents(t);
    expect(msgs.map((m) => [m.kind, m.subject])).toEqual([
      ["native", "radflow.task.succeeded"],
      ["monai-export", "md.export.request.monaiscu"],
      ["monai-export", "md.export.request.dicomweb"],
      // the workflow-level export is also sugar for a DICOM export of the last step (src/export/plan.ts);
      // PACS-A and PACS-B cannot name a DICOMDestination
      ["export", "radflow.task.export"],
    ]);
    const scu = MonaiExportRequestEvent.parse(msgs[1]?.event);
    expect(scu).toMatchObject({
      workflow_instance_id: "task-uid-1",
      files: ["results/sr.dcm", "results/seg.dcm"],
      destinations: ["PACS-A", "PACS-B"],
      correlation_id: "ev-1",
      message_id: msgs[1]?.msgId,
    });
    expect(new Set(msgs.map((m) => m.msgId)).size).toBe(4);
  });

  it("exports the results location when no step listed files", () => {
    const t = task(
      "Succeeded",
      { export: [{ name: "PACS", plugin: "monaiscu" }] },
      { steps: [{ name: "detect", phase: "Succeeded" }] },
    );
    const exp = MonaiExportRequestEvent.parse(buildResultEvents(t)[1]?.event);
    expect(exp.files).toEqual(["studies/results/head-ct-0123456789abcdef"]);
  });

  it("refuses a task that has not finished", () => {
    expect(() => buildResultEvents(task("Running"))).toThrow(/has not finished/);
  });
});

describe("resultLocation", () => {
  it("prefers a step's outputs.resultLocation, then the storage", () => {
    expect(
      resultLocation(
        task("Succeeded", {}, { steps: [{ name: "a", phase: "Succeeded", outputs: { resultLocation: "s3://x/y" } }] }),
      ),
    ).toBe("s3://x/y");
    expect(resultLocation(task("Succeeded", { storage: { pvc: { claimName: "studies", subPath: "/site/" } } }))).toBe(
      "pvc://studies/site/results/head-ct-0123456789abcdef",
    );
    expect(resultLocation(task("Succeeded", { storage: undefined }))).toBeUndefined();
  });
});
