// Small, valid DICOM Part-10 instances for the gateway's tests, encoded here (Explicit VR Little
// Endian) so that unit tests need no external tool; dcmtk reads them too (the integration tests
// send them with storescu).
import { encodeFileMeta } from "../../../src/gateway/part10.ts";

export interface InstanceSpec {
  study: string;
  series: string;
  sop: string;
  sopClass?: string;
  modality?: string;
  bodyPart?: string;
  seriesDescription?: string;
  accession?: string;
  patientName?: string;
  /** Pixel data bytes (a square 16-bit image of about this size). */
  pixelBytes?: number;
}

const CT = "1.2.840.10008.5.1.4.1.1.2";

function el(group: number, element: number, vr: string, value: Buffer): Buffer {
  const long = ["OB", "OW", "SQ", "UN", "UT"].includes(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.write(vr, 4, "latin1");
  if (long) h.writeUInt32LE(value.length, 8);
  else h.writeUInt16LE(value.length, 6);
  return Buffer.concat([h, value]);
}
const str = (s: string, pad = 0x20) => {
  const b = Buffer.from(s, "latin1");
  return b.length % 2 ? Buffer.concat([b, Buffer.from([pad])]) : b;
};
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};

export function makeInstance(s: InstanceSpec): Buffer {
  const side = Math.max(2, Math.round(Math.sqrt((s.pixelBytes ?? 8) / 2)));
  const pixels = Buffer.alloc(side * side * 2);
  for (let i = 0; i < pixels.length; i += 2) pixels.writeUInt16LE(i % 4096, i);
  const sopClass = s.sopClass ?? CT;
  const data = Buffer.concat([
    el(0x0008, 0x0016, "UI", str(sopClass, 0)),
    el(0x0008, 0x0018, "UI", str(s.sop, 0)),
    el(0x0008, 0x0050, "SH", str(s.accession ?? "ACC-GW-1")),
    el(0x0008, 0x0060, "CS", str(s.modality ?? "CT")),
    el(0x0008, 0x103e, "LO", str(s.seriesDescription ?? "axial")),
    el(0x0010, 0x0010, "PN", str(s.patientName ?? "DOE^JANE")),
    el(0x0010, 0x0020, "LO", str("PID-GW-1")),
    el(0x0018, 0x0015, "CS", str(s.bodyPart ?? "HEAD")),
    el(0x0020, 0x000d, "UI", str(s.study, 0)),
    el(0x0020, 0x000e, "UI", str(s.series, 0)),
    el(0x0028, 0x0002, "US", us(1)),
    el(0x0028, 0x0004, "CS", str("MONOCHROME2")),
    el(0x0028, 0x0010, "US", us(side)),
    el(0x0028, 0x0011, "US", us(side)),
    el(0x0028, 0x0100, "US", us(16)),
    el(0x0028, 0x0101, "US", us(16)),
    el(0x0028, 0x0102, "US", us(15)),
    el(0x0028, 0x0103, "US", us(0)),
    el(0x7fe0, 0x0010, "OW", pixels),
  ]);
  return Buffer.concat([
    encodeFileMeta({ sopClassUID: sopClass, sopInstanceUID: s.sop, transferSyntaxUID: "1.2.840.10008.1.2.1" }),
    data,
  ]);
}

/** A study of `series` series with `perSeries` instances each, under a UID root. */
export function makeStudy(root: string, series: number, perSeries: number, o: Partial<InstanceSpec> = {}): Buffer[] {
  const out: Buffer[] = [];
  for (let s = 1; s <= series; s++) {
    for (let i = 1; i <= perSeries; i++) {
      out.push(
        makeInstance({
          study: root,
          series: `${root}.${s}`,
          sop: `${root}.${s}.${i}`,
          modality: s === 1 ? "CT" : "OT",
          ...o,
        }),
      );
    }
  }
  return out;
}
