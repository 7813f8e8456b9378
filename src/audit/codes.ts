// The audit code table (docs/ARCHITECTURE.md §5), held as data so a site can map radflow's facts to
// its own SOLE / ATNA code table without a code change: a YAML or JSON file given by path is
// merged over the defaults below, kind by kind.
//
// Defaults: DICOM (PS3.16 "DCM") codes where DICOM defines the event, the operator-owned system
// RADFLOW (urn:radflow:audit) for what DICOM has no code for (AI steps, GPU wait, task ends).
// Every fact kind also carries its RADFLOW code as an EventTypeCode, so facts that share a DICOM
// EventID (StudyReceived / StudyUnmatched / StudyRejected are all 110104) stay distinguishable.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { z } from "zod";
import type { AuditEventKind } from "./facts.ts";

/** FHIR `system` URIs of the code systems the defaults use, keyed by DICOM codeSystemName. */
export const CODE_SYSTEMS: Readonly<Record<string, string>> = {
  DCM: "http://dicom.nema.org/resources/ontology/DCM",
  RADFLOW: "urn:radflow:audit",
  "RFC-3881": "urn:ietf:rfc:3881",
};

const CodedValue = z
  .object({
    code: z.string().min(1, "code must not be empty"),
    /** DICOM codeSystemName ("DCM", "RADFLOW", a site's "99MYSITE" or an OID). */
    codeSystemName: z.string().min(1),
    /** FHIR Coding.system; may be left out when codeSystemName is one of CODE_SYSTEMS. */
    system: z.string().min(1).optional(),
    /** Code meaning: DICOM originalText, FHIR Coding.display. */
    display: z.string().min(1),
  })
  .strict();
type CodedValueInput = z.infer<typeof CodedValue>;
export type CodedValue = Required<CodedValueInput>;

export type EventActionCode = "C" | "R" | "U" | "D" | "E";

export interface EventCoding {
  /** EventIdentification/EventID; also the syslog MSGID and the FHIR AuditEvent.type. */
  eventId: CodedValue;
  /** EventIdentification/EventTypeCode; FHIR AuditEvent.subtype. */
  eventTypes: CodedValue[];
  action: EventActionCode;
}

export interface AuditCodeTable {
  events: Record<AuditEventKind, EventCoding>;
  /** ParticipantObjectIDTypeCode of the objects radflow names in its records. */
  objects: {
    study: CodedValue;
    patient: CodedValue;
    task: CodedValue;
    workflow: CodedValue;
  };
  /** ActiveParticipant RoleIDCode values. */
  roles: {
    application: CodedValue;
    source: CodedValue;
    destination: CodedValue;
    /** the media results are exported to (PS3.15 A.5.3.6: mandatory on Export) */
    media: CodedValue;
  };
  /** MediaType of that media (PS3.16 CID 405): results go to a URI (a subject or destination). */
  mediaType: CodedValue;
}

export const AUDIT_EVENT_KINDS = [
  "StudyReceived",
  "StudyUnmatched",
  "StudyRejected",
  "TaskCreated",
  "StepStarted",
  "GPUWait",
  "StepFinished",
  "TaskSucceeded",
  "TaskFailed",
  "TaskCanceled",
  "TaskTimedOut",
  "ResultsPublished",
  "WorkflowCreated",
  "WorkflowChanged",
  "WorkflowDeleted",
  "OperatorStarted",
  "OperatorStopped",
  "BeginTransferring",
  "InstancesTransferred",
  "ReviewVerdict",
  "InstancesExported",
  "NodeAuthenticationFailed",
] as const satisfies readonly AuditEventKind[];

// compile-time check that the list above names every kind
type Missing = Exclude<AuditEventKind, (typeof AUDIT_EVENT_KINDS)[number]>;
const _everyKind: Missing extends never ? true : Missing = true;
void _everyKind;

const dcm = (code: string, display: string): CodedValue => ({
  code,
  codeSystemName: "DCM",
  system: CODE_SYSTEMS.DCM!,
  display,
});
const rf = (code: string, display: string): CodedValue => ({
  code,
  codeSystemName: "RADFLOW",
  system: CODE_SYSTEMS.RADFLOW!,
  display,
});

// DICOM event IDs (PS3.16 CID 400) and event types (CID 401) used below.
const APPLICATION_ACTIVITY = dcm("110100", "Application Activity");
const BEGIN_TRANSFERRING = dcm("110102", "Begin Transferring DICOM Instances");
const INSTANCES_TRANSFERRED = dcm("110104", "DICOM Instances Transferred");
const EXPORT = dcm("110106", "Export");
const SECURITY_ALERT = dcm("110113", "Security Alert");
const NODE_AUTHENTICATION = dcm("110126", "Node Authentication");
const APPLICATION_START = dcm("110120", "Application Start");
const APPLICATION_STOP = dcm("110121", "Application Stop");
const SOFTWARE_CONFIGURATION = dcm("110131", "Software Configuration");

function defaults(): AuditCodeTable {
  const own = (kind: AuditEventKind, display: string, action: EventActionCode): EventCoding => ({
    eventId: rf(kind, display),
    eventTypes: [],
    action,
  });
  const typed = (eventId: CodedValue, types: CodedValue[], action: EventActionCode): EventCoding => ({
    eventId,
    eventTypes: types,
    action,
  });
  return {
    events: {
      // The gateway stored the study and told radflow; radflow reads the notification.
      StudyReceived: typed(INSTANCES_TRANSFERRED, [rf("StudyReceived", "Study received and matched")], "R"),
      StudyUnmatched: typed(INSTANCES_TRANSFERRED, [rf("StudyUnmatched", "Study received, no workflow matched")], "R"),
      StudyRejected: typed(INSTANCES_TRANSFERRED, [rf("StudyRejected", "Study event rejected as invalid")], "R"),
      TaskCreated: own("TaskCreated", "Inference task created", "C"),
      StepStarted: own("StepStarted", "AI inference step started", "E"),
      GPUWait: own("GPUWait", "AI inference step waiting for a GPU", "E"),
      StepFinished: own("StepFinished", "AI inference step finished", "E"),
      TaskSucceeded: own("TaskSucceeded", "Inference task succeeded", "E"),
      TaskFailed: own("TaskFailed", "Inference task failed", "E"),
      TaskCanceled: own("TaskCanceled", "Inference task canceled", "E"),
      TaskTimedOut: own("TaskTimedOut", "Inference task timed out", "E"),
      // Results leave radflow for their export destinations (PS3.15 A.5.3.6 uses "R" for Export).
      ResultsPublished: typed(EXPORT, [rf("ResultsPublished", "AI results published")], "R"),
      // A workflow decides which patient data goes to which model: a software configuration
      // change, which DICOM reports as a Security Alert (as archives do for their configuration).
      // PS3.15 A.5.3.11 requires EventActionCode "E" on a Security Alert; what happened to the
      // workflow is its ParticipantObjectDataLifeCycle (creation, amendment, deletion).
      WorkflowCreated: typed(
        SECURITY_ALERT,
        [SOFTWARE_CONFIGURATION, rf("WorkflowCreated", "AI workflow created")],
        "E",
      ),
      WorkflowChanged: typed(
        SECURITY_ALERT,
        [SOFTWARE_CONFIGURATION, rf("WorkflowChanged", "AI workflow changed")],
        "E",
      ),
      WorkflowDeleted: typed(
        SECURITY_ALERT,
        [SOFTWARE_CONFIGURATION, rf("WorkflowDeleted", "AI workflow deleted")],
        "E",
      ),
      // The gateway's own receipt of a study (src/gateway/audit.ts): it creates the copies, so the
      // transfer's action is C (PS3.15 A.5.3.4); beginning a transfer is an E (A.5.3.2).
      BeginTransferring: typed(BEGIN_TRANSFERRING, [rf("BeginTransferring", "Gateway began receiving a study")], "E"),
      InstancesTransferred: typed(
        INSTANCES_TRANSFERRED,
        [rf("InstancesTransferred", "Gateway received a study's instances")],
        "C",
      ),
      // a person's verdict on AI results (src/controllers/review.ts): the reviewer is the requestor
      ReviewVerdict: own("ReviewVerdict", "Clinical review verdict on AI results", "E"),
      // the gateway's C-STORE / STOW-RS of an export to a DICOMDestination (src/export/audit.ts):
      // PS3.15 A.5.3.6 Export, whose action is R (the data is read to be sent)
      InstancesExported: typed(EXPORT, [rf("InstancesExported", "Gateway sent DICOM instances to a destination")], "R"),
      // the gateway refused a node's authentication (a TLS handshake without an acceptable
      // certificate, an unknown AE title, a STOW-RS client without a valid token): a Security
      // Alert (A.5.3.11, action E) of type Node Authentication (CID 403)
      NodeAuthenticationFailed: typed(
        SECURITY_ALERT,
        [NODE_AUTHENTICATION, rf("NodeAuthenticationFailed", "Gateway refused a node's authentication")],
        "E",
      ),
      OperatorStarted: typed(APPLICATION_ACTIVITY, [APPLICATION_START], "E"),
      OperatorStopped: typed(APPLICATION_ACTIVITY, [APPLICATION_STOP], "E"),
    },
    objects: {
      study: dcm("110180", "Study Instance UID"),
      // PS3.15 A.5.3: the patient participant's ID type is (2, RFC-3881, "Patient Number").
      patient: { code: "2", codeSystemName: "RFC-3881", system: CODE_SYSTEMS["RFC-3881"]!, display: "Patient Number" },
      task: rf("InferenceTask", "radflow InferenceTask"),
      workflow: rf("AIWorkflow", "radflow AIWorkflow"),
    },
    roles: {
      application: dcm("110150", "Application"),
      source: dcm("110153", "Source Role ID"),
      destination: dcm("110152", "Destination Role ID"),
      media: dcm("110154", "Destination Media"),
    },
    mediaType: dcm("110037", "URI"),
  };
}

/** The built-in table (a fresh copy: callers may not mutate a shared one by accident). */
export function defaultAuditCodes(): AuditCodeTable {
  return defaults();
}

const EventOverride = z
  .object({
    eventId: CodedValue.optional(),
    eventTypes: z.array(CodedValue).optional(),
    action: z.enum(["C", "R", "U", "D", "E"]).optional(),
  })
  .strict();

const Overrides = z
  .object({
    events: z.partialRecord(z.enum(AUDIT_EVENT_KINDS), EventOverride).optional(),
    objects: z
      .object({
        study: CodedValue.optional(),
        patient: CodedValue.optional(),
        task: CodedValue.optional(),
        workflow: CodedValue.optional(),
      })
      .strict()
      .optional(),
    roles: z
      .object({
        application: CodedValue.optional(),
        source: CodedValue.optional(),
        destination: CodedValue.optional(),
        media: CodedValue.optional(),
      })
      .strict()
      .optional(),
    mediaType: CodedValue.optional(),
  })
  .strict();
export type AuditCodeOverrides = z.infer<typeof Overrides>;

function complete(v: CodedValueInput, where: string): CodedValue {
  const system = v.system ?? CODE_SYSTEMS[v.codeSystemName];
  if (!system) {
    throw new Error(
      `${where}: codeSystemName ${JSON.stringify(v.codeSystemName)} is not one radflow knows (${Object.keys(CODE_SYSTEMS).join(", ")}); give its FHIR "system" URI too`,
    );
  }
  return { ...v, system };
}

/**
 * Merges a site's overrides over the defaults. Per event kind, each given field replaces the
 * default (eventTypes as a whole list); kinds and fields not given keep the defaults.
 */
export function mergeAuditCodes(overrides: unknown, where = "audit codes"): AuditCodeTable {
  const parsed = Overrides.safeParse(overrides ?? {});
  if (!parsed.success) {
    throw new Error(`${where}: ${z.prettifyError(parsed.error)}`);
  }
  const o = parsed.data;
  const table = defaults();
  for (const [kind, e] of Object.entries(o.events ?? {}) as [AuditEventKind, z.infer<typeof EventOverride>][]) {
    const at = `${where}: events.${kind}`;
    const cur = table.events[kind];
    if (e.eventId) cur.eventId = complete(e.eventId, `${at}.eventId`);
    if (e.eventTypes) cur.eventTypes = e.eventTypes.map((t, i) => complete(t, `${at}.eventTypes[${i}]`));
    if (e.action) cur.action = e.action;
  }
  for (const [k, v] of Object.entries(o.objects ?? {}) as [keyof AuditCodeTable["objects"], CodedValueInput][]) {
    table.objects[k] = complete(v, `${where}: objects.${k}`);
  }
  for (const [k, v] of Object.entries(o.roles ?? {}) as [keyof AuditCodeTable["roles"], CodedValueInput][]) {
    table.roles[k] = complete(v, `${where}: roles.${k}`);
  }
  if (o.mediaType) table.mediaType = complete(o.mediaType, `${where}: mediaType`);
  return table;
}

/** Defaults, or defaults merged with the YAML/JSON file at `path` (JSON is valid YAML). */
export function loadAuditCodes(path?: string): AuditCodeTable {
  if (!path) return defaults();
  let doc: unknown;
  try {
    doc = yaml.load(readFileSync(path, "utf8"), { filename: path });
  } catch (e) {
    throw new Error(`audit code table ${path}: ${(e as Error).message}`);
  }
  return mergeAuditCodes(doc, `audit code table ${path}`);
}
