// The durable per-study journal that makes study assembly crash-safe. One append-only JSON-lines
// file per study under <root>/.radflow-gateway/journal/<study key>.jsonl, next to the files it
// describes (same volume, so it survives what they survive):
//
//   {"t":"i", ...}          an instance was stored; written and fsynced BEFORE the sender hears
//                           "success", so every acknowledged instance is in the journal
//   {"t":"p","rev":r,"n":k} about to publish revision r, made of the first k instance records
//   {"t":"d","rev":r}       JetStream acknowledged revision r
//
// A restarted gateway replays the journals: a "p" without its "d" is published again with the
// same content and the same Nats-Msg-Id (JetStream drops the copy; the operator de-duplicates by
// event id), and instances after the last "p" are still waiting for their study event. A last
// line cut by a crash was never fsynced, so never acknowledged: it is ignored.
import { type FileHandle, mkdir, open, readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { DicomHeader } from "../dicom/header.ts";

export interface InstanceRecord {
  t: "i";
  /** When it was stored (ms since the epoch). */
  at: number;
  study: string;
  series: string;
  sop: string;
  file: string;
  bytes: number;
  callingAETitle?: string;
  calledAETitle?: string;
  header: DicomHeader;
}
export interface IntentRecord {
  t: "p";
  rev: number;
  n: number;
  at: number;
}
export interface DoneRecord {
  t: "d";
  rev: number;
}
export type JournalRecord = InstanceRecord | IntentRecord | DoneRecord;

export class Journal {
  readonly dir: string;
  private readonly handles = new Map<string, FileHandle>();
  /** Appends to one study's journal run one after another. */
  private readonly tails = new Map<string, Promise<void>>();

  constructor(root: string) {
    this.dir = path.join(root, ".radflow-gateway", "journal");
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  private file(key: string): string {
    return path.join(this.dir, `${key}.jsonl`);
  }

  /** Appends records and fsyncs; resolves once they are durable. */
  append(key: string, records: JournalRecord[]): Promise<void> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(async () => {
      let fh = this.handles.get(key);
      if (!fh) {
        fh = await open(this.file(key), "a+", 0o640);
        this.handles.set(key, fh);
      }
      // Replicas on one volume append to the same file (O_APPEND: each write lands whole at the
      // end). A line another process left torn by its crash must not swallow this record, so
      // every write starts on a fresh line; the empty lines this leaves are skipped when read.
      await fh.write(`\n${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
      await fh.datasync();
    });
    // a failed append must not poison later ones; the caller sees this one's error
    this.tails.set(
      key,
      next.catch(() => {}),
    );
    return next;
  }

  /**
   * An exclusive lock on a study's journal across processes (replicas share the volume): a lock
   * file created with O_EXCL. It is held only to read the journal and append an intent; one left
   * by a process that died is taken over once it is older than staleMs.
   */
  async lock(key: string, staleMs = 30_000, timeoutMs = 20_000): Promise<() => Promise<void>> {
    const file = path.join(this.dir, `${key}.lock`);
    const end = Date.now() + timeoutMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      try {
        const fh = await open(file, "wx", 0o640);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return () => rm(file, { force: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const st = await stat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > staleMs) await rm(file, { force: true });
      if (Date.now() > end) throw new Error("study journal lock: timed out");
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  /** The study's records, or [] when it has no journal. */
  async read(key: string): Promise<JournalRecord[]> {
    let text: string;
    try {
      text = await readFile(this.file(key), "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    return parseJournal(text);
  }

  /** Keys of every journal on disk. */
  async keys(): Promise<string[]> {
    return (await readdir(this.dir)).filter((f) => f.endsWith(".jsonl")).map((f) => f.slice(0, -6));
  }

  /** Closes a study's file (it is reopened on the next append). */
  async close(key: string): Promise<void> {
    await this.tails.get(key);
    this.tails.delete(key);
    const fh = this.handles.get(key);
    this.handles.delete(key);
    await fh?.close().catch(() => {});
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.handles.keys()].map((k) => this.close(k)));
  }
}

/** Parses journal text; a line that does not parse (a write cut by a crash) is skipped. */
export function parseJournal(text: string): JournalRecord[] {
  const out: JournalRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      const r = JSON.parse(line) as JournalRecord;
      if (r && (r.t === "i" || r.t === "p" || r.t === "d")) out.push(r);
    } catch {
      // a torn write: never fsynced, so never acknowledged
    }
  }
  return out;
}

/** What a study's journal says: its instances, what was published, what is still to publish. */
export interface Replayed {
  instances: InstanceRecord[];
  /** Instance records covered by the last intent (published or being published). */
  covered: number;
  /** The next revision number. */
  nextRev: number;
  /** An intent JetStream never acknowledged: publish it again, as it was. */
  unfinished?: IntentRecord;
}

export function replay(records: readonly JournalRecord[]): Replayed {
  const instances: InstanceRecord[] = [];
  let last: IntentRecord | undefined;
  const done = new Set<number>();
  for (const r of records) {
    if (r.t === "i") instances.push(r);
    else if (r.t === "p") last = r;
    else done.add(r.rev);
  }
  return {
    instances,
    covered: last?.n ?? 0,
    nextRev: last ? last.rev + 1 : 0,
    ...(last && !done.has(last.rev) ? { unfinished: last } : {}),
  };
}
