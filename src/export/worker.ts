// The export worker of `radflow gateway`: a durable pull consumer on radflow.task.export (in
// RADFLOW_RESULTS) shared by every gateway replica, so each request is handled by one of them.
// For each request: look up the destination, gather the instances (the model's files, or the SR
// radflow builds), send, and record the outcome on the task — acking only after the record is
// written. A failed attempt is recorded as Pending (attempt n, the error) and the message is
// nak'ed with a growing delay; the last allowed attempt records Failed. A crash between send and
// record redelivers the request: the same files (and the same SR, whose UIDs are derived from
// the task and step) are sent again, and the PACS replaces or ignores what it already holds.
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import type { DICOMDestination } from "../api/v1alpha1/dicomdestination.ts";
import type { ExportStatus } from "../api/v1alpha1/inferencetask.ts";
import type { AuditSink } from "../audit/facts.ts";
import { STREAM } from "../ingest/streams.ts";
import { logger } from "../log/logger.ts";
import { type ExportSubject, exportAuditFact, exportSubject } from "./audit.ts";
import { ExportContentError, instancesFor } from "./instances.ts";
import type { DestinationSource, ExportRecorder } from "./record.ts";
import { EXPORT_SUBJECT, ExportRequestEvent } from "./request.ts";
import { checkDestination, SendError, sendInstances } from "./send.ts";

const log = logger("export");

/** The gateway's export flags (src/cmd/gateway.ts). */
export interface ExportSettings {
  kubeconfig?: string;
  attempts: number;
  backoffMs: number;
}

export interface ExportWorkerOptions {
  nc: NatsConnection;
  storageDir: string;
  destinations: DestinationSource;
  recorder: ExportRecorder;
  /** attempts before an export is Failed (5) */
  attempts?: number;
  /** delay after the first failed attempt, doubling up to 5 min (10 s) */
  backoffMs?: number;
  /** durable consumer name (radflow-export) */
  consumer?: string;
  /** how often destinations are checked, at most (their own checkIntervalSeconds applies); 0 = never */
  checkEveryMs?: number;
  concurrency?: number;
  /** PS3.15 Export records of every Sent / Failed outcome (src/export/audit.ts); none when absent */
  audit?: AuditSink;
}

export interface ExportWorker {
  stop(): Promise<void>;
}

/** Delay before attempt n+1 after n failed ones. */
export function backoff(n: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, n - 1), 300_000);
}

export type Outcome = Omit<ExportStatus, "step" | "destination" | "lastAttemptTime" | "attempts">;

/** What an attempt learnt on the way, for its audit record (filled by performExport). */
export interface ExportSeen {
  destination?: DICOMDestination;
  subject?: ExportSubject;
  warnings?: number;
}

const CONTENT_REASON = { study: "Study", sr: "StructuredReport", files: "ModelFiles" } as const;

/** Handles one request and says what to record; throws only on a transient, retryable error. */
export async function performExport(
  o: Pick<ExportWorkerOptions, "storageDir" | "destinations">,
  ev: ExportRequestEvent,
  seen: ExportSeen = {},
): Promise<Outcome> {
  const r = ev.data;
  if (r.decision !== "send")
    return {
      phase: r.decision,
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.message ? { message: r.message } : {}),
    };
  const dest = await o.destinations.get(r.task.namespace, r.destination);
  if (dest) seen.destination = dest;
  if (!dest)
    return {
      phase: "Failed",
      reason: "DestinationNotFound",
      message: `no DICOMDestination ${r.destination} in namespace ${r.task.namespace}`,
    };
  let instances: Awaited<ReturnType<typeof instancesFor>>;
  try {
    instances = await instancesFor(o.storageDir, r);
  } catch (e) {
    if (e instanceof ExportContentError) return { phase: "Failed", reason: e.reason, message: e.message };
    throw e;
  }
  seen.subject = await exportSubject(instances);
  const creds = await o.destinations.credentials(dest);
  const res = await sendInstances(dest.spec, instances, creds);
  if (res.failed > 0)
    throw new SendError(`${res.failed} of ${instances.length} instances refused (${res.detail ?? "no detail"})`);
  if (res.warnings) seen.warnings = res.warnings;
  return {
    phase: "Sent",
    reason:
      CONTENT_REASON[r.content === "study" ? "study" : instances.some((i) => i.kind === "bytes") ? "sr" : "files"],
    message: `${res.sent} instance(s) stored by ${dest.spec.dimse ? "C-STORE" : "STOW-RS"}`,
    instances: res.sent,
  };
}

export async function startExportWorker(o: ExportWorkerOptions): Promise<ExportWorker> {
  const attempts = o.attempts ?? 5;
  const baseMs = o.backoffMs ?? 10_000;
  const durable = o.consumer ?? "radflow-export";
  const js: JetStreamClient = jetstream(o.nc);
  const jsm = await jetstreamManager(o.nc);
  const cfg = {
    durable_name: durable,
    description: "radflow gateway: DICOM exports of task results",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: EXPORT_SUBJECT,
    ack_wait: nanos(120_000),
    max_deliver: -1, // the worker counts attempts itself and records Failed
  };
  // the operator makes RADFLOW_RESULTS; a gateway that starts first waits for it
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.consumers.info(STREAM.results, durable);
      break;
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound) {
        await jsm.consumers.add(STREAM.results, cfg).catch((err: Error) => {
          // another replica made it first
          if (!/already in use|exists/i.test(err.message)) throw err;
        });
        break;
      }
      if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound)) throw e;
      if (attempt % 12 === 0)
        log.warn({ stream: STREAM.results }, "waiting for the results stream (the operator makes it)");
      await new Promise((r) => setTimeout(r, 5_000));
    }
  }
  const consumer = await js.consumers.get(STREAM.results, durable);
  const messages = await consumer.consume({ max_messages: (o.concurrency ?? 4) * 2 });
  const inflight = new Set<Promise<void>>();

  const handle = async (m: JsMsg): Promise<void> => {
    let ev: ExportRequestEvent;
    try {
      ev = ExportRequestEvent.parse(m.json());
    } catch {
      log.warn({ seq: m.seq }, "not an export request: dropped");
      m.term();
      return;
    }
    const r = ev.data;
    const attempt = m.info.deliveryCount;
    const keepAlive = setInterval(() => m.working(), 30_000);
    const entry = (out: Outcome): ExportStatus => ({
      step: r.step,
      destination: r.destination,
      ...out,
      attempts: r.decision === "send" ? attempt : 0,
      lastAttemptTime: new Date().toISOString(),
    });
    try {
      let out: Outcome;
      const seen: ExportSeen = {};
      try {
        out = await performExport(o, ev, seen);
      } catch (e) {
        const message = (e as Error).message.slice(0, 900);
        if (attempt < attempts) {
          const delay = backoff(attempt, baseMs);
          await o.recorder.record(r.task, entry({ phase: "Pending", reason: "Retrying", message }));
          log.warn(
            { task: r.task.name, step: r.step, destination: r.destination, attempt, delay, err: message },
            "export attempt failed",
          );
          m.nak(delay);
          return;
        }
        const reason = e instanceof SendError ? e.reason : "SendFailed";
        out = { phase: "Failed", reason, message: `after ${attempt} attempts: ${message}` };
      }
      const final = entry(out);
      const recorded = await o.recorder.record(r.task, final);
      // audited before the ack: a crash in between redelivers the request, and the record's
      // deterministic id keeps the repeat out of the audit stream
      const fact = o.audit && exportAuditFact(r, final, { ...seen, time: new Date(final.lastAttemptTime as string) });
      if (fact) await o.audit?.record(fact);
      log.info(
        { task: r.task.name, step: r.step, destination: r.destination, phase: out.phase, reason: out.reason, recorded },
        "export finished",
      );
      m.ack();
    } catch (e) {
      // the record could not be written (API server down): try the whole request again later
      log.error({ task: r.task.name, err: (e as Error).message }, "export outcome not recorded; will retry");
      m.nak(backoff(attempt, baseMs));
    } finally {
      clearInterval(keepAlive);
    }
  };

  const loop = (async () => {
    for await (const m of messages) {
      const p = handle(m).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= (o.concurrency ?? 4)) await Promise.race(inflight);
    }
  })();

  // destination checks: each destination on its own interval, checked by whichever replica runs
  const lastCheck = new Map<string, number>();
  let checking = false;
  const checkAll = async () => {
    if (checking) return;
    checking = true;
    try {
      for (const d of await o.destinations.list()) {
        const every = (d.spec.checkIntervalSeconds ?? 300) * 1000;
        const key = `${d.metadata.namespace}/${d.metadata.name}/${d.metadata.generation}`;
        if (every === 0 || Date.now() - (lastCheck.get(key) ?? 0) < every) continue;
        lastCheck.set(key, Date.now());
        let problem: string | undefined;
        try {
          problem = await checkDestination(d.spec, await o.destinations.credentials(d));
        } catch (e) {
          problem = (e as Error).message; // e.g. the TLS CA's Secret is missing
        }
        await o.destinations.setReachable(d, problem, new Date());
      }
    } catch (e) {
      log.warn({ err: (e as Error).message }, "destination check failed");
    } finally {
      checking = false;
    }
  };
  const checkEvery = o.checkEveryMs ?? 10_000;
  const timer = checkEvery > 0 ? setInterval(() => void checkAll(), checkEvery) : undefined;
  if (timer) void checkAll();
  log.info({ consumer: durable, attempts, backoffMs: baseMs }, "export worker started");

  return {
    async stop() {
      if (timer) clearInterval(timer);
      await messages.close();
      await loop.catch(() => {});
      await Promise.allSettled([...inflight]);
    },
  };
}
