import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { MonaiWorkflowRequestEvent, StudyReceivedEvent, toStudyEvent } from "../../../src/api/v1alpha1/events.ts";
import { main } from "../../../src/cmd/send.ts";
import { dicomBytes, MR_IMAGE, writeDicom } from "../dicom/write-dicom.ts";

const dir = mkdtempSync(path.join(tmpdir(), "radflow-send-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const STUDY = "1.2.826.0.1.3680043.8.498.77";

function folder(name: string, corrupt = false): string {
  const d = path.join(dir, name);
  mkdirSync(path.join(d, "series1"), { recursive: true });
  mkdirSync(path.join(d, "series2"), { recursive: true });
  for (let i = 1; i <= 3; i++) {
    writeDicom(path.join(d, "series1", `${i}.dcm`), {
      StudyInstanceUID: STUDY,
      SeriesInstanceUID: `${STUDY}.1`,
      SOPInstanceUID: `${STUDY}.1.${i}`,
      AccessionNumber: "ACC77",
      BodyPartExamined: "HEAD",
    });
  }
  writeDicom(path.join(d, "series2", "1"), {
    StudyInstanceUID: STUDY,
    SeriesInstanceUID: `${STUDY}.2`,
    SOPInstanceUID: `${STUDY}.2.1`,
    SOPClassUID: MR_IMAGE,
    Modality: "MR",
  });
  writeFileSync(path.join(d, "README.txt"), "not DICOM");
  if (corrupt) {
    const b = dicomBytes({ StudyInstanceUID: STUDY, SeriesInstanceUID: `${STUDY}.3`, SOPInstanceUID: `${STUDY}.3.1` });
    const bad = b.slice(0, 200);
    bad.set([0xff, 0xff, 0xff, 0xff], 150);
    writeFileSync(path.join(d, "broken.dcm"), bad);
  }
  return d;
}

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    stdout += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    stderr += String(s);
    return true;
  });
  const code = await main(args);
  vi.restoreAllMocks();
  return { code, stdout, stderr };
}

/** The dry run prints pretty JSON objects one after another. */
function parseAll(s: string): unknown[] {
  return s
    .split(/\n(?=\{)/)
    .filter((x) => x.trim())
    .map((x) => JSON.parse(x));
}

describe("radflow send --dry-run", () => {
  it("prints one masked study event per study, and counts non-DICOM files as skipped", async () => {
    const d = folder("plain");
    const r = await run([d, "--dry-run", "--calling-ae", "CT01", "--called-ae", "RADFLOW", "--location", "in/77"]);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(STUDY);
    expect(r.stdout).not.toContain("ACC77");
    const [ev, ...more] = parseAll(r.stdout) as Record<string, unknown>[];
    expect(more).toHaveLength(0);
    expect(ev).toMatchObject({ type: "io.radflow.study.received", specversion: "1.0" });
    expect(r.stderr).toMatch(
      /5 files: 4 DICOM instances, 1 not DICOM \(skipped\).*0 corrupt; 1 studies; 1 events printed/,
    );
  });

  it("with --show-phi prints the event as it would be published", async () => {
    const r = await run([folder("phi"), "--dry-run", "--show-phi", "--calling-ae", "CT01", "--location", "in/77"]);
    expect(r.code).toBe(0);
    const [raw] = parseAll(r.stdout);
    const ev = StudyReceivedEvent.parse(raw);
    expect(ev.data).toMatchObject({
      studyInstanceUID: STUDY,
      accessionNumber: "ACC77",
      callingAETitle: "CT01",
      location: "in/77",
    });
    expect(ev.data.series.map((s) => [s.modality, s.numberOfInstances])).toEqual([
      ["CT", 3],
      ["MR", 1],
    ]);
    expect(toStudyEvent(JSON.stringify(raw), new Date().toISOString()).ok).toBe(true);
  });

  it("--monai prints a WorkflowRequestEvent that the MONAI adapter reads back", async () => {
    const r = await run([
      folder("monai"),
      "--dry-run",
      "--show-phi",
      "--monai",
      "--calling-ae",
      "CT01",
      "--location",
      "s3://bucket1/x",
    ]);
    expect(r.code).toBe(0);
    const [raw] = parseAll(r.stdout);
    const ev = MonaiWorkflowRequestEvent.parse(raw);
    expect(ev).toMatchObject({
      bucket: "bucket1",
      file_count: 4,
      trigger: { dataService: 1, source: "CT01", artifactType: 10 },
    });
    const back = toStudyEvent(JSON.stringify(raw), new Date().toISOString());
    expect(back.ok && back.event.study.series.map((s) => s.numberOfInstances).sort()).toEqual([1, 3]);
  });

  it("reports a corrupt DICOM file by path and exits non-zero, still printing the good study", async () => {
    const d = folder("corrupt", true);
    const r = await run([d, "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${path.join(d, "broken.dcm")}: corrupt DICOM`);
    expect(parseAll(r.stdout)).toHaveLength(1);
  });

  it("refuses bad arguments", async () => {
    expect((await run([])).code).toBe(2);
    expect((await run([dir, "--calling-ae", "A".repeat(17)])).code).toBe(2);
    expect((await run([dir, "--show-phi"])).code).toBe(2);
    expect((await run(["--help"])).code).toBe(0);
  });

  it("fails on a path that does not exist", async () => {
    const r = await run([path.join(dir, "nope"), "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ENOENT");
  });
});
