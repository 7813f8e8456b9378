// The example model: what a radflow step's container does, in one small file (README.md, "The
// model contract"). It reads the study from RADFLOW_STUDY_DIR, measures something real and cheap
// from the pixels, writes a result file under RADFLOW_OUTPUT_DIR and a small JSON object to
// /dev/termination-log, which radflow turns into the step's outputs for later steps' `when`.
//
// The measurement is a toy, not a diagnostic: for CT, the share of soft-tissue voxels whose
// Hounsfield value lies where fresh blood does (50–90 HU by default); for other modalities, the
// mean pixel value. Thresholds come from the environment (HU_MIN, HU_MAX, MIN_FRACTION), so a
// workflow can set them per step.
//
// Nothing it writes names the patient or the study: no UIDs, names or dates, only counts and
// numbers. It writes nowhere but RADFLOW_OUTPUT_DIR and the termination log, so it runs with a
// read-only root filesystem as a non-root user.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import dcmjs from "dcmjs";

dcmjs.log.setLevel("silent"); // dcmjs logs attribute values, which may be patient data

/** Transfer syntaxes whose pixel data is stored as plain little-endian samples. */
const NATIVE_LE = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"]);
/** Soft tissue: above fat and air, below dense bone (what the hyperdense share is a share of). */
const TISSUE_HU: [number, number] = [-100, 300];

interface Series {
  modality: string;
  instances: number;
  voxels: number;
  sum: number;
  tissue: number;
  hyperdense: number;
}

function fail(code: number, why: string): never {
  process.stderr.write(`example-model: ${why}\n`);
  process.exit(code);
}

function numberEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v)) fail(2, `${name} must be a number`);
  return v;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

const first = (v: unknown): unknown => (Array.isArray(v) ? v[0] : v);
const num = (v: unknown, fallback: number): number => {
  const n = Number(first(v));
  return v === undefined || v === null || v === "" || !Number.isFinite(n) ? fallback : n;
};

/** The stored samples of a single-channel native image, as numbers before rescaling. */
function samples(ds: Record<string, unknown>): ArrayLike<number> | undefined {
  const frames = ds.PixelData;
  const buf = Array.isArray(frames) ? frames[0] : undefined;
  if (!(buf instanceof ArrayBuffer) || num(ds.SamplesPerPixel, 1) !== 1) return undefined;
  const count = num(ds.Rows, 0) * num(ds.Columns, 0) * num(ds.NumberOfFrames, 1);
  const bits = num(ds.BitsAllocated, 0);
  const signed = num(ds.PixelRepresentation, 0) === 1;
  if (count <= 0) return undefined;
  if (bits === 8 && buf.byteLength >= count) return new Uint8Array(buf.slice(0, count));
  if (bits === 16 && buf.byteLength >= count * 2) {
    const copy = buf.slice(0, count * 2); // aligned, whatever offset dcmjs read it at
    return signed ? new Int16Array(copy) : new Uint16Array(copy);
  }
  return undefined;
}

function main(): void {
  const studyDir = process.env.RADFLOW_STUDY_DIR;
  if (!studyDir) fail(2, "RADFLOW_STUDY_DIR is not set: this model reads the study from a volume (storage.pvc)");
  const outputDir = process.env.RADFLOW_OUTPUT_DIR;
  const terminationLog = process.env.MODEL_TERMINATION_LOG || "/dev/termination-log";
  const huMin = numberEnv("HU_MIN", 50);
  const huMax = numberEnv("HU_MAX", 90);
  const minFraction = numberEnv("MIN_FRACTION", 0.01);
  // earlier steps' outputs, by step name: this model only reports which ones it was given
  let inputs: Record<string, unknown> = {};
  try {
    inputs = JSON.parse(process.env.RADFLOW_INPUTS || "{}") as Record<string, unknown>;
  } catch {
    fail(2, "RADFLOW_INPUTS is not JSON");
  }

  const series = new Map<string, Series>();
  let files = 0;
  let skipped = 0;
  for (const file of filesUnder(studyDir)) {
    files++;
    const bytes = readFileSync(file);
    let ds: Record<string, unknown>;
    let syntax: unknown;
    try {
      const dict = dcmjs.data.DicomMessage.readFile(
        bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
      );
      syntax = first(dict.meta["00020010"]?.Value);
      ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict);
    } catch {
      skipped++; // not DICOM, or not readable: a study folder may hold other files
      continue;
    }
    const pixels = NATIVE_LE.has(String(syntax)) ? samples(ds) : undefined;
    if (!pixels) {
      skipped++; // compressed, colour or without pixels: out of this example's scope
      continue;
    }
    const modality = String(first(ds.Modality) ?? "OT");
    const slope = num(ds.RescaleSlope, 1);
    const intercept = num(ds.RescaleIntercept, 0);
    // keyed by series number and modality, never by UID
    const key = `${modality}#${num(ds.SeriesNumber, 0)}`;
    const s = series.get(key) ?? { modality, instances: 0, voxels: 0, sum: 0, tissue: 0, hyperdense: 0 };
    s.instances++;
    for (let i = 0; i < pixels.length; i++) {
      const v = (pixels[i] as number) * slope + intercept;
      s.voxels++;
      s.sum += v;
      if (modality === "CT" && v >= TISSUE_HU[0] && v <= TISSUE_HU[1]) {
        s.tissue++;
        if (v >= huMin && v <= huMax) s.hyperdense++;
      }
    }
    series.set(key, s);
  }
  const measured = [...series.values()];
  if (measured.length === 0) fail(3, `no image this model can read among ${files} file(s) in the study`);

  const total = (f: (s: Series) => number) => measured.reduce((a, s) => a + f(s), 0);
  const modalities = [...new Set(measured.map((s) => s.modality))].sort();
  const isCT = modalities.includes("CT");
  const ct = measured.filter((s) => s.modality === "CT");
  const tissue = ct.reduce((a, s) => a + s.tissue, 0);
  const hyperdenseFraction = tissue > 0 ? ct.reduce((a, s) => a + s.hyperdense, 0) / tissue : 0;
  const round = (v: number, digits: number) => Number(v.toFixed(digits));

  // The outputs: small (≤ 4 KiB), flat, and what a later step's `when` can test.
  const outputs: Record<string, unknown> = {
    modality: modalities.join(","),
    instances: total((s) => s.instances),
    skipped,
    meanIntensity: round(total((s) => s.sum) / total((s) => s.voxels), 1),
    unit: isCT ? "HU" : "stored value",
  };
  if (isCT) {
    outputs.hyperdenseFraction = round(hyperdenseFraction, 5);
    outputs.suspectedHemorrhage = hyperdenseFraction >= minFraction;
  }
  if (outputDir) {
    mkdirSync(outputDir, { recursive: true });
    const result = {
      model: "radflow example-model (hyperdensity)",
      step: process.env.RADFLOW_STEP,
      thresholds: { huMin, huMax, minFraction, tissueHU: TISSUE_HU },
      inputsFrom: Object.keys(inputs).sort(),
      series: measured.map((s) => ({
        modality: s.modality,
        instances: s.instances,
        voxels: s.voxels,
        meanIntensity: round(s.sum / s.voxels, 1),
        ...(s.modality === "CT" ? { tissueVoxels: s.tissue, hyperdenseVoxels: s.hyperdense } : {}),
      })),
      outputs,
    };
    writeFileSync(path.join(outputDir, "hyperdensity.json"), `${JSON.stringify(result, null, 2)}\n`);
    outputs.result = "hyperdensity.json";
  }
  const message = JSON.stringify(outputs);
  writeFileSync(terminationLog, message);
  process.stdout.write(`${message}\n`);
}

main();
