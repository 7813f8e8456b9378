// The processed-events bucket: which InferenceTasks study events have already made.
//
// Idempotency must outlive the tasks: a task's deterministic name (workflow uid + event source +
// event id) turns a redelivery into "already exists" only while the task exists, but a consumer
// that is re-created (deleted, renamed, JetStream lost its state) replays the studies stream from
// its start, long after TTLs removed those tasks. The ingest records each task here once it
// exists and before it acks, and checks here before creating one. A crash between creating a
// task and recording it is covered by the name (the task still exists when the redelivery comes).
//
// One key per task, `<namespace>.<task name>`, not one per event: installations that share one
// NATS (each with its own namespaces and workflows) never see each other's keys, and an event
// that was dead-lettered for one workflow and replayed later still makes only the missing task.
// Names carry no PHI, so `nats kv get RADFLOW_PROCESSED <namespace>.<task>` is safe to run, and
// `nats kv del` of a key lets the same event make that task again.
//
// Kept in a KV-shaped stream (see streams.ts): one message per key on $KV.<bucket>.<key>, read
// back with a last-by-subject get, so no KV client library is needed and `nats kv` can read it.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";

export interface ProcessedRecord {
  /** The study event's key (eventKey()): which event made the task. */
  event: string;
  /** When it was recorded, ISO 8601. */
  at: string;
}

export class ProcessedTasks {
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

  /** The KV key of a task: namespace and name are DNS labels, so both are valid key tokens. */
  static key(namespace: string, name: string): string {
    return `${namespace}.${name}`;
  }

  /** Whether the task was made before. Rejects when JetStream cannot answer (the caller retries). */
  async has(key: string): Promise<boolean> {
    const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: this.prefix + key });
    if (!m) return false;
    // a key deleted or purged with `nats kv del/purge` is not processed
    const op = m.header?.get("KV-Operation");
    return op !== "DEL" && op !== "PURGE";
  }

  /** Records the task as made; resolves once JetStream stored it. */
  async record(key: string, rec: ProcessedRecord): Promise<void> {
    await this.js.publish(this.prefix + key, JSON.stringify(rec), { expect: { streamName: this.stream } });
  }
}
