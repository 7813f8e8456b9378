// The example model (examples/model/model.ts) run as a process on this machine, the way its image
// runs it, against DICOM files dcmtk writes (dump2dcm, with known pixel values) and, when the
// gateway test has fetched them, the files pydicom ships. Its termination message must be what the
// operator's own parser (parseOutputs) accepts, and nothing it writes may name the patient.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseOutputs } from "../../../src/controllers/task-plan.ts";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const MODEL = path.join(ROOT, "examples/model/model.ts");
const hasDcmtk = spawnSync("dump2dcm", ["--version"]).status === 0;
const work = mkdtempSync(path.join(tmpdir(), "radflow-model-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PHI = ["DOE^JANE", "PID-4711", "ACC-0815", "1.2.826.0.1.3680043.2.1143.777"];

interface Image {
  modality: string;
  series: number;
  rows: number;
  cols: number;
  bits: 8 | 16;
  signed?: boolean;
  intercept?: number;
  pixels: number[];
}

let n = 0;
/** A Part-10 file from a dcmtk dump: patient data in the header, the pixels from a raw file. */
function dicom(dir: string, img: Image): string {
  mkdirSync(dir, { recursive: true });
  const id = ++n;
  const raw = path.join(work, `px${id}.raw`);
  const buf = Buffer.alloc(img.pixels.length * (img.bits / 8));
  img.pixels.forEach((v, i) => {
    if (img.bits === 8) buf.writeUInt8(v, i);
    else if (img.signed) buf.writeInt16LE(v, i * 2);
    else buf.writeUInt16LE(v, i * 2);
  });
  writeFileSync(raw, buf);
  const sop = img.modality === "CT" ? "CTImageStorage" : "MRImageStorage";
  const dump = [
    `(0008,0016) UI =${sop}`,
    `(0008,0018) UI [1.2.826.0.1.3680043.2.1143.${id}]`,
    "(0008,0050) SH [ACC-0815]",
    `(0008,0060) CS [${img.modality}]`,
    "(0010,0010) PN [DOE^JANE]",
    "(0010,0020) LO [PID-4711]",
    "(0020,000d) UI [1.2.826.0.1.3680043.2.1143.777]",
    `(0020,0011) IS [${img.series}]`,
    "(0028,0002) US 1",
    "(0028,0004) CS [MONOCHROME2]",
    `(0028,0010) US ${img.rows}`,
    `(0028,0011) US ${img.cols}`,
    `(0028,0100) US ${img.bits}`,
    `(0028,0101) US ${img.bits}`,
    `(0028,0102) US ${img.bits - 1}`,
    `(0028,0103) US ${img.signed ? 1 : 0}`,
    ...(img.intercept !== undefined ? [`(0028,1052) DS [${img.intercept}]`, "(0028,1053) DS [1]"] : []),
    `(7fe0,0010) ${img.bits === 8 ? "OB" : "OW"} =${raw}`,
  ].join("\n");
  const dumpFile = path.join(work, `d${id}.dump`);
  writeFileSync(dumpFile, `${dump}\n`);
  const out = path.join(dir, `${id}.dcm`);
  const r = spawnSync("dump2dcm", ["+te", dumpFile, out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`dump2dcm: ${r.stderr}`);
  return out;
}

function runModel(env: Record<string, string | undefined>) {
  const log = path.join(work, `termination-${++n}.log`);
  const r = spawnSync(process.execPath, [MODEL], {
    encoding: "utf8",
    env: { PATH: process.env.PATH, MODEL_TERMINATION_LOG: log, ...env },
  });
  const message = existsSync(log) ? readFileSync(log, "utf8") : undefined;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, message };
}

// 64×64 CT, stored as HU + 1024: a 10×10 square of fresh-blood density in brain-like tissue
const SIDE = 64;
const square = (inside: number, outside: number) =>
  Array.from({ length: SIDE * SIDE }, (_, i) => (i % SIDE < 10 && Math.floor(i / SIDE) < 10 ? inside : outside));

// each case starts Node processes: seconds apiece on a loaded machine
describe.skipIf(!hasDcmtk)("the example model, run on DICOM files", { timeout: 60_000 }, () => {
  const study = path.join(work, "ct-study");
  beforeAll(() => {
    // slice 1: unsigned with an intercept; slice 2: signed HU with 50 voxels of air
    dicom(study, {
      modality: "CT",
      series: 2,
      rows: SIDE,
      cols: SIDE,
      bits: 16,
      intercept: -1024,
      pixels: square(70 + 1024, 20 + 1024),
    });
    dicom(study, {
      modality: "CT",
      series: 2,
      rows: SIDE,
      cols: SIDE,
      bits: 16,
      signed: true,
      intercept: 0,
      pixels: Array.from({ length: SIDE * SIDE }, (_, i) => (i < 50 ? -1000 : 20)),
    });
    writeFileSync(path.join(study, "README.txt"), "not DICOM: skipped\n");
  });
  const voxels = 2 * SIDE * SIDE;
  const tissue = voxels - 50; // air is not tissue
  const mean = (100 * 70 + (SIDE * SIDE - 100) * 20 + 50 * -1000 + (SIDE * SIDE - 50) * 20) / voxels;

  it("CT: the share of tissue voxels at blood density, from the pixels, as outputs the operator accepts", () => {
    const out = path.join(work, "out-ct");
    const r = runModel({
      RADFLOW_STUDY_DIR: study,
      RADFLOW_OUTPUT_DIR: out,
      RADFLOW_STEP: "triage",
      RADFLOW_INPUTS: JSON.stringify({ "body-part": { bodyPart: "HEAD" } }),
    });
    expect(r.status, r.stderr).toBe(0);
    const parsed = parseOutputs(r.message, 4096);
    expect(parsed).toEqual({
      ok: true,
      outputs: {
        modality: "CT",
        instances: 2,
        skipped: 1,
        meanIntensity: Number(mean.toFixed(1)),
        unit: "HU",
        hyperdenseFraction: Number((100 / tissue).toFixed(5)),
        suspectedHemorrhage: true,
        result: "hyperdensity.json",
      },
    });
    expect(Buffer.byteLength(r.message as string)).toBeLessThan(4096);
    const result = JSON.parse(readFileSync(path.join(out, "hyperdensity.json"), "utf8"));
    expect(result).toMatchObject({
      step: "triage",
      inputsFrom: ["body-part"],
      thresholds: { huMin: 50, huMax: 90, minFraction: 0.01 },
      series: [{ modality: "CT", instances: 2, voxels, tissueVoxels: tissue, hyperdenseVoxels: 100 }],
    });
    // counts and numbers only: not the patient's name or ID, the accession number or a UID
    const written = [r.message, r.stdout, r.stderr, readFileSync(path.join(out, "hyperdensity.json"), "utf8")].join(
      "\n",
    );
    for (const p of PHI) expect(written).not.toContain(p);
  });

  it("thresholds from the step's env decide the finding a later step's `when` reads", () => {
    const r = runModel({ RADFLOW_STUDY_DIR: study, MIN_FRACTION: "0.05" });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.message as string)).toMatchObject({ suspectedHemorrhage: false });
    // no RADFLOW_OUTPUT_DIR (no volume for results): outputs only, no result file named
    expect(JSON.parse(r.message as string).result).toBeUndefined();
    const narrow = runModel({ RADFLOW_STUDY_DIR: study, HU_MIN: "15", HU_MAX: "25" });
    expect(JSON.parse(narrow.message as string).hyperdenseFraction).toBe(Number(((tissue - 100) / tissue).toFixed(5)));
    const bad = runModel({ RADFLOW_STUDY_DIR: study, HU_MIN: "fifty" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/HU_MIN must be a number/);
  });

  it("other modalities: the mean stored value, no CT finding", () => {
    const mr = path.join(work, "mr-study");
    dicom(mr, {
      modality: "MR",
      series: 1,
      rows: 4,
      cols: 4,
      bits: 8,
      pixels: [...Array(8).fill(10), ...Array(8).fill(30)],
    });
    const r = runModel({ RADFLOW_STUDY_DIR: mr });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.message as string)).toEqual({
      modality: "MR",
      instances: 1,
      skipped: 0,
      meanIntensity: 20,
      unit: "stored value",
    });
  });

  it("fails with a clear reason, and no outputs, without a study or without a readable image", () => {
    const none = runModel({});
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/RADFLOW_STUDY_DIR is not set/);
    expect(none.message).toBeUndefined();
    const empty = path.join(work, "no-images");
    mkdirSync(empty);
    writeFileSync(path.join(empty, "report.pdf"), "%PDF-1.4\n");
    const r = runModel({ RADFLOW_STUDY_DIR: empty });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/no image this model can read among 1 file/);
    expect(r.message).toBeUndefined();
  });

  it("reads a real scanner's CT file (pydicom's CT_small.dcm, when the gateway test has fetched it)", (ctx) => {
    const file = path.join(homedir(), ".cache/radflow/pydicom/files/pydicom/data/test_files/CT_small.dcm");
    if (!existsSync(file)) return ctx.skip(`skipped: ${file} is absent (test/integration/gateway.test.ts fetches it)`);
    const dir = path.join(work, "pydicom-ct");
    mkdirSync(dir);
    writeFileSync(path.join(dir, "CT_small.dcm"), readFileSync(file));
    const r = runModel({ RADFLOW_STUDY_DIR: dir });
    expect(r.status, r.stderr).toBe(0);
    const o = JSON.parse(r.message as string);
    expect(o).toMatchObject({ modality: "CT", instances: 1, skipped: 0, unit: "HU" });
    expect(o.hyperdenseFraction).toBeGreaterThanOrEqual(0);
    expect(o.hyperdenseFraction).toBeLessThanOrEqual(1);
    expect(o.meanIntensity).toBeGreaterThan(-1024);
    expect(o.meanIntensity).toBeLessThan(3072);
  });
});

describe("the model contract in README.md", () => {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const section = /^## The model contract\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? "";

  it("names every variable the operator passes a step's container, and the example model", () => {
    expect(section, "README.md has a '## The model contract' section").not.toBe("");
    const jobBuilder = readFileSync(path.join(ROOT, "src/jobs/job-builder.ts"), "utf8");
    const passed = [...new Set([...jobBuilder.matchAll(/name: "(RADFLOW_[A-Z_]+)"/g)].map((m) => m[1] as string))];
    expect(passed.length).toBeGreaterThan(5);
    for (const v of passed) expect(section, v).toContain(v);
    for (const s of [
      "/dev/termination-log",
      "examples/model",
      "hack/images/build.sh example-model",
      "readOnlyRootFilesystem",
    ]) {
      expect(section, s).toContain(s);
    }
  });
});
