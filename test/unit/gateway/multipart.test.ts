import { describe, expect, it } from "vitest";
import { MultipartError, parseContentType, readMultipart } from "../../../src/gateway/multipart.ts";

function body(
  boundary: string,
  parts: { headers?: string; data: Buffer }[],
  o: { preamble?: string; close?: boolean } = {},
) {
  const chunks: Buffer[] = [];
  if (o.preamble) chunks.push(Buffer.from(o.preamble));
  for (const [i, p] of parts.entries()) {
    chunks.push(
      Buffer.from(
        `${i === 0 && !o.preamble ? "" : "\r\n"}--${boundary}\r\n${p.headers ?? "Content-Type: application/dicom"}\r\n\r\n`,
      ),
    );
    chunks.push(p.data);
  }
  if (o.close !== false) chunks.push(Buffer.from(`\r\n--${boundary}--\r\nepilogue`));
  return Buffer.concat(chunks);
}

async function* chunked(b: Buffer, size: number) {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function read(b: Buffer, boundary: string, size: number) {
  const got: { headers: Map<string, string>; data: Buffer; aborted?: boolean }[] = [];
  const n = await readMultipart(chunked(b, size), boundary, (headers) => {
    const part = { headers, data: Buffer.alloc(0), aborted: false };
    got.push(part);
    return {
      write: (c) => {
        part.data = Buffer.concat([part.data, c]);
      },
      end: () => {},
      abort: () => {
        part.aborted = true;
      },
    };
  });
  return { n, got };
}

describe("multipart/related reader", () => {
  // bodies that contain CR LF and dashes, split at every possible chunk size
  const a = Buffer.from("DICM\r\n--not-the-boundary\r\n\r\nbinary\0\x01\x02");
  const b = Buffer.alloc(3000, 0x2d);
  it.each([1, 2, 3, 7, 64, 4096])("reads parts split into %i-byte chunks", async (size) => {
    const { n, got } = await read(
      body("b0und4ry", [{ data: a }, { data: b, headers: "Content-Type: application/dicom\r\nContent-Location: x" }], {
        preamble: "ignored preamble",
      }),
      "b0und4ry",
      size,
    );
    expect(n).toBe(2);
    expect(got[0]?.data.equals(a)).toBe(true);
    expect(got[1]?.data.equals(b)).toBe(true);
    expect(got[1]?.headers.get("content-location")).toBe("x");
  });

  it("drops a part the body breaks off in, and says the body is cut", async () => {
    const full = body("xyz", [{ data: a }, { data: b }], { close: false });
    const got: { aborted: boolean; ended: boolean }[] = [];
    await expect(
      readMultipart(chunked(full, 100), "xyz", () => {
        const p = { aborted: false, ended: false };
        got.push(p);
        return {
          write() {},
          end: () => {
            p.ended = true;
          },
          abort: () => {
            p.aborted = true;
          },
        };
      }),
    ).rejects.toThrow(MultipartError);
    expect(got).toEqual([
      { aborted: false, ended: true },
      { aborted: true, ended: false },
    ]);
  });

  it("refuses a body without its boundary", async () => {
    await expect(read(Buffer.from("just bytes"), "b", 4)).rejects.toThrow(/no boundary/);
  });

  it("parses Content-Type parameters, quoted or not", () => {
    const ct = parseContentType('Multipart/Related; type="application/dicom"; boundary="a;b=c"');
    expect(ct.type).toBe("multipart/related");
    expect(ct.params.get("type")).toBe("application/dicom");
    expect(ct.params.get("boundary")).toBe("a;b=c");
    expect(parseContentType("multipart/related; boundary=simple").params.get("boundary")).toBe("simple");
  });
});
