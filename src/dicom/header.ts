// Reads the header of a DICOM Part-10 file with dcmjs, never its pixel data: a file is read in
// growing prefixes until the header (everything before Pixel Data) is complete.
import { open } from "node:fs/promises";
import dcmjs, { type DicomJsonDict } from "dcmjs";

dcmjs.log.setLevel("silent"); // dcmjs warns with attribute values; radflow reports errors itself

const PIXEL_DATA = "7FE00010";
const FIRST_READ = 256 * 1024;

export interface DicomHeader {
  /** Attributes by tag, in DICOM JSON form (PS3.18 F.2), without pixel data. */
  dict: DicomJsonDict;
  /** The same, keyword-named (dcmjs naturalized): Modality, StudyInstanceUID, … */
  dataset: Record<string, unknown>;
  transferSyntaxUID?: string;
}

export type HeaderResult =
  | { kind: "dicom"; header: DicomHeader }
  | { kind: "not-dicom" }
  | { kind: "corrupt"; error: string };

/** True when the buffer starts like a Part-10 file: a 128-byte preamble and "DICM". */
export function isPart10(buf: Uint8Array): boolean {
  return buf.length >= 132 && buf[128] === 0x44 && buf[129] === 0x49 && buf[130] === 0x43 && buf[131] === 0x4d;
}

/**
 * Parses the header from a buffer holding the file or a prefix of it. `complete` says whether the
 * buffer is the whole file; for a prefix, undefined means "read more" (the header did not fit).
 */
export function parseHeader(buf: Uint8Array, complete = true): HeaderResult | undefined {
  if (!isPart10(buf)) return buf.length < 132 && !complete ? undefined : { kind: "not-dicom" };
  let parsed: ReturnType<typeof dcmjs.data.DicomMessage.readFile>;
  try {
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    parsed = dcmjs.data.DicomMessage.readFile(ab, { untilTag: PIXEL_DATA, includeUntilTagValue: false });
  } catch (e) {
    if (!complete) return undefined;
    return { kind: "corrupt", error: (e as Error).message };
  }
  // dcmjs stops quietly at the end of a prefix; only reaching Pixel Data or the file's end is a full header
  if (!complete && !(PIXEL_DATA in parsed.dict)) return undefined;
  const dict: DicomJsonDict = {};
  for (const [tag, el] of Object.entries(parsed.dict)) {
    if (tag === PIXEL_DATA) continue;
    dict[tag] = { vr: el.vr, ...(el.Value !== undefined ? { Value: el.Value } : {}) };
  }
  const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(parsed.dict);
  delete dataset.PixelData;
  const ts = parsed.meta["00020010"]?.Value?.[0];
  return {
    kind: "dicom",
    header: { dict, dataset, ...(typeof ts === "string" ? { transferSyntaxUID: ts } : {}) },
  };
}

/** Reads a file's DICOM header, reading only as much of the file as the header needs. */
export async function readHeaderFile(path: string): Promise<HeaderResult> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    let want = Math.min(size, FIRST_READ);
    for (;;) {
      const buf = new Uint8Array(want);
      const { bytesRead } = await fh.read(buf, 0, want, 0);
      const complete = bytesRead >= size;
      const r = parseHeader(buf.subarray(0, bytesRead), complete);
      if (r) return r;
      if (bytesRead < 132) return { kind: "not-dicom" };
      want = Math.min(size, want * 4);
    }
  } finally {
    await fh.close();
  }
}
