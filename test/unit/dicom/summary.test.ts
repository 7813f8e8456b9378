import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Study } from "../../../src/api/v1alpha1/study.ts";
import { type DicomHeader, readHeaderFile } from "../../../src/dicom/header.ts";
import { summarizeStudies, trimHeader } from "../../../src/dicom/summary.ts";
import { CT_IMAGE, dicomBytes, MR_IMAGE, writeDicom } from "./write-dicom.ts";

const dir = mkdtempSync(path.join(tmpdir(), "radflow-dicom-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STUDY_A = "1.2.826.0.1.3680043.8.498.1";
const STUDY_B = "1.2.826.0.1.3680043.8.498.2";

async function header(file: string): Promise<DicomHeader> {
  const r = await readHeaderFile(file);
  if (r.kind !== "dicom") throw new Error(`${file}: ${r.kind}`);
  return r.header;
}

describe("readHeaderFile", () => {
  it("reads the header of a Part-10 file and leaves pixel data out", async () => {
    const f = path.join(dir, "one.dcm");
    writeDicom(f, {
      StudyInstanceUID: STUDY_A,
      SeriesInstanceUID: `${STUDY_A}.1`,
      SOPInstanceUID: `${STUDY_A}.1.1`,
      BodyPartExamined: "HEAD",
      SliceThickness: 2.5,
      ImageType: ["ORIGINAL", "PRIMARY", "AXIAL"],
    });
    const h = await header(f);
    expect(h.dataset.StudyInstanceUID).toBe(STUDY_A);
    expect(h.dataset.Modality).toBe("CT");
    expect(h.dataset.PixelData).toBeUndefined();
    expect(h.dict["7FE00010"]).toBeUndefined();
    expect(h.dict["00180050"]).toEqual({ vr: "DS", Value: [2.5] });
    expect(h.transferSyntaxUID).toBe("1.2.840.10008.1.2.1");
  });

  it("reads a large file's header without needing all of it", async () => {
    const f = path.join(dir, "big.dcm");
    writeDicom(
      f,
      { StudyInstanceUID: STUDY_A, SeriesInstanceUID: `${STUDY_A}.9`, SOPInstanceUID: `${STUDY_A}.9.1` },
      2_000_000,
    );
    expect((await header(f)).dataset.SeriesInstanceUID).toBe(`${STUDY_A}.9`);
  });

  it("reads a header larger than the first read", async () => {
    const f = path.join(dir, "bigheader.dcm");
    writeDicom(f, {
      StudyInstanceUID: STUDY_A,
      SeriesInstanceUID: `${STUDY_A}.8`,
      SOPInstanceUID: `${STUDY_A}.8.1`,
      ImageComments: "x".repeat(600_000), // pushes the attributes after it beyond 256 KiB
      SeriesDescription: "after the long comment",
    });
    const h = await header(f);
    expect(h.dataset.SeriesDescription).toBe("after the long comment");
  });

  it("tells non-DICOM from corrupt DICOM", async () => {
    const text = path.join(dir, "notes.txt");
    writeFileSync(text, "not an image\n");
    expect((await readHeaderFile(text)).kind).toBe("not-dicom");
    const empty = path.join(dir, "empty");
    writeFileSync(empty, "");
    expect((await readHeaderFile(empty)).kind).toBe("not-dicom");

    const good = dicomBytes({ StudyInstanceUID: STUDY_A, SeriesInstanceUID: `${STUDY_A}.1`, SOPInstanceUID: "1.2.3" });
    const corrupt = path.join(dir, "corrupt.dcm");
    const bad = good.slice(0, 200);
    bad.set([0xff, 0xff, 0xff, 0xff], 150); // a meta element length running past the end
    writeFileSync(corrupt, bad);
    expect((await readHeaderFile(corrupt)).kind).toBe("corrupt");
  });
});

describe("summarizeStudies", () => {
  it("groups instances by study and series and keeps only technical attributes", async () => {
    const sub = path.join(dir, "studies");
    mkdirSync(sub);
    const files: [string, Parameters<typeof writeDicom>[1]][] = [];
    for (let i = 1; i <= 3; i++) {
      files.push([
        `ct${i}.dcm`,
        {
          StudyInstanceUID: STUDY_A,
          SeriesInstanceUID: `${STUDY_A}.1`,
          SOPInstanceUID: `${STUDY_A}.1.${i}`,
          AccessionNumber: "ACC42",
          StudyDescription: "CT HEAD",
          SeriesDescription: "Head 5mm",
          BodyPartExamined: "HEAD",
          SliceThickness: 5,
          Manufacturer: "ACME",
          InstitutionName: "General Hospital",
        },
      ]);
    }
    files.push([
      "localizer.dcm",
      {
        StudyInstanceUID: STUDY_A,
        SeriesInstanceUID: `${STUDY_A}.1`,
        SOPInstanceUID: `${STUDY_A}.1.99`,
        SOPClassUID: "1.2.840.10008.5.1.4.1.1.7",
      },
    ]);
    files.push([
      "dup.dcm",
      { StudyInstanceUID: STUDY_A, SeriesInstanceUID: `${STUDY_A}.1`, SOPInstanceUID: `${STUDY_A}.1.1` },
    ]);
    for (let i = 1; i <= 2; i++) {
      files.push([
        `mr${i}.dcm`,
        {
          StudyInstanceUID: STUDY_B,
          SeriesInstanceUID: `${STUDY_B}.5`,
          SOPInstanceUID: `${STUDY_B}.5.${i}`,
          SOPClassUID: MR_IMAGE,
          Modality: "MR",
        },
      ]);
    }
    const headers: DicomHeader[] = [];
    for (const [name, inst] of files) {
      writeDicom(path.join(sub, name), inst);
      headers.push(trimHeader(await header(path.join(sub, name))));
    }

    const out = summarizeStudies(headers, { callingAETitle: "CT01", calledAETitle: "RADFLOW", location: "in/x" });
    expect(out.every((r) => r.ok)).toBe(true);
    const studies = out.flatMap((r) => (r.ok ? [r.study] : []));
    expect(studies.map((s) => Study.safeParse(s).success)).toEqual([true, true]);
    const [a, b] = studies;
    expect(a).toMatchObject({
      studyInstanceUID: STUDY_A,
      accessionNumber: "ACC42",
      studyDescription: "CT HEAD",
      callingAETitle: "CT01",
      calledAETitle: "RADFLOW",
      location: "in/x",
    });
    expect(a?.series).toHaveLength(1);
    expect(a?.series[0]).toMatchObject({
      seriesInstanceUID: `${STUDY_A}.1`,
      modality: "CT",
      bodyPartExamined: "HEAD",
      seriesDescription: "Head 5mm",
      sopClassUID: CT_IMAGE, // the most common class of the series
      numberOfInstances: 4, // the duplicate SOP instance counts once
    });
    const attrs = a?.series[0]?.attributes ?? {};
    expect(attrs["00180050"]).toEqual({ vr: "DS", Value: [5] });
    expect(attrs["00080070"]).toEqual({ vr: "LO", Value: ["ACME"] });
    expect(JSON.stringify(attrs)).not.toMatch(/DOE|PID-0001|General Hospital|19700101/);
    expect(b?.series).toEqual([
      expect.objectContaining({ modality: "MR", sopClassUID: MR_IMAGE, numberOfInstances: 2 }),
    ]);
  });

  it("reports a study whose identifiers break the schema instead of sending it", () => {
    const h: DicomHeader = {
      dict: {},
      dataset: {
        StudyInstanceUID: "1.2.3",
        SeriesInstanceUID: "1.2.3.1",
        SOPInstanceUID: "1.2.3.1.1",
        Modality: "CT",
        AccessionNumber: "A".repeat(30),
      },
    };
    const [r] = summarizeStudies([h]);
    expect(r?.ok).toBe(false);
    if (r && !r.ok) expect(r.error).toMatch(/accessionNumber/);
  });
});
