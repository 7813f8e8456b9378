// A small tar (ustar) writer and reader for OCI image layouts. The writer packs the layout
// itself (oci-layout, index.json, blobs/sha256/<digest>): short names, regular files and
// directories, root-owned, mtime 0, so the same blobs always make the same archive. The reader
// also understands what GNU tar and mmdebstrap write into layers (PAX and GNU long names,
// symlinks, hard links), for the checks in test/unit/images.
import { closeSync, openSync, readSync, writeSync } from "node:fs";

const BLOCK = 512;

export interface TarEntry {
  name: string;
  type: "file" | "dir" | "symlink" | "link" | "other";
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname: string;
  /** byte offset of the entry's data in the archive */
  offset: number;
}

function field(buf: Buffer, off: number, len: number, value: string): void {
  const b = Buffer.from(value, "utf8");
  if (b.length > len) throw new Error(`tar: ${JSON.stringify(value)} does not fit in ${len} bytes`);
  b.copy(buf, off);
}

const octal = (n: number, len: number) => `${n.toString(8).padStart(len - 1, "0")}\0`;

/** One ustar header block: names up to 100 bytes (enough for blobs/sha256/<64 hex digits>). */
export function header(name: string, type: "file" | "dir", size: number, mode: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  field(h, 0, 100, name);
  field(h, 100, 8, octal(mode, 8));
  field(h, 108, 8, octal(0, 8));
  field(h, 116, 8, octal(0, 8));
  field(h, 124, 12, octal(size, 12));
  field(h, 136, 12, octal(0, 12));
  h.fill(" ", 148, 156); // the checksum is summed with its own field as spaces
  field(h, 156, 1, type === "dir" ? "5" : "0");
  field(h, 257, 6, "ustar\0");
  field(h, 263, 2, "00");
  field(h, 265, 32, "root");
  field(h, 297, 32, "root");
  let sum = 0;
  for (const b of h) sum += b;
  field(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

export type TarInput =
  | { name: string; dir: true }
  | { name: string; data: Buffer }
  | { name: string; file: string; size: number };

/** Writes the entries, in the order given, to `out`. Files are copied in chunks, not loaded. */
export function writeTar(out: string, entries: TarInput[]): void {
  const fd = openSync(out, "w");
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (const e of entries) {
      if ("dir" in e) {
        writeSync(fd, header(e.name.endsWith("/") ? e.name : `${e.name}/`, "dir", 0, 0o755));
        continue;
      }
      const size = "data" in e ? e.data.length : e.size;
      writeSync(fd, header(e.name, "file", size, 0o644));
      if ("data" in e) writeSync(fd, e.data);
      else {
        const src = openSync(e.file, "r");
        try {
          let done = 0;
          while (done < size) {
            const n = readSync(src, chunk, 0, Math.min(chunk.length, size - done), done);
            if (n === 0) throw new Error(`tar: ${e.file} is shorter than ${size} bytes`);
            writeSync(fd, chunk, 0, n);
            done += n;
          }
        } finally {
          closeSync(src);
        }
      }
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad) writeSync(fd, Buffer.alloc(pad));
    }
    writeSync(fd, Buffer.alloc(BLOCK * 2)); // end of archive
  } finally {
    closeSync(fd);
  }
}

const str = (b: Buffer, off: number, len: number) => {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z === -1 ? s : s.subarray(0, z)).toString("utf8");
};
const num = (b: Buffer, off: number, len: number) => Number.parseInt(str(b, off, len).trim() || "0", 8);

/** PAX extended header records: "<len> key=value\n". */
function pax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp === -1) break;
    const len = Number(data.subarray(i, sp).toString());
    if (!len) break;
    const rec = data.subarray(sp + 1, i + len - 1).toString("utf8");
    const eq = rec.indexOf("=");
    out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** Every entry of an uncompressed tar held in memory, names normalised without "./". */
export function readTar(buf: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let off = 0;
  let ext: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) break;
    const size = num(h, 124, 12);
    const flag = String.fromCharCode(h[156] || 0x30);
    const dataAt = off + BLOCK;
    off = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    const data = buf.subarray(dataAt, dataAt + size);
    if (flag === "x") {
      ext = pax(data);
      continue;
    }
    if (flag === "g") continue;
    if (flag === "L") {
      longName = str(data, 0, data.length);
      continue;
    }
    if (flag === "K") {
      longLink = str(data, 0, data.length);
      continue;
    }
    const prefix = str(h, 345, 155);
    let name = ext.path ?? longName ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
    name = name.replace(/^\.\//, "").replace(/\/$/, "");
    const type =
      flag === "0" || flag === "7"
        ? "file"
        : flag === "5"
          ? "dir"
          : flag === "2"
            ? "symlink"
            : flag === "1"
              ? "link"
              : "other";
    entries.push({
      name,
      type,
      mode: num(h, 100, 8),
      uid: ext.uid ? Number(ext.uid) : num(h, 108, 8),
      gid: ext.gid ? Number(ext.gid) : num(h, 116, 8),
      size: ext.size ? Number(ext.size) : size,
      linkname: ext.linkpath ?? longLink ?? str(h, 157, 100),
      offset: dataAt,
    });
    ext = {};
    longName = longLink = undefined;
  }
  return entries;
}
