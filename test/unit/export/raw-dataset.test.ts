// The C-STORE SCU sends each file's data set as the file holds it (src/export/raw-dataset.ts),
// judged by dcmtk's storescp in bit-preserving mode (+B: it writes the data set exactly as it
// arrived): the bytes storescp keeps after the file meta group are the file's. When the peer
// accepts only another transfer syntax, dcmjs-dimse transcodes from the parsed file instead.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import dcmjs from "dcmjs";
import { afterAll, describe, expect, it } from "vitest";
import type { DICOMDestinationSpec } from "../../../src/api/v1alpha1/dicomdestination.ts";
import { readPart10Meta } from "../../../src/export/raw-dataset.ts";
import { sendInstances } from "../../../src/export/send.ts";
import { buildSR } from "../../../src/export/sr.ts";
import { makeInstance } from "../gateway/dicom-fixture.ts";

const hasDcmtk = spawnSync("storescp", ["--version"], { stdio: "ignore" }).status === 0;
if (!hasDcmtk) process.stderr.write("raw-dataset.test.ts: needs dcmtk's storescp (hack/deps.sh installs it)\n");
// a port in the export helper's range, below the ephemeral range (RADFLOW_EXPORT_UNIT_PORT moves it)
const PORT = Number(process.env.RADFLOW_EXPORT_UNIT_PORT ?? 25495);
const STUDY = "1.2.826.0.1.3680043.10.1099.55";
const work = mkdtempSync(path.join(tmpdir(), "rf-raw-dataset-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function withStorescp<T>(args: string[], out: string, f: () => Promise<T>): Promise<T> {
  mkdirSync(out, { recursive: true });
  const p: ChildProcess = spawn("storescp", [...args, "-od", out, "-aet", "STORESCP", String(PORT)], {
    stdio: "ignore",
  });
  try {
    // storescp listens at once; the first association retries while it starts
    await new Promise((r) => setTimeout(r, 300));
    return await f();
  } finally {
    const done = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await done;
  }
}

const spec: DICOMDestinationSpec = {
  dimse: { host: "127.0.0.1", port: PORT, calledAETitle: "STORESCP", callingAETitle: "RADFLOW" },
  timeoutSeconds: 20,
  checkIntervalSeconds: 0,
};
const dataset = (b: Buffer) => b.subarray(readPart10Meta(b).datasetOffset);

describe.skipIf(!hasDcmtk)("the C-STORE SCU sends data sets as the files hold them", () => {
  const files = [1, 2, 3].map((i) => {
    const p = path.join(work, `${i}.dcm`);
    writeFileSync(p, makeInstance({ study: STUDY, series: `${STUDY}.1`, sop: `${STUDY}.1.${i}`, pixelBytes: 64_000 }));
    return p;
  });
  const sr = buildSR({
    taskUid: "uid-raw",
    workflow: "wf",
    step: "detect",
    outputs: { bleed: true },
    studyInstanceUID: STUDY,
    references: [],
    time: new Date("2026-12-03T10:00:00Z"),
  });

  it("storescp +B keeps exactly the files' data set bytes (Explicit VR Little Endian accepted)", async () => {
    const out = path.join(work, "bit");
    const res = await withStorescp(["+B", "+xe"], out, () =>
      sendInstances(spec, [
        ...files.map((p) => ({ kind: "file" as const, path: p })),
        { kind: "bytes" as const, bytes: sr.bytes, sopInstanceUID: sr.sopInstanceUID },
      ]),
    );
    expect(res).toMatchObject({ sent: 4, failed: 0 });
    const kept = readdirSync(out).map((f) => readFileSync(path.join(out, f)));
    const bySop = new Map(kept.map((b) => [readPart10Meta(b).sopInstanceUID, dataset(b)]));
    for (const p of files) {
      const b = readFileSync(p);
      expect(Buffer.compare(bySop.get(readPart10Meta(b).sopInstanceUID) as Buffer, dataset(b))).toBe(0);
    }
    const srBytes = Buffer.from(sr.bytes);
    expect(Buffer.compare(bySop.get(sr.sopInstanceUID) as Buffer, dataset(srBytes))).toBe(0);
  });

  it("a peer that takes only Implicit VR Little Endian gets a transcoded data set with the same content", async () => {
    const out = path.join(work, "implicit");
    const res = await withStorescp(["+xi"], out, () =>
      sendInstances(spec, [{ kind: "file", path: files[0] as string }]),
    );
    expect(res).toMatchObject({ sent: 1, failed: 0 });
    const [f] = readdirSync(out);
    const b = readFileSync(path.join(out, f as string));
    expect(readPart10Meta(b).transferSyntaxUID).toBe("1.2.840.10008.1.2");
    const parse = (x: Buffer) =>
      dcmjs.data.DicomMessage.readFile(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength) as ArrayBuffer).dict;
    const got = parse(b);
    const want = parse(readFileSync(files[0] as string));
    expect(got["00080018"]?.Value).toEqual(want["00080018"]?.Value);
    expect(
      Buffer.compare(
        Buffer.from(got["7FE00010"]?.Value?.[0] as ArrayBuffer),
        Buffer.from(want["7FE00010"]?.Value?.[0] as ArrayBuffer),
      ),
    ).toBe(0);
  });

  it("reads the meta group, and refuses what is not Part-10", () => {
    const b = readFileSync(files[0] as string);
    expect(readPart10Meta(b)).toMatchObject({
      transferSyntaxUID: "1.2.840.10008.1.2.1",
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
      sopInstanceUID: `${STUDY}.1.1`,
    });
    expect(dataset(b).readUInt16LE(0)).toBe(0x0008);
    expect(() => readPart10Meta(Buffer.from("not DICOM"))).toThrow(/Part-10/);
  });
});
