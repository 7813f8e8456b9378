// MONAI-form export requests: which files and destinations a request names, and the
// ExportCompleteEvent that answers it (src/export/monai-export.ts). The sends themselves are
// tested against Orthanc (test/integration/dicom-loop.test.ts).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DICOMDestination } from "../../../src/api/v1alpha1/dicomdestination.ts";
import { MonaiExportRequestEvent } from "../../../src/api/v1alpha1/events.ts";
import { exportComplete, findDestination, resolveFiles } from "../../../src/export/monai-export.ts";
import { makeInstance } from "./dicom-fixture.ts";

const root = mkdtempSync(path.join(tmpdir(), "rf-monai-export-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const req = MonaiExportRequestEvent.parse({
  workflow_instance_id: "wf-1",
  export_task_id: "export-1",
  files: ["a"],
  destinations: ["PACS"],
  correlation_id: "c-1",
});

describe("resolveFiles: MONAI's bucket-relative paths on the study volume", () => {
  it("a Part-10 file is itself, a folder is its Part-10 files; missing, non-DICOM and escaping paths say why", async () => {
    mkdirSync(path.join(root, "out", "seg"), { recursive: true });
    const dcm = makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: "1.2.3.1.1" });
    writeFileSync(path.join(root, "out", "sr.dcm"), dcm);
    writeFileSync(path.join(root, "out", "seg", "a.dcm"), dcm);
    writeFileSync(path.join(root, "out", "seg", "b.dcm"), dcm);
    writeFileSync(path.join(root, "out", "seg", "volumes.json"), "{}");
    writeFileSync(path.join(root, "out", "report.pdf"), "%PDF-1.4");
    const got = await resolveFiles(root, [
      "out/sr.dcm",
      "out/seg",
      "/out/sr.dcm",
      "out/missing.dcm",
      "out/report.pdf",
      "../etc/passwd",
      "s3://bucket/out/sr.dcm",
      "",
    ]);
    expect(got).toEqual([
      { file: "out/sr.dcm", paths: [path.join(root, "out", "sr.dcm")] },
      { file: "out/seg", paths: [path.join(root, "out", "seg", "a.dcm"), path.join(root, "out", "seg", "b.dcm")] },
      { file: "/out/sr.dcm", paths: [path.join(root, "out", "sr.dcm")] },
      { file: "out/missing.dcm", status: "DownloadError", why: "not on the study volume" },
      { file: "out/report.pdf", status: "UnsupportedDataType", why: "no DICOM Part-10 file" },
      { file: "../etc/passwd", status: "UnsupportedDataType", why: "not a path on the study volume" },
      { file: "s3://bucket/out/sr.dcm", status: "UnsupportedDataType", why: "not a path on the study volume" },
      { file: "", status: "UnsupportedDataType", why: "not a path on the study volume" },
    ]);
  });
});

describe("exportComplete: MONAI's ExportCompleteEvent", () => {
  const sent = { file: "a", paths: ["/v/a"] };
  const other = { file: "b", paths: ["/v/b"] };

  it("every file stored at every destination: Success, with MONAI's field names", () => {
    expect(exportComplete(req, [sent, other], [{ requested: "PACS", found: "pacs", ok: true }])).toEqual({
      workflow_instance_id: "wf-1",
      export_task_id: "export-1",
      status: "Success",
      message: "",
      file_statuses: { a: "Success", b: "Success" },
      export_request: "None",
    });
  });

  it("a file not on the volume and one that is not DICOM: PartialFailure, each file with its own status", () => {
    const ev = exportComplete(
      { ...req, error_messages: ["from the workflow manager"] },
      [sent, { file: "gone", status: "DownloadError", why: "not on the study volume" }],
      [{ requested: "PACS", found: "pacs", ok: true }],
    );
    expect(ev.status).toBe("PartialFailure");
    expect(ev.file_statuses).toEqual({ a: "Success", gone: "DownloadError" });
    expect(ev.message).toBe("from the workflow manager\ngone: not on the study volume");
  });

  it("an unknown destination is a ConfigurationError, a refusing one a ServiceError: the worst one wins per file", () => {
    const unknown = exportComplete(req, [sent], [{ requested: "NOPE" }]);
    expect(unknown).toMatchObject({ status: "Failure", file_statuses: { a: "ConfigurationError" } });
    expect(unknown.message).toContain("destination NOPE: no DICOMDestination of that name");
    const refused = exportComplete(
      req,
      [sent],
      [
        { requested: "PACS", found: "pacs", ok: true },
        { requested: "ARCHIVE", found: "archive", ok: false, error: "1 of 1 refused (status 0xa700)" },
      ],
    );
    expect(refused).toMatchObject({ status: "Failure", file_statuses: { a: "ServiceError" } });
    expect(refused.message).toBe("destination ARCHIVE: 1 of 1 refused (status 0xa700)");
  });

  it("no destination at all: nothing sent, a ConfigurationError", () => {
    expect(exportComplete(req, [sent], [])).toMatchObject({
      status: "Failure",
      file_statuses: { a: "ConfigurationError" },
      message: "no destination named",
    });
  });
});

describe("findDestination: a MONAI destination name as a DICOMDestination", () => {
  const dest = (name: string) =>
    ({
      apiVersion: "radflow.io/v1alpha1",
      kind: "DICOMDestination",
      metadata: { name, namespace: "radiology" },
      spec: { dimse: { host: "pacs", port: 104, calledAETitle: "PACS" } },
    }) as DICOMDestination;
  const asked: string[] = [];
  const source = {
    async get(_ns: string, name: string) {
      asked.push(name);
      return ["pacs-ed", "archive"].includes(name) ? dest(name) : undefined;
    },
  };

  it("the name itself when it can be one, else its DNS label (as the MONAI import names destinations)", async () => {
    expect((await findDestination(source, "radiology", "archive"))?.metadata.name).toBe("archive");
    expect((await findDestination(source, "radiology", "PACS-ED"))?.metadata.name).toBe("pacs-ed");
    expect((await findDestination(source, "radiology", "PACS_ED"))?.metadata.name).toBe("pacs-ed");
    expect(await findDestination(source, "radiology", "ELSEWHERE")).toBeUndefined();
    // an uppercase name is never looked up as itself (the API server would refuse the name)
    expect(asked).toEqual(["archive", "pacs-ed", "pacs-ed", "elsewhere"]);
  });
});
