// A C-STORE data set sent as the Part-10 file holds it. dcmjs-dimse's CStoreRequest(path) parses
// the whole file with dcmjs when it sends and encodes the data set again: for a 256 KiB image
// that is most of an export's time, and the bytes that leave are dcmjs's rewriting, not the
// file's. A RawDataset is a dcmjs-dimse Dataset that carries only the SOP class and instance
// (what the association and the command need) and hands the file's data set bytes — everything
// after the file meta group — to the network as they are, when the destination accepted the
// file's own transfer syntax. When it accepted another one, dcmjs-dimse transcodes: for that
// its getElements() parses the whole file, as before.
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import dimse from "dcmjs-dimse";

const { Dataset } = dimse;

export interface Part10Meta {
  transferSyntaxUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
  /** where the data set starts: after the preamble, "DICM" and group 0002 */
  datasetOffset: number;
}

const text = (b: Buffer, at: number, len: number) => b.toString("latin1", at, at + len).replace(/[\0 ]+$/, "");

/** Reads group 0002 (always Explicit VR Little Endian, PS3.10 7.1); throws when it is not there. */
export function readPart10Meta(b: Buffer): Part10Meta {
  if (b.length < 132 || b.toString("latin1", 128, 132) !== "DICM") throw new Error("not a DICOM Part-10 file");
  let pos = 132;
  const meta: Partial<Part10Meta> = {};
  while (pos + 8 <= b.length && b.readUInt16LE(pos) === 0x0002) {
    const el = b.readUInt16LE(pos + 2);
    const vr = b.toString("latin1", pos + 4, pos + 6);
    const long = ["OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV"].includes(vr);
    const len = long ? b.readUInt32LE(pos + 8) : b.readUInt16LE(pos + 6);
    const value = pos + (long ? 12 : 8);
    if (value + len > b.length) throw new Error("the file meta group is cut short");
    if (el === 0x0002) meta.sopClassUID = text(b, value, len);
    else if (el === 0x0003) meta.sopInstanceUID = text(b, value, len);
    else if (el === 0x0010) meta.transferSyntaxUID = text(b, value, len);
    pos = value + len;
  }
  if (!meta.transferSyntaxUID || !meta.sopClassUID || !meta.sopInstanceUID)
    throw new Error("the file meta group lacks the transfer syntax, SOP class or SOP instance");
  return { ...(meta as Omit<Part10Meta, "datasetOffset">), datasetOffset: pos };
}

/** A Dataset whose bytes are the file's (see the header). `load` gives the whole Part-10 file. */
export class RawDataset extends Dataset {
  private readonly load: () => Buffer;
  private readonly offset: number;
  private parsed?: Record<string, unknown>;

  constructor(meta: Part10Meta, load: () => Buffer) {
    super({ SOPClassUID: meta.sopClassUID, SOPInstanceUID: meta.sopInstanceUID }, meta.transferSyntaxUID);
    this.load = load;
    this.offset = meta.datasetOffset;
  }

  /** The file's data set bytes, unchanged (called when the file's transfer syntax was accepted). */
  override getDenaturalizedDataset(): Buffer {
    return this.load().subarray(this.offset);
  }

  /** Every element, parsed from the file: only for transcoding to another transfer syntax. */
  override getElements(): Record<string, unknown> {
    if (!this.parsed) {
      const b = this.load();
      const whole = new Dataset(b.subarray(this.offset), this.getTransferSyntaxUid());
      this.parsed = whole.getElements();
    }
    return this.parsed;
  }

  /** A file on disk: only its meta group is read now, the rest when it is sent. */
  static ofFile(path: string): RawDataset {
    const head = Buffer.alloc(64 * 1024);
    const fd = openSync(path, "r");
    let n: number;
    try {
      n = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    return new RawDataset(readPart10Meta(head.subarray(0, n)), () => readFileSync(path));
  }

  /** A Part-10 file built in memory (the SR). */
  static ofBytes(bytes: Uint8Array): RawDataset {
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new RawDataset(readPart10Meta(b), () => b);
  }
}
