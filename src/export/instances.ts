// What an export sends, read from the study volume the gateway shares with the steps: the DICOM
// files a model wrote under its RADFLOW_OUTPUT_DIR, or the SR radflow builds (src/export/sr.ts)
// from the step's outputs, the received study's headers and its instances' references.
import { open, readdir } from "node:fs/promises";
import path from "node:path";
import type { DicomJsonDict } from "dcmjs";
import { isPart10, readHeaderFile } from "../dicom/header.ts";
import type { ExportRequestData } from "./request.ts";
import { buildSR, type SourceInstance } from "./sr.ts";

export type Instance =
  | { kind: "file"; path: string }
  /** built in memory (the SR); `header` holds what the audit record reads of it (PatientID, SOPClassUID) */
  | { kind: "bytes"; bytes: Uint8Array; sopInstanceUID: string; header?: Record<string, unknown> };

export class ExportContentError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

const MAX_FILES = 10_000;

/** A path under the storage root, or an error when it would leave it (or is not a plain path). */
export function underRoot(root: string, rel: string): string {
  if (/^[a-z0-9]+:\/\//i.test(rel)) throw new ExportContentError("UnsupportedStorage", "only volume paths can be read");
  const full = path.resolve(root, rel.replace(/^\/+/, ""));
  const r = path.resolve(root);
  if (full !== r && !full.startsWith(`${r}${path.sep}`))
    throw new ExportContentError("UnsupportedStorage", "path leaves the storage volume");
  return full;
}

async function walk(dir: string, out: string[]): Promise<void> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    if (out.length >= MAX_FILES) return;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/** Whether a file is DICOM Part 10 (its preamble and DICM prefix), read from its first 132 bytes. */
export async function isPart10File(p: string): Promise<boolean> {
  const fh = await open(p, "r");
  try {
    const buf = new Uint8Array(132);
    const { bytesRead } = await fh.read(buf, 0, 132, 0);
    return isPart10(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/** The Part-10 files under the step's output folder (anything else there is not DICOM, skipped). */
export async function outputFiles(root: string, outputPath: string): Promise<string[]> {
  const all: string[] = [];
  await walk(underRoot(root, outputPath), all);
  const dicom: string[] = [];
  for (const p of all) if (await isPart10File(p)) dicom.push(p);
  return dicom;
}

/** Headers of the received study: one for patient/study attributes, and every instance's references. */
export async function studySources(
  root: string,
  location: string | undefined,
): Promise<{ source?: DicomJsonDict; references: SourceInstance[] }> {
  if (!location) throw new ExportContentError("StudyNotFound", "the task's study has no location");
  const files: string[] = [];
  await walk(underRoot(root, location), files);
  let source: DicomJsonDict | undefined;
  const references: SourceInstance[] = [];
  for (const f of files) {
    const h = await readHeaderFile(f).catch(() => undefined);
    if (h?.kind !== "dicom") continue;
    const d = h.header.dataset;
    source ??= h.header.dict;
    if (typeof d.SeriesInstanceUID === "string" && typeof d.SOPInstanceUID === "string")
      references.push({
        seriesInstanceUID: d.SeriesInstanceUID,
        sopClassUID: typeof d.SOPClassUID === "string" ? d.SOPClassUID : "",
        sopInstanceUID: d.SOPInstanceUID,
      });
  }
  if (!source) throw new ExportContentError("StudyNotFound", "no DICOM instance of the study is on the volume");
  return { source, references };
}

/** The received study's own Part-10 files, as they were stored (forwarding: sent unchanged). */
export async function studyFiles(root: string, location: string | undefined): Promise<string[]> {
  if (!location) throw new ExportContentError("StudyNotFound", "the task's study has no location");
  const all: string[] = [];
  await walk(underRoot(root, location), all);
  const dicom: string[] = [];
  for (const p of all) if (await isPart10File(p)) dicom.push(p);
  if (!dicom.length) throw new ExportContentError("StudyNotFound", "no DICOM instance of the study is on the volume");
  return dicom;
}

/** The instances one export request sends (content auto: the model's files, else an SR; study: the study). */
export async function instancesFor(root: string, req: ExportRequestData): Promise<Instance[]> {
  // the study is read from the gateway's own volume, wherever the steps' storage is
  if (req.content === "study")
    return (await studyFiles(root, req.study.location)).map((p) => ({ kind: "file", path: p }));
  if (req.storage?.s3) throw new ExportContentError("UnsupportedStorage", "exports read PVC storage, not S3");
  const files = req.content === "sr" ? [] : await outputFiles(root, req.outputPath);
  if (files.length) return files.map((p) => ({ kind: "file", path: p }));
  if (req.content === "files")
    throw new ExportContentError("NothingToSend", "the model wrote no DICOM files under its output folder");
  const { source, references } = await studySources(root, req.study.location);
  const sr = buildSR({
    taskUid: req.task.uid,
    workflow: req.workflow,
    step: req.step,
    image: req.image,
    outputs: req.outputs,
    studyInstanceUID: req.study.studyInstanceUID,
    source,
    references,
    time: new Date(req.completionTime ?? 0),
  });
  const pid = source?.["00100020"]?.Value?.[0];
  return [
    {
      kind: "bytes",
      bytes: sr.bytes,
      sopInstanceUID: sr.sopInstanceUID,
      header: { SOPClassUID: sr.sopClassUID, ...(typeof pid === "string" ? { PatientID: pid } : {}) },
    },
  ];
}
