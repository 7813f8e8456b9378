// A streaming multipart/related reader (RFC 2046 5.1, RFC 2387) for STOW-RS. Bodies go to a
// sink as they arrive — a STOW request may carry a whole study — and memory stays at a chunk
// plus the boundary. Nothing here knows DICOM.

export interface PartSink {
  write(b: Buffer): void | Promise<void>;
  end(): void | Promise<void>;
  /** The body broke off inside this part: drop what was written. */
  abort(): void | Promise<void>;
}

export interface MultipartLimits {
  /** Largest header block of a part (bytes). */
  maxHeaderBytes?: number;
  /** Most parts in one request. */
  maxParts?: number;
}

export class MultipartError extends Error {}

/** Parameters of a Content-Type value: `multipart/related; type="application/dicom"; boundary=x`. */
export function parseContentType(v: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!v) return { type: "", params };
  const [type = "", ...rest] = splitParams(v);
  for (const p of rest) {
    const i = p.indexOf("=");
    if (i < 0) continue;
    let val = p.slice(i + 1).trim();
    if (val.startsWith('"') && val.endsWith('"') && val.length >= 2) val = val.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(p.slice(0, i).trim().toLowerCase(), val);
  }
  return { type: type.trim().toLowerCase(), params };
}

/** Splits on ';' outside quotes. */
function splitParams(v: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < v.length; i++) {
    const ch = v[i] as string;
    if (ch === '"' && v[i - 1] !== "\\") quoted = !quoted;
    if (ch === ";" && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function parseHeaders(block: string): Map<string, string> {
  const h = new Map<string, string>();
  // folded lines (obsolete, still legal in MIME) continue the previous header
  for (const line of block.replace(/\r\n[ \t]+/g, " ").split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) h.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return h;
}

const CRLF2 = Buffer.from("\r\n\r\n");

/**
 * Reads a multipart body, calling `onPart` with each part's headers and streaming its body to the
 * sink it returns. Resolves with the number of parts; throws MultipartError on a malformed body
 * (the parts already read stay read: the caller decides what a half-read request means).
 */
export async function readMultipart(
  body: AsyncIterable<Buffer | string>,
  boundary: string,
  onPart: (headers: Map<string, string>) => PartSink | Promise<PartSink>,
  limits: MultipartLimits = {},
): Promise<number> {
  if (!boundary || boundary.length > 70) throw new MultipartError("boundary must be 1-70 characters");
  const delim = Buffer.from(`\r\n--${boundary}`);
  const maxHeader = limits.maxHeaderBytes ?? 16 * 1024;
  const maxParts = limits.maxParts ?? 10_000;
  // a CRLF in front lets the first boundary (which may start the body) match like the others
  let buf: Buffer = Buffer.from("\r\n");
  type State = "preamble" | "after" | "headers" | "body" | "done";
  let state = "preamble" as State;
  let sink: PartSink | undefined;
  let parts = 0;

  const step = async (final: boolean): Promise<boolean> => {
    switch (state) {
      case "preamble": {
        const i = buf.indexOf(delim);
        if (i < 0) {
          buf = buf.subarray(Math.max(0, buf.length - delim.length + 1));
          return false;
        }
        buf = buf.subarray(i + delim.length);
        state = "after";
        return true;
      }
      case "after": {
        if (buf.length < 2) return false;
        if (buf[0] === 0x2d && buf[1] === 0x2d) {
          state = "done";
          return false;
        }
        const eol = buf.indexOf("\r\n");
        if (eol < 0) {
          if (buf.length > 1024) throw new MultipartError("boundary line too long");
          return false;
        }
        if (buf.subarray(0, eol).toString("latin1").trim() !== "") throw new MultipartError("junk after a boundary");
        buf = buf.subarray(eol + 2);
        state = "headers";
        return true;
      }
      case "headers": {
        let headers: Map<string, string>;
        if (buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a) {
          headers = new Map();
          buf = buf.subarray(2);
        } else {
          const end = buf.indexOf(CRLF2);
          if (end < 0) {
            if (buf.length > maxHeader) throw new MultipartError("part headers too long");
            return false;
          }
          headers = parseHeaders(buf.subarray(0, end).toString("latin1"));
          buf = buf.subarray(end + 4);
        }
        if (++parts > maxParts) throw new MultipartError(`more than ${maxParts} parts`);
        sink = await onPart(headers);
        state = "body";
        return true;
      }
      case "body": {
        const i = buf.indexOf(delim);
        if (i >= 0) {
          if (i > 0) await sink?.write(buf.subarray(0, i));
          await sink?.end();
          sink = undefined;
          buf = buf.subarray(i + delim.length);
          state = "after";
          return true;
        }
        const keep = final ? 0 : delim.length - 1;
        if (buf.length > keep) {
          await sink?.write(buf.subarray(0, buf.length - keep));
          buf = buf.subarray(buf.length - keep);
        }
        return false;
      }
      case "done":
        return false;
    }
  };

  for await (const chunk of body) {
    const c = typeof chunk === "string" ? Buffer.from(chunk, "latin1") : chunk;
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    while (await step(false)) {}
    if (state === "done") break;
  }
  if (state !== "done") {
    if (state === "body" && sink) await sink.abort();
    throw new MultipartError(
      state === "preamble" ? "no boundary in the body" : "the body ends before its closing boundary",
    );
  }
  return parts;
}
