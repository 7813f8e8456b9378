import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DICOMDestination } from "../../../src/api/v1alpha1/dicomdestination.ts";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { instancesFor, outputFiles, underRoot } from "../../../src/export/instances.ts";
import { planExports } from "../../../src/export/plan.ts";
import type { DestinationSource } from "../../../src/export/record.ts";
import { backoff, performExport } from "../../../src/export/worker.ts";
import { makeInstance } from "../gateway/dicom-fixture.ts";

const root = mkdtempSync(path.join(tmpdir(), "rf-export-unit-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const none: DestinationSource = {
  get: async () => undefined,
  credentials: async () => undefined,
  list: async () => [],
  setReachable: async () => undefined,
};

function request(step: Record<string, unknown>, outputs: Record<string, unknown> = {}) {
  const t = InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "t1", namespace: "radiology", uid: "uid-1" },
    spec: {
      workflowRef: { name: "wf", uid: "w", generation: 1 },
      priority: "routine",
      steps: [{ name: "detect", image: "m:1", ...step }],
      storage: { pvc: { claimName: "studies" } },
      study: {
        studyInstanceUID: "1.2.3",
        location: "studies/s1",
        series: [{ seriesInstanceUID: "1.2.3.1", modality: "CT", numberOfInstances: 1 }],
      },
      eventId: "e",
    },
    status: { phase: "Succeeded", steps: [{ name: "detect", phase: "Succeeded", outputs }] },
  });
  const [m] = planExports(t);
  if (!m) throw new Error("no export planned");
  return m.event;
}

describe("performExport", () => {
  it("records the plan's own verdicts without sending", async () => {
    const ev = request({ export: [{ destination: "pacs", when: "outputs.bleed" }] }, { bleed: false });
    expect(await performExport({ storageDir: root, destinations: none }, ev)).toEqual({
      phase: "Skipped",
      reason: "WhenFalse",
      message: "export when is false",
    });
  });

  it("an unknown destination is Failed with DestinationNotFound", async () => {
    const ev = request({ export: [{ destination: "pacs" }] });
    expect(await performExport({ storageDir: root, destinations: none }, ev)).toMatchObject({
      phase: "Failed",
      reason: "DestinationNotFound",
    });
  });

  it("content files with no DICOM in the output folder is Failed with NothingToSend", async () => {
    const dest: DestinationSource = {
      ...none,
      get: async () =>
        ({
          apiVersion: "radflow.io/v1alpha1",
          kind: "DICOMDestination",
          metadata: { name: "pacs", namespace: "radiology" },
          spec: { dimse: { host: "127.0.0.1", port: 1, calledAETitle: "X", callingAETitle: "RADFLOW" } },
        }) as DICOMDestination,
    };
    const ev = request({ export: [{ destination: "pacs", content: "files" }] });
    expect(await performExport({ storageDir: root, destinations: dest }, ev)).toMatchObject({
      phase: "Failed",
      reason: "NothingToSend",
    });
  });
});

describe("instances", () => {
  it("sends the model's Part-10 files only, and builds an SR from the study on the volume when there are none", async () => {
    const out = path.join(root, "results/t1/detect");
    mkdirSync(out, { recursive: true });
    writeFileSync(path.join(out, "notes.json"), "{}");
    expect(await outputFiles(root, "results/t1/detect")).toEqual([]);
    const study = path.join(root, "studies/s1/a");
    mkdirSync(study, { recursive: true });
    writeFileSync(path.join(study, "1.dcm"), makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: "1.2.3.1.1" }));
    const sr = await instancesFor(root, request({ export: [{ destination: "pacs" }] }, { bleed: true }).data);
    expect(sr).toHaveLength(1);
    expect(sr[0]?.kind).toBe("bytes");
    writeFileSync(path.join(out, "seg.dcm"), makeInstance({ study: "1.2.3", series: "1.2.3.9", sop: "1.2.3.9.1" }));
    const files = await instancesFor(root, request({ export: [{ destination: "pacs" }] }).data);
    expect(files).toEqual([{ kind: "file", path: path.join(out, "seg.dcm") }]);
  });

  it("never reads outside the storage volume", () => {
    expect(() => underRoot(root, "../etc")).toThrow(/leaves the storage volume/);
    expect(() => underRoot(root, "s3://bucket/x")).toThrow(/volume paths/);
    expect(underRoot(root, "/studies/x")).toBe(path.join(root, "studies/x"));
  });

  it("backs off doubling from the base, at most 5 minutes", () => {
    expect([1, 2, 3, 10].map((n) => backoff(n, 10_000))).toEqual([10_000, 20_000, 40_000, 300_000]);
  });
});
