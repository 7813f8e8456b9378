// MONAI-form export requests served by `radflow gateway --monai-export <sink>`: MONAI Deploy's
// ExportRequestEvent on md.export.request.<sink> (what MONAI's Workflow Manager sends to the
// Informatics Gateway's DIMSE or DICOMweb export service, and what radflow's own operator sends
// with --monai) is answered as MONAI's export services answer it — an ExportCompleteEvent on
// md.export.complete — after the files were sent to the named destinations.
//
// The mapping (planned here, sent by src/export/send.ts):
//   files         paths relative to the study volume (MONAI's are relative to its bucket): a file
//                 is sent when it is DICOM Part-10, a folder's Part-10 files are all sent
//   destinations  DICOMDestinations in the gateway's namespace: the name as given, else its DNS
//                 label (PACS-ED → pacs-ed), as the MONAI import names them
//   answer        status Success (every file to every destination), Failure (none) or
//                 PartialFailure; file_statuses per requested file: Success, ConfigurationError
//                 (no such destination), DownloadError (not on the volume), UnsupportedDataType
//                 (not DICOM, or not a volume path), ServiceError (the destination refused or
//                 could not be reached after the retries); message: the request's error_messages
//                 and ours, which name destinations and files, never study data.
//
// One durable consumer shared by the replicas; a request is acked after its answer is published,
// so a crash in between sends again (the same files: the PACS keeps one copy) and answers once.
import { stat } from "node:fs/promises";
import path from "node:path";
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import type { DICOMDestination } from "../api/v1alpha1/dicomdestination.ts";
import { MonaiExportRequestEvent, SUBJECT } from "../api/v1alpha1/events.ts";
import { STREAM } from "../ingest/streams.ts";
import { logger } from "../log/logger.ts";
import { dnsLabel } from "../monai/convert.ts";
import { ExportContentError, type Instance, isPart10File, outputFiles, underRoot } from "./instances.ts";
import type { DestinationSource } from "./record.ts";
import { sendInstances } from "./send.ts";
import { backoff } from "./worker.ts";

const log = logger("export");

export const MONAI_EXPORT_COMPLETE_SUBJECT = "md.export.complete";

/**
 * MONAI's FileExportStatus values radflow answers with (checked against Monai.Deploy.Messaging's
 * Events/ExportStatus.cs: Success, ConfigurationError, UnsupportedDataType, ServiceError,
 * DownloadError, Unknown). MONAI's own services write these as numbers (no string converter on
 * file_statuses); its Newtonsoft reader takes the names as well, and names are what a person reads.
 */
export type MonaiFileStatus =
  | "Success"
  | "ConfigurationError"
  | "ServiceError"
  | "DownloadError"
  | "UnsupportedDataType";
/** MONAI's ExportStatus. */
export type MonaiExportStatus = "Success" | "Failure" | "PartialFailure" | "Unknown";

/** MONAI Deploy's ExportCompleteEvent as its JSON reads. */
export interface MonaiExportCompleteEvent {
  workflow_instance_id: string;
  export_task_id: string;
  status: MonaiExportStatus;
  message: string;
  file_statuses: Record<string, MonaiFileStatus>;
  /** None: a standard export (ExternalProcessing is MONAI's export to an external app) */
  export_request: "None";
}

// worst first: a file's status over several destinations is the worst of them
const RANK: MonaiFileStatus[] = [
  "ConfigurationError",
  "UnsupportedDataType",
  "DownloadError",
  "ServiceError",
  "Success",
];
const worse = (a: MonaiFileStatus, b: MonaiFileStatus) => (RANK.indexOf(a) <= RANK.indexOf(b) ? a : b);

/** The requested files on the volume: each one's Part-10 paths, or why it cannot be sent. */
export type ResolvedFile = { file: string; paths: string[] } | { file: string; status: MonaiFileStatus; why: string };

export async function resolveFiles(root: string, files: string[]): Promise<ResolvedFile[]> {
  const out: ResolvedFile[] = [];
  for (const file of files) {
    let full: string;
    try {
      full = underRoot(root, file);
      // the whole volume is never one export's file
      if (full === path.resolve(root)) throw new ExportContentError("UnsupportedStorage", "the volume's root");
    } catch (e) {
      if (e instanceof ExportContentError)
        out.push({ file, status: "UnsupportedDataType", why: "not a path on the study volume" });
      else throw e;
      continue;
    }
    const st = await stat(full).catch(() => undefined);
    if (!st) {
      out.push({ file, status: "DownloadError", why: "not on the study volume" });
      continue;
    }
    // a folder: its Part-10 files; a file: itself when it is Part-10 (the preamble says)
    const paths = st.isDirectory() ? await outputFiles(root, file) : (await isPart10File(full)) ? [full] : [];
    if (paths.length) out.push({ file, paths });
    else out.push({ file, status: "UnsupportedDataType", why: "no DICOM Part-10 file" });
  }
  return out;
}

/** What happened at one destination: found or not, and the send's outcome. */
export interface DestinationOutcome {
  requested: string;
  /** undefined: no DICOMDestination of that name (or its DNS label) */
  found?: string;
  /** every instance stored */
  ok?: boolean;
  error?: string;
}

/** The answer to a request, from what resolveFiles and the sends found (pure: unit-tested). */
export function exportComplete(
  req: Pick<MonaiExportRequestEvent, "workflow_instance_id" | "export_task_id" | "error_messages">,
  files: ResolvedFile[],
  destinations: DestinationOutcome[],
): MonaiExportCompleteEvent {
  const statuses: Record<string, MonaiFileStatus> = {};
  const messages = [...(req.error_messages ?? [])];
  for (const f of files) {
    if ("status" in f) {
      statuses[f.file] = f.status;
      messages.push(`${f.file}: ${f.why}`);
      continue;
    }
    let s: MonaiFileStatus = "Success";
    for (const d of destinations)
      s = worse(s, d.found === undefined ? "ConfigurationError" : d.ok ? "Success" : "ServiceError");
    // no destination at all: nothing was sent
    statuses[f.file] = destinations.length ? s : "ConfigurationError";
  }
  for (const d of destinations) {
    if (d.found === undefined) messages.push(`destination ${d.requested}: no DICOMDestination of that name`);
    else if (!d.ok) messages.push(`destination ${d.requested}: ${d.error ?? "not stored"}`);
  }
  if (!destinations.length) messages.push("no destination named");
  const values = Object.values(statuses);
  const sent = values.filter((v) => v === "Success").length;
  return {
    workflow_instance_id: req.workflow_instance_id,
    export_task_id: req.export_task_id,
    status: values.length && sent === values.length ? "Success" : sent === 0 ? "Failure" : "PartialFailure",
    message: messages.join("\n"),
    file_statuses: statuses,
    export_request: "None",
  };
}

/** The DICOMDestination a MONAI destination name stands for: the name itself, else its DNS label. */
export async function findDestination(
  source: Pick<DestinationSource, "get">,
  namespace: string,
  name: string,
): Promise<DICOMDestination | undefined> {
  const exact = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) ? await source.get(namespace, name) : undefined;
  if (exact) return exact;
  const label = dnsLabel(name, 253);
  return label && label !== name ? source.get(namespace, label) : undefined;
}

export interface MonaiExportOptions {
  nc: NatsConnection;
  storageDir: string;
  destinations: Pick<DestinationSource, "get" | "credentials">;
  /** md.export.request.<sink> for each */
  sinks: string[];
  /** where the destinations are looked up */
  namespace: string;
  /** attempts of a send that could not reach a destination before it is a ServiceError (5) */
  attempts?: number;
  backoffMs?: number;
  consumer?: string;
}

/** Handles one request: sends, then says what to answer (a send that throws is retried by the caller). */
export async function performMonaiExport(
  o: Pick<MonaiExportOptions, "storageDir" | "destinations" | "namespace">,
  req: MonaiExportRequestEvent,
  lastAttempt: boolean,
): Promise<MonaiExportCompleteEvent> {
  const files = await resolveFiles(o.storageDir, req.files);
  const instances: Instance[] = files.flatMap((f) =>
    "paths" in f ? f.paths.map((p) => ({ kind: "file" as const, path: p })) : [],
  );
  const outcomes: DestinationOutcome[] = [];
  for (const requested of new Set(req.destinations)) {
    const dest = await findDestination(o.destinations, o.namespace, requested);
    if (!dest) {
      outcomes.push({ requested });
      continue;
    }
    const found = dest.metadata.name as string;
    if (!instances.length) {
      outcomes.push({ requested, found, ok: false, error: "nothing to send" });
      continue;
    }
    try {
      const res = await sendInstances(dest.spec, instances, await o.destinations.credentials(dest));
      outcomes.push({
        requested,
        found,
        ok: res.failed === 0,
        ...(res.failed ? { error: `${res.failed} of ${instances.length} refused (${res.detail ?? "no detail"})` } : {}),
      });
    } catch (e) {
      if (!lastAttempt) throw e;
      outcomes.push({ requested, found, ok: false, error: (e as Error).message.slice(0, 500) });
    }
  }
  return exportComplete(req, files, outcomes);
}

export interface MonaiExportWorker {
  stop(): Promise<void>;
}

export async function startMonaiExportWorker(o: MonaiExportOptions): Promise<MonaiExportWorker> {
  const attempts = o.attempts ?? 5;
  const baseMs = o.backoffMs ?? 10_000;
  const durable = o.consumer ?? "radflow-monai-export";
  const js = jetstream(o.nc);
  const jsm = await jetstreamManager(o.nc);
  const subjects = o.sinks.map((s) => SUBJECT.monaiExportRequest(s));
  const cfg = {
    durable_name: durable,
    description: "radflow gateway: MONAI ExportRequestEvents",
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subjects: subjects,
    ack_wait: nanos(120_000),
    max_deliver: -1,
  };
  // RADFLOW_RESULTS holds md.export.request.> when the operator runs with --monai: wait for it
  for (let attempt = 0; ; attempt++) {
    try {
      await jsm.consumers.info(STREAM.results, durable);
      await jsm.consumers.update(STREAM.results, durable, { filter_subjects: subjects });
      break;
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound) {
        try {
          await jsm.consumers.add(STREAM.results, cfg);
          break;
        } catch (err) {
          if (/already in use|exists/i.test((err as Error).message)) continue;
          if (attempt % 12 === 0)
            log.warn(
              { stream: STREAM.results, subjects, err: (err as Error).message },
              "MONAI export requests: waiting for the results stream to carry md.export.request.> (the operator's --monai)",
            );
        }
      } else if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound)) throw e;
      await new Promise((r) => setTimeout(r, 5_000));
    }
  }
  const consumer = await js.consumers.get(STREAM.results, durable);
  const messages = await consumer.consume({ max_messages: 4 });

  const answer = async (ev: MonaiExportCompleteEvent, id: string) => {
    const body = JSON.stringify(ev);
    // into JetStream when a stream takes the subject (dropped as a duplicate on a redelivery), else core NATS
    await js
      .publish(MONAI_EXPORT_COMPLETE_SUBJECT, body, { msgID: `export-complete-${id}` })
      .catch(() => o.nc.publish(MONAI_EXPORT_COMPLETE_SUBJECT, body));
  };

  const handle = async (m: JsMsg): Promise<void> => {
    const parsed = MonaiExportRequestEvent.safeParse(
      (() => {
        try {
          return m.json();
        } catch {
          return undefined;
        }
      })(),
    );
    if (!parsed.success) {
      log.warn({ seq: m.seq, subject: m.subject }, "not a MONAI ExportRequestEvent: dropped");
      m.term();
      return;
    }
    const req = parsed.data;
    const attempt = m.info.deliveryCount;
    const keepAlive = setInterval(() => m.working(), 30_000);
    try {
      const done = await performMonaiExport(o, req, attempt >= attempts);
      await answer(done, req.message_id ?? `${req.workflow_instance_id}-${req.export_task_id}`);
      log.info(
        { exportTask: req.export_task_id, status: done.status, files: req.files.length, attempt },
        "MONAI export answered",
      );
      m.ack();
    } catch (e) {
      const delay = backoff(attempt, baseMs);
      log.warn(
        { exportTask: req.export_task_id, attempt, delay, err: (e as Error).message },
        "MONAI export attempt failed",
      );
      m.nak(delay);
    } finally {
      clearInterval(keepAlive);
    }
  };

  const inflight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const m of messages) {
      const p = handle(m).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 2) await Promise.race(inflight);
    }
  })();
  log.info({ subjects }, "serving MONAI export requests");
  return {
    async stop() {
      await messages.close();
      await loop.catch(() => undefined);
      await Promise.allSettled([...inflight]);
    },
  };
}
