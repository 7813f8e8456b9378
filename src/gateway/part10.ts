// DICOM Part-10 framing for received instances. A C-STORE carries only the data set, in the
// transfer syntax the association accepted; the gateway writes the 128-byte preamble, "DICM" and
// the File Meta Information group in front of it so that every stored instance is a file any
// DICOM tool (and a step's model) reads. `checkStructure` walks a stored file's elements without
// loading them, so a truncated or garbled instance is refused before it is acknowledged — dcmjs
// alone parses a file cut inside its pixel data without complaint.
import type { FileHandle } from "node:fs/promises";

/** radflow's Implementation Class UID: a UUID-derived UID (2.25) fixed for this implementation. */
export const IMPLEMENTATION_CLASS_UID = "2.25.190285853337459428516839735785196473162";
export const IMPLEMENTATION_VERSION = "RADFLOW_01";

export const TS = {
  implicitLE: "1.2.840.10008.1.2",
  explicitLE: "1.2.840.10008.1.2.1",
  deflatedLE: "1.2.840.10008.1.2.1.99",
  explicitBE: "1.2.840.10008.1.2.2",
} as const;

export interface FileMeta {
  sopClassUID: string;
  sopInstanceUID: string;
  transferSyntaxUID: string;
  sourceAETitle?: string;
}

/** UI values are padded with NUL, text values with a space, to an even length. */
function pad(s: string, filler: number): Buffer {
  const b = Buffer.from(s, "latin1");
  return b.length % 2 ? Buffer.concat([b, Buffer.from([filler])]) : b;
}

function element(group: number, el: number, vr: string, value: Buffer): Buffer {
  const long = vr === "OB" || vr === "UN" || vr === "SQ" || vr === "UT";
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(el, 2);
  head.write(vr, 4, "latin1");
  if (long) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

/** Preamble, "DICM" and group 0002 (Explicit VR Little Endian, as PS3.10 requires). */
export function encodeFileMeta(m: FileMeta): Buffer {
  const body = Buffer.concat([
    element(2, 0x0001, "OB", Buffer.from([0, 1])),
    element(2, 0x0002, "UI", pad(m.sopClassUID, 0)),
    element(2, 0x0003, "UI", pad(m.sopInstanceUID, 0)),
    element(2, 0x0010, "UI", pad(m.transferSyntaxUID, 0)),
    element(2, 0x0012, "UI", pad(IMPLEMENTATION_CLASS_UID, 0)),
    element(2, 0x0013, "SH", pad(IMPLEMENTATION_VERSION, 0x20)),
    ...(m.sourceAETitle ? [element(2, 0x0016, "AE", pad(m.sourceAETitle, 0x20))] : []),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(body.length, 0);
  const preamble = Buffer.alloc(132);
  preamble.write("DICM", 128, "latin1");
  return Buffer.concat([preamble, element(2, 0x0000, "UL", groupLength), body]);
}

// ---- structure check ----------------------------------------------------------------------

const UNDEFINED = 0xffffffff;
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQ_END = 0xfffee0dd;

/** Positioned reads through a 64 KiB window: elements are walked, values are skipped. */
class Reader {
  private buf = Buffer.alloc(0);
  private at = 0;
  private readonly fh: FileHandle;
  readonly size: number;
  constructor(fh: FileHandle, size: number) {
    this.fh = fh;
    this.size = size;
  }
  async bytes(pos: number, n: number): Promise<Buffer> {
    if (pos + n > this.size) throw new Truncated();
    if (pos < this.at || pos + n > this.at + this.buf.length) {
      const want = Math.max(n, 64 * 1024);
      const b = Buffer.alloc(Math.min(want, this.size - pos));
      const { bytesRead } = await this.fh.read(b, 0, b.length, pos);
      this.buf = b.subarray(0, bytesRead);
      this.at = pos;
      if (bytesRead < n) throw new Truncated();
    }
    return this.buf.subarray(pos - this.at, pos - this.at + n);
  }
}

class Truncated extends Error {
  constructor() {
    super("the file ends inside an element: truncated");
  }
}

interface Syntax {
  explicit: boolean;
  little: boolean;
}

interface Walk {
  r: Reader;
  s: Syntax;
  elements: number;
}

/** Reads one element header at pos: tag, VR (explicit), value length and where the value starts. */
async function header(w: Walk, pos: number): Promise<{ tag: number; vr?: string; len: number; value: number }> {
  const { r, s } = w;
  const b = await r.bytes(pos, 8);
  const g = s.little ? b.readUInt16LE(0) : b.readUInt16BE(0);
  const e = s.little ? b.readUInt16LE(2) : b.readUInt16BE(2);
  const tag = ((g << 16) | e) >>> 0;
  // item and delimitation tags have no VR in any syntax
  if (g === 0xfffe || !s.explicit) {
    return { tag, len: s.little ? b.readUInt32LE(4) : b.readUInt32BE(4), value: pos + 8 };
  }
  const vr = b.toString("latin1", 4, 6);
  if (!/^[A-Z]{2}$/.test(vr)) throw new Error(`not a DICOM element at byte ${pos} (VR is not two letters)`);
  if (LONG_VRS.has(vr)) {
    const l = await r.bytes(pos + 8, 4);
    return { tag, vr, len: s.little ? l.readUInt32LE(0) : l.readUInt32BE(0), value: pos + 12 };
  }
  return { tag, vr, len: s.little ? b.readUInt16LE(6) : b.readUInt16BE(6), value: pos + 8 };
}

/** Walks elements from pos until `end` (defined length) or the given delimiter; returns the position after. */
async function walkElements(w: Walk, pos: number, end: number, delimiter?: number, depth = 0): Promise<number> {
  if (depth > 32) throw new Error("sequences nested deeper than 32 levels");
  let lastTag = -1;
  while (pos < end) {
    const h = await header(w, pos);
    if (delimiter !== undefined && h.tag === delimiter) return h.value;
    if (h.tag === ITEM || h.tag === ITEM_END || h.tag === SEQ_END) {
      throw new Error(`an item or delimiter where an element was expected (byte ${pos})`);
    }
    if (delimiter === undefined && depth === 0 && h.tag <= lastTag) {
      throw new Error(`elements out of order at byte ${pos}: not a valid data set`);
    }
    lastTag = h.tag;
    w.elements++;
    pos = h.len === UNDEFINED ? await walkUndefined(w, h.value, h.tag, depth) : h.value + h.len;
    if (pos > w.r.size) throw new Truncated();
  }
  if (delimiter !== undefined) throw new Truncated();
  if (pos !== end) throw new Truncated();
  return pos;
}

/** A sequence or encapsulated pixel data of undefined length: items until the sequence delimiter. */
async function walkUndefined(w: Walk, pos: number, tag: number, depth: number): Promise<number> {
  const encapsulated = tag === 0x7fe00010;
  for (;;) {
    const h = await header(w, pos);
    if (h.tag === SEQ_END) return h.value;
    if (h.tag !== ITEM) throw new Error(`expected an item at byte ${pos}`);
    if (h.len === UNDEFINED) {
      if (encapsulated) throw new Error("a pixel data fragment of undefined length");
      pos = await walkElements(w, h.value, w.r.size, ITEM_END, depth + 1);
    } else {
      pos = h.value + h.len;
      if (pos > w.r.size) throw new Truncated();
    }
  }
}

export interface StructureResult {
  transferSyntaxUID: string;
  /** Top-level and nested elements walked (0 for a deflated data set, which is not walked). */
  elements: number;
}

/**
 * Checks that a Part-10 file is whole: the meta group is well formed and every element of the
 * data set fits, ending exactly at the end of the file. Throws with a reason (no values) if not.
 */
export async function checkStructure(fh: FileHandle, size: number): Promise<StructureResult> {
  const r = new Reader(fh, size);
  const pre = await r.bytes(0, 132).catch(() => {
    throw new Error("not a DICOM Part-10 file (shorter than its preamble)");
  });
  if (pre.toString("latin1", 128, 132) !== "DICM") throw new Error('not a DICOM Part-10 file (no "DICM")');
  const meta: Walk = { r, s: { explicit: true, little: true }, elements: 0 };
  const first = await header(meta, 132);
  if (first.tag !== 0x00020000 || first.len !== 4) throw new Error("file meta group without its group length");
  const groupLength = (await r.bytes(first.value, 4)).readUInt32LE(0);
  const metaEnd = first.value + 4 + groupLength;
  let ts: string | undefined;
  for (let pos = first.value + 4; pos < metaEnd; ) {
    const h = await header(meta, pos);
    if (h.tag >>> 16 !== 2) throw new Error("file meta group length is wrong");
    if (h.tag === 0x00020010) ts = (await r.bytes(h.value, h.len)).toString("latin1").replace(/[\0 ]+$/, "");
    pos = h.value + h.len;
  }
  if (!ts) throw new Error("file meta group has no Transfer Syntax UID");
  if (ts === TS.deflatedLE) return { transferSyntaxUID: ts, elements: 0 };
  const s: Syntax = { explicit: ts !== TS.implicitLE, little: ts !== TS.explicitBE };
  const w: Walk = { r, s, elements: 0 };
  await walkElements(w, metaEnd, size);
  if (w.elements === 0) throw new Error("the data set is empty");
  return { transferSyntaxUID: ts, elements: w.elements };
}
