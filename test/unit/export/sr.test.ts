import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import dcmjs from "dcmjs";
import { afterAll, describe, expect, it } from "vitest";
import { buildSR, COMPREHENSIVE_SR, derivedUID, type SrInput } from "../../../src/export/sr.ts";

const dir = mkdtempSync(path.join(tmpdir(), "rf-sr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const hasDcmtk = spawnSync("dsrdump", ["--version"], { stdio: "ignore" }).status === 0;

const input: SrInput = {
  taskUid: "task-uid-1",
  workflow: "head-ct",
  step: "detect",
  image: "registry.example.org/ich:1.4",
  outputs: {
    bleed: true,
    score: 0.93,
    label: "ICH",
    extent: { slices: 12 },
    files: ["x.dcm"],
    resultLocation: "pvc://x",
  },
  studyInstanceUID: "1.2.826.0.1.3680043.10.1099.1",
  source: {
    "00100010": { vr: "PN", Value: [{ Alphabetic: "MUSTERMANN^ERIKA" }] },
    "00100020": { vr: "LO", Value: ["PID-7"] },
    "00080050": { vr: "SH", Value: ["ACC-7"] },
    "00080020": { vr: "DA", Value: ["20250301"] },
    "0020000D": { vr: "UI", Value: ["1.2.826.0.1.3680043.10.1099.1"] },
  },
  references: [
    {
      seriesInstanceUID: "1.2.826.0.1.3680043.10.1099.1.1",
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
      sopInstanceUID: "1.2.826.0.1.3680043.10.1099.1.1.1",
    },
    {
      seriesInstanceUID: "1.2.826.0.1.3680043.10.1099.1.1",
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
      sopInstanceUID: "1.2.826.0.1.3680043.10.1099.1.1.2",
    },
    {
      seriesInstanceUID: "1.2.826.0.1.3680043.10.1099.1.2",
      sopClassUID: "1.2.840.10008.5.1.4.1.1.4",
      sopInstanceUID: "1.2.826.0.1.3680043.10.1099.1.2.1",
    },
  ],
  time: new Date("2025-03-01T09:00:40Z"),
};

describe("buildSR", () => {
  it("is a Comprehensive SR in the source study with the patient copied, the sources referenced and the same UIDs and bytes every time", () => {
    const a = buildSR(input);
    const b = buildSR(input);
    expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true); // a retry re-sends the same instance
    expect(a.sopInstanceUID).toBe(derivedUID("radflow-sr", "task-uid-1", "detect"));
    expect(a.sopInstanceUID).toMatch(/^2\.25\.[1-9][0-9]{0,38}$/);
    expect(buildSR({ ...input, step: "other" }).sopInstanceUID).not.toBe(a.sopInstanceUID);
    const ab = a.bytes.buffer.slice(a.bytes.byteOffset, a.bytes.byteOffset + a.bytes.byteLength) as ArrayBuffer;
    const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dcmjs.data.DicomMessage.readFile(ab).dict) as Record<
      string,
      // biome-ignore lint/suspicious/noExplicitAny: a parsed data set
      any
    >;
    expect(ds.SOPClassUID).toBe(COMPREHENSIVE_SR);
    expect(ds.Modality).toBe("SR");
    expect(ds.StudyInstanceUID).toBe(input.studyInstanceUID);
    expect(ds.PatientID).toBe("PID-7");
    expect(ds.AccessionNumber).toBe("ACC-7");
    const evidence = ds.CurrentRequestedProcedureEvidenceSequence;
    const series = (Array.isArray(evidence) ? evidence[0] : evidence).ReferencedSeriesSequence;
    expect(series).toHaveLength(2);
    // findings: the plumbing keys (files, resultLocation) are not findings
    const names = ds.ContentSequence.map(
      (c: { ConceptNameCodeSequence: { CodeMeaning: string } | { CodeMeaning: string }[] }) =>
        (Array.isArray(c.ConceptNameCodeSequence) ? c.ConceptNameCodeSequence[0] : c.ConceptNameCodeSequence)
          ?.CodeMeaning,
    );
    expect(names).toEqual([
      "Observer Type",
      "Device Observer UID",
      "Device Observer Name",
      "Device Observer Manufacturer",
      "Device Observer Model Name",
      "bleed",
      "score",
      "label",
      "extent",
    ]);
  });

  it.skipIf(!hasDcmtk)("is read by dcmtk's dsrdump: observer device and findings as content items", () => {
    const file = path.join(dir, "sr.dcm");
    writeFileSync(file, buildSR(input).bytes);
    const dump = execFileSync("dsrdump", ["+Pc", file]).toString();
    expect(dump).toContain("Comprehensive SR Document");
    expect(dump).toContain("MUSTERMANN^ERIKA");
    expect(dump).toContain('(121005,DCM,"Observer Type")=(121007,DCM,"Device")');
    expect(dump).toContain('(bleed,99RADFLOW,"bleed")=(373066001,SCT,"Yes")');
    expect(dump).toContain('(score,99RADFLOW,"score")="0.93" (1,UCUM,"no units")');
    expect(dump).toContain('(label,99RADFLOW,"label")="ICH"');
    expect(dump).toContain('"Device Observer Model Name")="registry.example.org/ich:1.4"');
    // dsrdump reports no structure errors (it prints them on stderr and still exits 0)
    const r = spawnSync("dsrdump", ["-Ec", file]);
    expect(r.status).toBe(0);
    expect(r.stderr.toString()).not.toMatch(/error/i);
  });

  it("a patient-less source still gives the type-2 attributes, empty", () => {
    const sr = buildSR({ ...input, source: undefined, references: [] });
    const ab = sr.bytes.buffer.slice(sr.bytes.byteOffset, sr.bytes.byteOffset + sr.bytes.byteLength) as ArrayBuffer;
    const dict = dcmjs.data.DicomMessage.readFile(ab).dict;
    expect(dict["00100010"]).toBeDefined();
    expect(dict["00100020"]).toBeDefined();
  });
});
