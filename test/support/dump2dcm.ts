// Real DICOM files for the tests that want files nobody here encoded: dcmtk's dump2dcm (Debian's
// dcmtk, which hack/deps.sh installs) writes them from its text form.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";

/** The smallest image dump2dcm accepts: 2×2 pixels, 16 bits, MONOCHROME2 (group 0028 and the pixel data). */
const TINY_IMAGE = [
  "(0028,0002) US 1",
  "(0028,0004) CS [MONOCHROME2]",
  "(0028,0010) US 2",
  "(0028,0011) US 2",
  "(0028,0100) US 16",
  "(0028,0101) US 16",
  "(0028,0102) US 15",
  "(0028,0103) US 0",
  "(7fe0,0010) OW 0001\\0002\\0003\\0004",
];

/**
 * A Part-10 file (Explicit VR Little Endian, with group lengths) of `header` — dump2dcm's lines,
 * in tag order, all below group 0028 — and a tiny image.
 */
export function writeImage(file: string, header: string[]): void {
  const dump = `${file}.dump`;
  writeFileSync(dump, [...header, ...TINY_IMAGE].join("\n"));
  try {
    execFileSync("dump2dcm", ["-g", "+te", dump, file]);
  } finally {
    rmSync(dump, { force: true });
  }
}
