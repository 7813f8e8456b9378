// The study storage the steps read through RADFLOW_STUDY_DIR. A received instance is streamed to
// a temporary file under <root>/.radflow-gateway/incoming, flushed (fsync), checked, and only then
// renamed into studies/<study>/<series>/<instance>.dcm — so a file in the study tree is always
// whole, and an instance that failed half-way leaves nothing a step could read. Folder and file
// names are hashes of the UIDs: paths carry no PHI.
import { createHash, randomUUID } from "node:crypto";
import { type FileHandle, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { type DicomHeader, parseHeader, readHeaderFile } from "../dicom/header.ts";
import { identify, trimHeader } from "../dicom/summary.ts";
import { type StudySubject, subjectOf } from "./audit.ts";
import { checkStructure } from "./part10.ts";

/** DICOM status codes the gateway answers with (PS3.4 C.4.2.1.4, PS3.18 failure reasons). */
export const STATUS = {
  success: 0x0000,
  /** Refused: Out of Resources (A7xx) — disk full, I/O error. */
  outOfResources: 0xa700,
  /** Error: Data Set does not match SOP Class (A9xx). */
  dataSetMismatch: 0xa900,
  /** Error: Cannot understand (Cxxx) — not DICOM, truncated, no identifiers. */
  cannotUnderstand: 0xc000,
  processingFailure: 0x0110,
} as const;

export type Outcome = "stored" | "out-of-resources" | "invalid" | "mismatch";

export interface StoredInstance {
  study: string;
  series: string;
  sop: string;
  sopClassUID?: string;
  /** Path relative to the storage root. */
  file: string;
  bytes: number;
  /** The header cut to what the study summary reads. */
  header: DicomHeader;
}

export type StoreResult =
  | { ok: true; instance: StoredInstance; subject: StudySubject }
  | {
      ok: false;
      /** The study the refused instance named, when its first bytes say (for the audit record). */
      subject?: StudySubject;
      outcome: Exclude<Outcome, "stored">;
      status: number;
      reason: string;
      sopClassUID?: string;
      sop?: string;
    };

/** A stable key for a UID: a hash, so that names on disk and in events carry no identifier. */
export function uidKey(kind: "study" | "series" | "sop", uid: string, len = 32): string {
  return createHash("sha256").update(`radflow-${kind}:${uid}`).digest("hex").slice(0, len);
}

/** Where a study's files are, relative to the storage root (the event's `location`). */
export function studyLocation(studyUID: string): string {
  return `studies/${uidKey("study", studyUID)}`;
}

/**
 * A Writable that streams one instance to a temporary file. Write errors do not break the stream
 * (the DIMSE layer keeps feeding it until the last fragment): the first error is kept and the
 * rest of the data is discarded, and `commit` then answers with a failure status.
 */
export class IncomingFile extends Writable {
  readonly tmp: string;
  private fh?: FileHandle;
  error?: Error;
  bytes = 0;
  private readonly prefix?: Buffer;
  /** The first bytes received, kept whatever the disk does: a refused instance's audit record names its study. */
  private readonly headChunks: Buffer[] = [];
  private headBytes = 0;

  constructor(dir: string, prefix?: Buffer) {
    super({ highWaterMark: 1 << 20 });
    this.tmp = path.join(dir, `${randomUUID()}.part`);
    this.prefix = prefix;
  }

  override _construct(cb: (e?: Error | null) => void): void {
    open(this.tmp, "wx", 0o640)
      .then(async (fh) => {
        this.fh = fh;
        if (this.prefix) await this.writeAll(this.prefix);
        cb();
      })
      .catch((e: Error) => {
        this.error = e;
        cb();
      });
  }

  /** Up to HEAD_BYTES of what was received (the Part-10 meta of a C-STORE included). */
  head(): Buffer {
    return Buffer.concat(this.headChunks);
  }

  private keepHead(b: Buffer): void {
    if (this.headBytes >= HEAD_BYTES) return;
    const part = b.subarray(0, HEAD_BYTES - this.headBytes);
    this.headChunks.push(Buffer.from(part));
    this.headBytes += part.length;
  }

  private async writeAll(b: Buffer): Promise<void> {
    this.keepHead(b);
    if (!this.fh || this.error) return;
    try {
      let off = 0;
      while (off < b.length) off += (await this.fh.write(b, off, b.length - off)).bytesWritten;
      this.bytes += b.length;
    } catch (e) {
      this.error = e as Error;
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.writeAll(chunk).then(() => cb());
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (e?: Error | null) => void): void {
    this.writeAll(Buffer.concat(chunks.map((c) => c.chunk))).then(() => cb());
  }

  /** Ends the stream, flushes the file to disk and closes it; the error (if any) is in `error`. */
  async finish(): Promise<void> {
    if (!this.writableFinished) {
      await new Promise<void>((resolve) => {
        this.once("finish", resolve);
        this.once("error", (e) => {
          this.error ??= e;
          resolve();
        });
        if (!this.writableEnded) this.end();
      });
    }
    if (this.fh) {
      try {
        if (!this.error) await this.fh.sync();
      } catch (e) {
        this.error = e as Error;
      } finally {
        await this.fh.close().catch(() => {});
        this.fh = undefined;
      }
    }
  }

  async discard(): Promise<void> {
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
    await rm(this.tmp, { force: true });
  }
}

const HEAD_BYTES = 64 * 1024;

/** The study named in the first bytes of a refused instance, if they parse that far. */
export function peekSubject(head: Buffer): StudySubject | undefined {
  try {
    const r = parseHeader(head, true);
    return r?.kind === "dicom" ? subjectOf(r.header.dataset) : undefined;
  } catch {
    return undefined;
  }
}

export interface Expect {
  /** The SOP Instance UID the C-STORE command named: the data set must agree. */
  sopInstanceUID?: string;
  sopClassUID?: string;
  /** STOW-RS to /studies/{uid}: the instance must belong to that study. */
  studyInstanceUID?: string;
}

export class StudyStorage {
  readonly incoming: string;
  readonly root: string;
  constructor(root: string) {
    this.root = root;
    this.incoming = path.join(root, ".radflow-gateway", "incoming");
  }

  /** Creates the folders and removes temporary files a previous run left (never acknowledged). */
  async init(): Promise<void> {
    await mkdir(this.incoming, { recursive: true });
    for (const f of await readdir(this.incoming)) {
      if (f.endsWith(".part")) await rm(path.join(this.incoming, f), { force: true });
    }
    await mkdir(path.join(this.root, "studies"), { recursive: true });
  }

  /** A new temporary file; `prefix` (the Part-10 meta of a C-STORE) is written first. */
  begin(prefix?: Buffer): IncomingFile {
    const f = new IncomingFile(this.incoming, prefix);
    // errors are collected in f.error; an unhandled 'error' event would end the process
    f.on("error", (e) => {
      f.error ??= e;
    });
    return f;
  }

  /**
   * Flushes, checks and moves a received instance into the study tree. Nothing reaches the tree
   * unless the whole file is on disk, parses as DICOM and names its study, series and instance.
   */
  async commit(f: IncomingFile, expect: Expect = {}): Promise<StoreResult> {
    await f.finish();
    let header: DicomHeader | undefined;
    const fail = async (outcome: Exclude<Outcome, "stored">, status: number, reason: string, more = {}) => {
      await f.discard();
      const subject = header ? subjectOf(header.dataset) : peekSubject(f.head());
      return { ok: false as const, outcome, status, reason, ...(subject ? { subject } : {}), ...more };
    };
    if (f.error) {
      // disk full, quota, I/O error: all are "out of resources" to the sender, who may retry later
      const e = f.error as NodeJS.ErrnoException;
      return fail("out-of-resources", STATUS.outOfResources, `storage: ${e.code ?? e.message}`);
    }
    try {
      const fh = await open(f.tmp, "r");
      try {
        await checkStructure(fh, (await fh.stat()).size);
      } finally {
        await fh.close();
      }
      const r = await readHeaderFile(f.tmp);
      if (r.kind === "not-dicom") return fail("invalid", STATUS.cannotUnderstand, "not a DICOM Part-10 instance");
      if (r.kind === "corrupt") return fail("invalid", STATUS.cannotUnderstand, "corrupt DICOM");
      header = r.header;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code) return fail("out-of-resources", STATUS.outOfResources, `storage: ${code}`);
      return fail("invalid", STATUS.cannotUnderstand, (e as Error).message);
    }
    const id = identify(header);
    const sopClassUID = typeof header.dataset.SOPClassUID === "string" ? header.dataset.SOPClassUID : undefined;
    if (typeof id === "string") return fail("invalid", STATUS.cannotUnderstand, id, { sopClassUID });
    const ids = { sopClassUID, sop: id.sop };
    if (expect.sopInstanceUID && expect.sopInstanceUID !== id.sop) {
      return fail("mismatch", STATUS.dataSetMismatch, "SOP Instance UID differs from the command's", ids);
    }
    if (expect.sopClassUID && sopClassUID && expect.sopClassUID !== sopClassUID) {
      return fail("mismatch", STATUS.dataSetMismatch, "SOP Class UID differs from the command's", ids);
    }
    if (expect.studyInstanceUID && expect.studyInstanceUID !== id.study) {
      return fail("mismatch", STATUS.dataSetMismatch, "instance belongs to another study than the request's", ids);
    }
    const rel = path.join(studyLocation(id.study), uidKey("series", id.series, 16), `${uidKey("sop", id.sop)}.dcm`);
    const dest = path.join(this.root, rel);
    try {
      await mkdir(path.dirname(dest), { recursive: true });
      await rename(f.tmp, dest);
      await syncDir(path.dirname(dest));
    } catch (e) {
      return fail(
        "out-of-resources",
        STATUS.outOfResources,
        `storage: ${(e as NodeJS.ErrnoException).code ?? "rename"}`,
      );
    }
    return {
      ok: true,
      subject: subjectOf(header.dataset) ?? { study: id.study },
      instance: {
        ...id,
        ...(sopClassUID ? { sopClassUID } : {}),
        file: rel,
        bytes: f.bytes,
        header: trimHeader(header),
      },
    };
  }
}

/** fsync of a folder makes a rename in it durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
