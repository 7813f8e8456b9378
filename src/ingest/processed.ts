// The processed-events bucket: which study events (by source + id) already became InferenceTasks.
//
// Idempotency must outlive the tasks: a task's deterministic name turns a redelivery into
// "already exists" only while the task exists, but a consumer that is re-created (deleted,
// renamed, JetStream lost its state) replays the studies stream from its start, long after TTLs
// removed those tasks. The ingest records an event here once all its tasks exist and before it
// acks, and checks here before creating anything. A crash between creating the tasks and
// recording them is covered by the task names (the tasks still exist when the redelivery comes).
//
// Kept in a KV-shaped stream (see streams.ts): one message per key on $KV.<bucket>.<key>, read
// back with a last-by-subject get, so no KV client library is needed and `nats kv` can read it.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";

export interface ProcessedRecord {
  /** Task names (namespace/name) that exist for the event; empty when no workflow matched. */
  tasks: string[];
  /** When it was recorded, ISO 8601. */
  at: string;
}

export class ProcessedEvents {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly stream: string;
  private readonly prefix: string;

  constructor(js: JetStreamClient, jsm: JetStreamManager, bucket: string) {
    this.js = js;
    this.jsm = jsm;
    this.stream = `KV_${bucket}`;
    this.prefix = `$KV.${bucket}.`;
  }

  /** The record for an event key (eventKey()), or undefined. Rejects when JetStream cannot answer. */
  async get(key: string): Promise<ProcessedRecord | undefined> {
    const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.prefix + key });
    if (!m) return undefined;
    // a key deleted or purged with `nats kv del` is not processed
    const op = m.header.get("KV-Operation");
    if (op === "DEL" || op === "PURGE") return undefined;
    try {
      return m.json<ProcessedRecord>();
    } catch {
      return { tasks: [], at: "" }; // written by someone else; the key alone says "processed"
    }
  }

  /** Records the event as processed; resolves once JetStream stored it. */
  async record(key: string, rec: ProcessedRecord): Promise<void> {
    await this.js.publish(this.prefix + key, JSON.stringify(rec), { expect: { streamName: this.stream } });
  }
}
