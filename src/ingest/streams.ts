// The JetStream streams radflow reads and writes (docs/ARCHITECTURE.md §4), created or brought up to
// date at start. Safe to run from every replica at once: add, and on "already in use" update.
// MONAI compatibility puts MONAI's subjects into the same streams (md.workflow.request next to
// radflow.study.>, md.export.request.> next to radflow.task.>), so one consumer reads both
// study formats and one stream holds every result.
//
// Next to them, the processed-events bucket (a JetStream KV bucket, made here as the stream KV
// buckets are made of so that `nats kv` can read it): the identities of study events already
// turned into tasks, kept as long as the studies stream keeps events. A consumer that is
// re-created replays the stream from its start; the bucket is what stops it from creating tasks
// again whose TTL has long removed them.
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

const STREAM_NAME_IN_USE = 10058; // JetStream err_code: "stream name already in use"

export const STREAM = {
  studies: "RADFLOW_STUDIES",
  results: "RADFLOW_RESULTS",
  dlq: "RADFLOW_DLQ",
} as const;

/** The KV bucket of processed study-event identities (stream KV_<bucket>). */
export const PROCESSED_BUCKET = "RADFLOW_PROCESSED";

export interface StreamOptions {
  /** Add MONAI Deploy's subjects (md.workflow.request, md.export.request.>). */
  monai?: boolean;
  /** How long events are kept; default 7 days (DLQ: 30 days). */
  maxAgeSeconds?: number;
  dlqMaxAgeSeconds?: number;
  /** Stream replicas in a NATS cluster; default 1. */
  replicas?: number;
  /** Window in which a repeated Nats-Msg-Id is dropped; default 10 minutes. */
  duplicateWindowSeconds?: number;
  /** file (default) or memory. */
  storage?: "file" | "memory";
}

const DAY = 86_400;

/** The desired configuration of each stream (pure). */
export function streamConfigs(o: StreamOptions = {}): Partial<StreamConfig>[] {
  const replicas = o.replicas ?? 1;
  const maxAge = o.maxAgeSeconds ?? 7 * DAY;
  const dlqMaxAge = o.dlqMaxAgeSeconds ?? 30 * DAY;
  const dup = (age: number) => Math.min(o.duplicateWindowSeconds ?? 600, age);
  const base = {
    retention: RetentionPolicy.Limits,
    storage: o.storage === "memory" ? StorageType.Memory : StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
  };
  return [
    {
      ...base,
      name: STREAM.studies,
      description: "Study events from gateways (radflow send, MONAI Deploy, others).",
      subjects: ["radflow.study.>", ...(o.monai ? ["md.workflow.request"] : [])],
      max_age: nanos(maxAge * 1000),
      duplicate_window: nanos(dup(maxAge) * 1000),
    },
    {
      ...base,
      name: STREAM.results,
      description: "Results of finished InferenceTasks (and MONAI export requests).",
      subjects: ["radflow.task.>", ...(o.monai ? ["md.export.request.>"] : [])],
      max_age: nanos(maxAge * 1000),
      duplicate_window: nanos(dup(maxAge) * 1000),
    },
    {
      ...base,
      name: STREAM.dlq,
      description: "Study events radflow could not use, with the reason.",
      subjects: ["radflow.dlq.>"],
      max_age: nanos(dlqMaxAge * 1000),
      duplicate_window: nanos(dup(dlqMaxAge) * 1000),
    },
  ];
}

/**
 * The processed-events bucket as a KV stream (pure): one value per key (the latest), keys expire
 * with the studies stream's max age, so a replay finds every event the stream can still deliver.
 */
export function processedBucketConfig(o: StreamOptions = {}, bucket = PROCESSED_BUCKET): Partial<StreamConfig> {
  const maxAge = o.maxAgeSeconds ?? 7 * DAY;
  return {
    name: `KV_${bucket}`,
    description: "radflow: identities of study events already turned into InferenceTasks.",
    subjects: [`$KV.${bucket}.>`],
    retention: RetentionPolicy.Limits,
    storage: o.storage === "memory" ? StorageType.Memory : StorageType.File,
    discard: DiscardPolicy.New,
    num_replicas: o.replicas ?? 1,
    max_msgs_per_subject: 1,
    max_age: nanos(maxAge * 1000),
    duplicate_window: nanos(Math.min(120, maxAge) * 1000),
    allow_rollup_hdrs: true,
    deny_delete: true,
    deny_purge: false,
    allow_direct: true,
  };
}

/** Creates or updates the processed-events bucket. */
export async function ensureProcessedBucket(
  jsm: JetStreamManager,
  o: StreamOptions = {},
  bucket = PROCESSED_BUCKET,
): Promise<StreamInfo> {
  return ensureStream(jsm, processedBucketConfig(o, bucket) as StreamConfig);
}

/** Creates each stream, or updates it to the desired configuration. Returns the stream infos. */
export async function ensureStreams(jsm: JetStreamManager, o: StreamOptions = {}): Promise<StreamInfo[]> {
  const out: StreamInfo[] = [];
  for (const cfg of streamConfigs(o)) out.push(await ensureStream(jsm, cfg as StreamConfig));
  return out;
}

async function ensureStream(jsm: JetStreamManager, cfg: StreamConfig, retry = true): Promise<StreamInfo> {
  let existing: StreamInfo | undefined;
  try {
    existing = await jsm.streams.info(cfg.name);
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound))
      throw streamError(cfg.name, "read", e);
  }
  try {
    if (!existing) return await jsm.streams.add(cfg);
    if (sameConfig(existing.config, cfg)) return existing;
    // storage and retention cannot change on a live stream; keep what it has
    const { storage: _s, retention: _r, ...updatable } = cfg;
    return await jsm.streams.update(cfg.name, updatable);
  } catch (e) {
    // another replica created it, with other settings, between our info and add: update it
    if (!existing && retry && e instanceof JetStreamApiError && e.code === STREAM_NAME_IN_USE) {
      return ensureStream(jsm, cfg, false);
    }
    throw streamError(cfg.name, existing ? "update" : "create", e);
  }
}

function sameConfig(a: StreamConfig, b: StreamConfig): boolean {
  return (
    [...(a.subjects ?? [])].sort().join(" ") === [...(b.subjects ?? [])].sort().join(" ") &&
    a.max_age === b.max_age &&
    a.duplicate_window === b.duplicate_window &&
    a.num_replicas === b.num_replicas &&
    a.description === b.description
  );
}

function streamError(name: string, op: string, e: unknown): Error {
  return new Error(`JetStream stream ${name}: cannot ${op}: ${(e as Error).message}`, { cause: e });
}
