// Event payloads on NATS JetStream (docs/ARCHITECTURE.md §4): the native CloudEvents 1.0 study and
// results events, MONAI Deploy's WorkflowRequestEvent and ExportRequestEvent as MONAI sends them,
// and the dead-letter record. `toStudyEvent` turns either study format into the one internal
// StudyEvent that routing works on.
//
// Event identity: a native event is identified by `source` + `id`, as CloudEvents 1.0 defines
// (ids are only unique per source: two gateways may both send id "1"). For MONAI the id is
// `payload_id` under one fixed source: it names one stored payload (the files of one study
// received together) and is what a MONAI gateway resends on retry, while `correlation_id` names
// the DICOM association or request and is shared by every payload that arrived through it, so it
// cannot tell two studies apart. `eventKey` folds the pair into one fixed-length key (task names,
// the processed-events bucket, audit ids, Nats-Msg-Id).
//
// Size and nesting are bounded before JSON.parse: a 200k-level event parses, but the code after
// it (validation, JSON.stringify of the task) recurses and dies with a stack overflow.
import { createHash } from "node:crypto";
import { z } from "zod";
import { AETitle, DicomUID, Priority } from "./common.ts";
import { TaskPhase } from "./inferencetask.ts";
import { type SeriesSummary, Study } from "./study.ts";

export const STUDY_RECEIVED = "io.radflow.study.received";
export const TASK_SUCCEEDED = "io.radflow.task.succeeded";
export const TASK_FAILED = "io.radflow.task.failed";

export const SUBJECT = {
  studyReceived: "radflow.study.received",
  taskSucceeded: "radflow.task.succeeded",
  taskFailed: "radflow.task.failed",
  dlqStudy: "radflow.dlq.study",
  monaiWorkflowRequest: "md.workflow.request",
  monaiExportRequest: (plugin: string) => `md.export.request.${plugin}`,
} as const;

/** RFC 3339 with a zone, as CloudEvents requires. */
const Timestamp = z.iso.datetime({ offset: true });
/** MONAI's .NET DateTime: 7 fractional digits, and no zone when it was not UTC-kinded (read as UTC). */
const MonaiTimestamp = z.iso.datetime({ offset: true, local: true });

/** Normalises a timestamp to ISO 8601 UTC with milliseconds (what the API server's date-time accepts). */
export function normalizeTime(t: string): string {
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/i.test(t) ? t : `${t}Z`;
  const ms = Date.parse(zoned);
  if (Number.isNaN(ms)) throw new Error("not a timestamp");
  return new Date(ms).toISOString();
}

// CloudEvents 1.0 context attributes (structured mode). Extension attributes are allowed.
const CloudEventContext = z.looseObject({
  specversion: z.literal("1.0").describe("CloudEvents version; always 1.0."),
  id: z.string().min(1).max(256).describe("Id of the event, unique per source; source + id is the idempotency key."),
  source: z
    .string()
    .min(1)
    .max(1024)
    .describe("URI-reference of the producer, e.g. /gateways/ct-east; part of the event's identity."),
  type: z.string().min(1).max(256),
  time: Timestamp.optional().describe("When the event happened (RFC 3339)."),
  datacontenttype: z
    .string()
    .regex(/^application\/json(\s*;.*)?$/i, "data must be application/json")
    .optional(),
  dataschema: z.string().max(1024).optional(),
  subject: z.string().max(1024).optional(),
});

export const StudyReceivedEvent = CloudEventContext.extend({
  type: z.literal(STUDY_RECEIVED),
  data: Study,
}).describe("A study arrived at a gateway: CloudEvents 1.0 structured JSON on radflow.study.received.");
export type StudyReceivedEvent = z.infer<typeof StudyReceivedEvent>;

// --- MONAI Deploy -----------------------------------------------------------------------------

/** MONAI's DataService enum, as integers on the wire. */
export const MONAI_DATA_SERVICE = { Unknown: 0, DIMSE: 1, DicomWeb: 2, FHIR: 3, HL7: 4, ACR: 5 } as const;

/**
 * MONAI's ArtifactType enum: position i on the wire is the DICOM modality (or kind) named here,
 * so CT is 10 and MR is 30. Kept as data so it can be checked against MONAI's list at a glance.
 */
export const MONAI_ARTIFACT_TYPES: readonly string[] = [
  "Unset",
  "Folder",
  "HL7",
  ...["AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CR", "CT", "DG", "DOC", "DX", "ECG", "EPS", "ES", "FID", "GM"],
  ...["HC", "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG", "MR", "NM", "OAM", "OCT", "OP"],
  ...["OPM", "OPT", "OPV", "OSS", "OT", "PLAN", "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE", "RTIMAGE"],
  ...["RTPLAN", "RTRECORD", "RTSTRUCT", "RWV", "SEG", "SM", "SMR", "SR", "SRF", "STAIN", "TG", "US", "VA", "XA"],
  "XC",
];

/** The DICOM modality an artifactType stands for, or undefined (Unset, Folder, HL7, unknown numbers). */
export function monaiModality(artifactType: number | undefined): string | undefined {
  if (artifactType === undefined || artifactType < 3) return undefined;
  return MONAI_ARTIFACT_TYPES[artifactType];
}
/** The artifactType number of a modality (10 for CT), or 0 (Unset). */
export function monaiArtifactType(modality: string | undefined): number {
  if (!modality) return 0;
  const i = MONAI_ARTIFACT_TYPES.indexOf(modality.toUpperCase());
  return i < 3 ? 0 : i;
}

export const MonaiDataOrigin = z.looseObject({
  dataService: z.number().int().min(0).default(0).describe("1 DIMSE, 2 DICOMweb, 3 FHIR, 4 HL7, 5 ACR."),
  source: z.string().describe("DIMSE: the calling AE title; otherwise a host or transaction id."),
  destination: z.string().nullish().describe("DIMSE: the AE title that received the data."),
  artifactType: z.number().int().min(0).optional().describe("MONAI ArtifactType: 10 CT, 30 MR, …"),
});
export type MonaiDataOrigin = z.infer<typeof MonaiDataOrigin>;

export const MonaiBlockStorageInfo = z.looseObject({
  path: z.string().min(1).max(4096),
  metadata: z.string().max(4096).nullish(),
});

/** MONAI's WorkflowRequestEvent (md.workflow.request): the current form with `trigger`, or the older one with AE titles. */
export const MonaiWorkflowRequestEvent = z.looseObject({
  payload_id: z.guid().describe("ID of the stored payload; the payload's root path in the bucket."),
  workflows: z.array(z.string().max(256)).nullish().describe("Workflows to run; empty means route by rules."),
  file_count: z.number().int().min(0),
  correlation_id: z.string().min(1).max(256),
  bucket: z.string().min(1).max(256),
  trigger: MonaiDataOrigin.nullish(),
  calling_aetitle: z.string().max(64).nullish(),
  called_aetitle: z.string().max(64).nullish(),
  data_origins: z.array(MonaiDataOrigin).nullish(),
  timestamp: MonaiTimestamp,
  workflow_instance_id: z.string().nullish(),
  task_id: z.string().nullish(),
  payload: z.array(MonaiBlockStorageInfo).min(1, "at least one file is required"),
});
export type MonaiWorkflowRequestEvent = z.infer<typeof MonaiWorkflowRequestEvent>;

/** MONAI's ExportRequestEvent (md.export.request.<plugin>), as its export services read it. */
export const MonaiExportRequestEvent = z.looseObject({
  workflow_instance_id: z.string().min(1),
  export_task_id: z.string().min(1),
  files: z.array(z.string().min(1)).min(1),
  destinations: z.array(z.string().min(1)),
  correlation_id: z.string().min(1),
  delivery_tag: z.string().optional(),
  message_id: z.string().optional(),
  error_messages: z.array(z.string()).default([]),
  file_id: z.string().nullish(),
  plug_in_assemblies: z.array(z.string()).default([]),
});
export type MonaiExportRequestEvent = z.infer<typeof MonaiExportRequestEvent>;

// --- the internal study event ---------------------------------------------------------------

/** The source every MONAI WorkflowRequestEvent is identified under (its payload_id is the id). */
export const MONAI_EVENT_SOURCE = "urn:monai-deploy:workflow-request";

export const StudyEvent = z.object({
  id: z.string().min(1).max(256).describe("The CloudEvent id or MONAI payload_id; unique per source."),
  source: z.string().min(1).max(1024).describe("The CloudEvent source, or MONAI_EVENT_SOURCE."),
  time: z.string().describe("When the event was produced, ISO 8601 UTC."),
  study: Study,
  workflows: z
    .array(z.string())
    .optional()
    .describe(
      "When set (MONAI's workflows[]), only AIWorkflows so named (by name, imported MONAI name or MONAI id) may match.",
    ),
  format: z.enum(["cloudevents", "monai"]),
});
export type StudyEvent = z.infer<typeof StudyEvent>;

/** What identifies an event: its source and its id (CloudEvents 1.0). */
export interface EventIdentity {
  source: string;
  id: string;
}

/**
 * One key for (source, id): hex SHA-256 of both, NUL-separated so that no two pairs share it,
 * 32 characters. Safe as a JetStream KV key and as a Nats-Msg-Id.
 */
export function eventKey(e: EventIdentity): string {
  return createHash("sha256").update(e.source).update("\0").update(e.id).digest("hex").slice(0, 32);
}

/** Limits checked before a payload is parsed. */
export interface PayloadLimits {
  /** Bytes, at most; default 1 MiB (NATS' default max_payload). */
  maxBytes?: number;
  /** Nesting of objects and arrays, at most; default 64 (a study with nested DICOM sequences needs ~20). */
  maxDepth?: number;
}
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024;
export const DEFAULT_MAX_EVENT_DEPTH = 64;

/**
 * The deepest nesting of `[`/`{` in JSON text, scanning no further than `limit` + 1 levels.
 * Linear and allocation-free; works on UTF-8 bytes because multi-byte sequences never contain
 * ASCII bytes. Brackets inside strings do not count.
 */
export function jsonDepthExceeds(bytes: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Why an event was rejected: a stable code (metric label, DLQ reason) and a detail without PHI. */
export type RejectReason =
  | "too-large"
  | "too-deep"
  | "malformed-json"
  | "unknown-format"
  | "unexpected-type"
  | "invalid-cloudevent"
  | "invalid-monai"
  | "monai-no-dicom"
  | "monai-multiple-studies"
  | "monai-resume-unsupported";

export type ParseResult = { ok: true; event: StudyEvent } | { ok: false; reason: RejectReason; detail: string };

/**
 * Zod issues as "path: message". Zod's messages name what was expected, never the received
 * value, so the detail holds no PHI; it is still truncated.
 */
export function describeIssues(error: z.ZodError, max = 5): string {
  const parts = error.issues
    .slice(0, max)
    .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message.slice(0, 160)}`);
  if (error.issues.length > max) parts.push(`… ${error.issues.length - max} more`);
  return parts.join("; ");
}

/**
 * Parses a study event in either format into a StudyEvent. `receivedAt` stands in for a native
 * event without `time` (pass the JetStream message's stored time, so a redelivery agrees).
 */
export function toStudyEvent(
  payload: Uint8Array | string,
  receivedAt: string,
  limits: PayloadLimits = {},
): ParseResult {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_EVENT_DEPTH;
  if (bytes.length > maxBytes) {
    return { ok: false, reason: "too-large", detail: `payload is ${bytes.length} bytes; at most ${maxBytes} are read` };
  }
  if (jsonDepthExceeds(bytes, maxDepth)) {
    return { ok: false, reason: "too-deep", detail: `payload nests objects/arrays more than ${maxDepth} levels deep` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(typeof payload === "string" ? payload : new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    return { ok: false, reason: "malformed-json", detail: "payload is not UTF-8 JSON" };
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { ok: false, reason: "unknown-format", detail: "payload is not a JSON object" };
  }
  if ("specversion" in raw) return fromCloudEvent(raw, receivedAt);
  if ("payload_id" in raw) return fromMonai(raw);
  return {
    ok: false,
    reason: "unknown-format",
    detail: "neither a CloudEvent (specversion) nor a MONAI WorkflowRequestEvent (payload_id)",
  };
}

function fromCloudEvent(raw: object, receivedAt: string): ParseResult {
  const type = (raw as { type?: unknown }).type;
  if (typeof type === "string" && type !== STUDY_RECEIVED) {
    return {
      ok: false,
      reason: "unexpected-type",
      detail: `CloudEvent type must be ${STUDY_RECEIVED}`,
    };
  }
  const r = StudyReceivedEvent.safeParse(raw);
  if (!r.success) return { ok: false, reason: "invalid-cloudevent", detail: describeIssues(r.error) };
  const ce = r.data;
  return {
    ok: true,
    event: {
      id: ce.id,
      source: ce.source,
      time: normalizeTime(ce.time ?? receivedAt),
      study: ce.data,
      format: "cloudevents",
    },
  };
}

// The Informatics Gateway stores a payload as <payload_id>/dcm/<study UID>/<series UID>/<SOP UID>.dcm
const MONAI_DICOM_PATH = /(?:^|\/)dcm\/([0-9.]+)\/([0-9.]+)\/[^/]+\.dcm$/i;

function fromMonai(raw: object): ParseResult {
  const r = MonaiWorkflowRequestEvent.safeParse(raw);
  if (!r.success) return { ok: false, reason: "invalid-monai", detail: describeIssues(r.error) };
  const ev = r.data;
  if (ev.workflow_instance_id) {
    return {
      ok: false,
      reason: "monai-resume-unsupported",
      detail: "workflow_instance_id is set: a MONAI Workflow Manager resume event, not a new study",
    };
  }
  const origin = ev.trigger ?? ev.data_origins?.[0];
  const modality = monaiModality(origin?.artifactType) ?? "OT";

  const studies = new Map<string, Map<string, number>>();
  for (const f of ev.payload) {
    const m = MONAI_DICOM_PATH.exec(f.path);
    if (!m) continue; // DICOM JSON side files, FHIR, HL7: not instances
    const [, studyUID, seriesUID] = m as unknown as [string, string, string];
    const series = studies.get(studyUID) ?? new Map<string, number>();
    studies.set(studyUID, series);
    series.set(seriesUID, (series.get(seriesUID) ?? 0) + 1);
  }
  if (studies.size === 0) {
    return {
      ok: false,
      reason: "monai-no-dicom",
      detail: "no payload path has the form dcm/<study>/<series>/<instance>.dcm",
    };
  }
  if (studies.size > 1) {
    return {
      ok: false,
      reason: "monai-multiple-studies",
      detail: `payload holds ${studies.size} studies; group payloads by StudyInstanceUID in the gateway`,
    };
  }
  const [[studyUID, seriesCounts]] = [...studies] as [[string, Map<string, number>]];
  const series: SeriesSummary[] = [...seriesCounts].map(([uid, n]) => ({
    seriesInstanceUID: uid,
    modality,
    numberOfInstances: n,
  }));

  // AE titles: the old fields, or the trigger when it describes a DICOM transfer.
  const dicomOrigin =
    origin && (origin.dataService === MONAI_DATA_SERVICE.DIMSE || origin.dataService === MONAI_DATA_SERVICE.DicomWeb);
  const calling = aeTitle(ev.calling_aetitle) ?? (dicomOrigin ? aeTitle(origin.source) : undefined);
  const called = aeTitle(ev.called_aetitle) ?? (dicomOrigin ? aeTitle(origin.destination) : undefined);

  const study = Study.safeParse({
    studyInstanceUID: studyUID,
    callingAETitle: calling,
    calledAETitle: called,
    location: `s3://${ev.bucket}/${ev.payload_id}`,
    series,
  });
  if (!study.success) return { ok: false, reason: "invalid-monai", detail: describeIssues(study.error) };
  const workflows = (ev.workflows ?? []).filter((w) => w.length > 0);
  return {
    ok: true,
    event: {
      id: ev.payload_id.toLowerCase(),
      source: MONAI_EVENT_SOURCE,
      time: normalizeTime(ev.timestamp),
      study: study.data,
      ...(workflows.length ? { workflows } : {}),
      format: "monai",
    },
  };
}

function aeTitle(v: string | null | undefined): string | undefined {
  const t = v?.trim();
  return t && AETitle.safeParse(t).success ? t : undefined;
}

// --- results ------------------------------------------------------------------------------

export const TaskResultData = z
  .object({
    task: z.object({ namespace: z.string(), name: z.string(), uid: z.string() }),
    workflow: z.object({ name: z.string(), uid: z.string(), generation: z.number().int() }),
    eventId: z.string().describe("ID of the study event that started the task."),
    eventSource: z.string().optional().describe("Source of that event; with eventId, the event's identity."),
    priority: Priority,
    phase: TaskPhase.describe("Succeeded, Failed or Canceled."),
    reason: z.string().optional().describe("Why the task failed: StepFailed, QueueTimeout, Canceled, …"),
    message: z.string().optional(),
    study: z.object({
      studyInstanceUID: DicomUID,
      accessionNumber: z.string().optional(),
      location: z.string().optional(),
    }),
    startTime: z.string().optional(),
    completionTime: z.string().optional(),
    steps: z.array(
      z.object({
        name: z.string(),
        phase: z.string(),
        reason: z.string().optional(),
        outputs: z.record(z.string(), z.unknown()).optional(),
      }),
    ),
    outputs: z.record(z.string(), z.record(z.string(), z.unknown())).describe("Each step's outputs by step name."),
    resultLocation: z.string().optional().describe("Where the steps wrote their results."),
  })
  .describe("What a finished InferenceTask produced.");
export type TaskResultData = z.infer<typeof TaskResultData>;

export const TaskResultEvent = CloudEventContext.extend({
  type: z.enum([TASK_SUCCEEDED, TASK_FAILED]),
  time: Timestamp,
  data: TaskResultData,
}).describe("A task finished: CloudEvents 1.0 on radflow.task.succeeded or radflow.task.failed.");
export type TaskResultEvent = z.infer<typeof TaskResultEvent>;

// --- dead letters -------------------------------------------------------------------------

export const DeadLetter = z
  .object({
    reason: z.string().describe("Stable reason code, e.g. invalid-cloudevent."),
    detail: z.string().describe("What is wrong, without patient data."),
    subject: z.string().describe("Subject the event was published on."),
    stream: z.string().optional(),
    streamSequence: z.number().int().optional(),
    deliveries: z.number().int().optional(),
    receivedAt: z.string().describe("When the event was stored in its stream."),
    rejectedAt: z.string(),
    payload: z
      .string()
      .describe(
        "The event as received, base64; empty when it is too large to copy (stream and streamSequence locate it). May hold PHI: the DLQ is an event store.",
      ),
  })
  .describe("A study event radflow could not use, on radflow.dlq.study.");
export type DeadLetter = z.infer<typeof DeadLetter>;
