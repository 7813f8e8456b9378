import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseHeader } from "../../../src/dicom/header.ts";
import { checkStructure, encodeFileMeta } from "../../../src/gateway/part10.ts";
import { makeInstance } from "./dicom-fixture.ts";

const dir = mkdtempSync(path.join(tmpdir(), "rf-part10-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function check(buf: Buffer) {
  const f = path.join(dir, `${Math.random()}.dcm`);
  writeFileSync(f, buf);
  const fh = await open(f, "r");
  try {
    return await checkStructure(fh, buf.length);
  } finally {
    await fh.close();
  }
}

describe("Part-10 framing", () => {
  it("writes a meta group dcmjs reads back, with the command's UIDs and transfer syntax", () => {
    const meta = encodeFileMeta({
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
      sopInstanceUID: "1.2.3.4",
      transferSyntaxUID: "1.2.840.10008.1.2",
      sourceAETitle: "CT1",
    });
    expect(meta.toString("latin1", 128, 132)).toBe("DICM");
    // group length = bytes after the group-length element
    expect(meta.readUInt32LE(140)).toBe(meta.length - 144);
    const inst = makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: "1.2.3.1.1" });
    const r = parseHeader(inst);
    expect(r?.kind).toBe("dicom");
    if (r?.kind === "dicom") {
      expect(r.header.dataset.SOPInstanceUID).toBe("1.2.3.1.1");
      expect(r.header.transferSyntaxUID).toBe("1.2.840.10008.1.2.1");
    }
  });

  it("accepts a whole file and counts its elements", async () => {
    const r = await check(makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: "1.2.3.1.1", pixelBytes: 5000 }));
    expect(r).toEqual({ transferSyntaxUID: "1.2.840.10008.1.2.1", elements: 19 });
  });

  it.each([
    ["cut inside the pixel data", (b: Buffer) => b.subarray(0, b.length - 3), /truncated/],
    ["cut inside an element header", (b: Buffer) => b.subarray(0, 420), /truncated|not a DICOM element/],
    ["not DICOM at all", () => Buffer.from("hello, this is not an image\n"), /not a DICOM Part-10 file/],
    ["garbage after the meta group", (b: Buffer) => Buffer.concat([b.subarray(0, 230), Buffer.alloc(300, 0x41)]), /./],
    ["an empty data set", (b: Buffer) => b.subarray(0, 230), /empty|truncated/],
  ])("refuses a file %s", async (_what, mangle, msg) => {
    const whole = makeInstance({ study: "1.2.3", series: "1.2.3.1", sop: "1.2.3.1.1", pixelBytes: 5000 });
    await expect(check(mangle(whole))).rejects.toThrow(msg);
  });

  it("walks sequences and encapsulated pixel data of undefined length", async () => {
    const le16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
    const le32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n >>> 0, 0);
      return b;
    };
    const tag = (g: number, e: number) => Buffer.concat([le16(g), le16(e)]);
    const item = (body: Buffer) =>
      Buffer.concat([tag(0xfffe, 0xe000), le32(0xffffffff), body, tag(0xfffe, 0xe00d), le32(0)]);
    const seq = Buffer.concat([
      tag(0x0008, 0x1140),
      Buffer.from("SQ\0\0"),
      le32(0xffffffff),
      item(Buffer.concat([tag(0x0008, 0x1150), Buffer.from("UI"), le16(4), Buffer.from("1.2\0")])),
      tag(0xfffe, 0xe0dd),
      le32(0),
    ]);
    const pixels = Buffer.concat([
      tag(0x7fe0, 0x0010),
      Buffer.from("OB\0\0"),
      le32(0xffffffff),
      tag(0xfffe, 0xe000),
      le32(0),
      tag(0xfffe, 0xe000),
      le32(4),
      Buffer.from([1, 2, 3, 4]),
      tag(0xfffe, 0xe0dd),
      le32(0),
    ]);
    const meta = encodeFileMeta({
      sopClassUID: "1.2.3",
      sopInstanceUID: "1.2.3.4",
      transferSyntaxUID: "1.2.840.10008.1.2.4.50",
    });
    const file = Buffer.concat([meta, seq, pixels]);
    await expect(check(file)).resolves.toMatchObject({ elements: 3 });
    // without its sequence delimiter the file is cut
    await expect(check(file.subarray(0, file.length - 8))).rejects.toThrow(/truncated/);
  });
});
