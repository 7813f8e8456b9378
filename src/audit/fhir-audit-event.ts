// An AuditFact as a FHIR R4 AuditEvent in the IHE Basic Audit Log Patterns (BALP) shape:
// type/subtype from the code table (the same codes as the DICOM message), agents with the DICOM
// role codes, the source, and entities for the study, the patient, and the task or workflow.
// Every coding must be one an R4 validator knows: R4's DICOM code list (DCM) lacks 110119
// "Station AE Title", so AE titles are identifiers without a type (their altId says AETITLES=,
// as DICOM does), and `urn:ietf:rfc:3881` is no FHIR code system, so the patient's identifier is
// typed with HL7 v2 table 0203 (MR) instead of the DICOM message's RFC-3881 code.
import { isIP } from "node:net";
import type { AuditCodeTable, CodedValue } from "./codes.ts";
import { EXPORT_KINDS, OUTCOME_INDICATOR, outcomeText, TRANSFER_KINDS, UNKNOWN_SENDER } from "./dicom-audit-message.ts";
import { type AuditFact, auditTime } from "./facts.ts";
import type { AuditSource } from "./source.ts";

export interface Coding {
  system: string;
  code: string;
  display?: string;
}
export interface Identifier {
  /** the DICOM ParticipantObjectIDTypeCode, so both renderings say what kind of ID this is */
  type?: { coding: Coding[] };
  system?: string;
  value: string;
}
interface Reference {
  identifier?: Identifier;
  display?: string;
}
export interface AuditEventAgent {
  type: { coding: Coding[] };
  who: Reference;
  altId?: string;
  requestor: boolean;
  network?: { address: string; type: "1" | "2" | "3" | "4" | "5" };
  media?: Coding;
}
export interface AuditEventEntity {
  what: Reference;
  type: Coding;
  role: Coding;
  lifecycle?: Coding;
  name?: string;
  detail?: { type: string; valueString: string }[];
  extension?: { url: string; valueIdentifier?: Identifier }[];
}
export interface FhirAuditEvent {
  resourceType: "AuditEvent";
  id?: string;
  type: Coding;
  subtype?: Coding[];
  action: "C" | "R" | "U" | "D" | "E";
  recorded: string;
  outcome: "0" | "4" | "8" | "12";
  outcomeDesc?: string;
  agent: AuditEventAgent[];
  source: { site?: string; observer: Reference; type: Coding[] };
  entity?: AuditEventEntity[];
}

const ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role";
const LIFECYCLE = "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle";
const SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ACCESSION_EXT = "http://hl7.org/fhir/StructureDefinition/auditevent-Accession";
/** FHIR's convention for DICOM UIDs (an OID as a URN). */
const DICOM_UID_SYSTEM = "urn:dicom:uid";

const IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203";
/** A code system FHIR R4 does not know, used by DICOM for the patient ID type. */
const RFC_3881 = "urn:ietf:rfc:3881";
const MEDICAL_RECORD: Coding = { system: IDENTIFIER_TYPE, code: "MR", display: "Medical record number" };
/** The FHIR coding of an identifier type from the code table (RFC-3881 ones mapped to v2). */
const idType = (c: CodedValue): Coding => (c.system === RFC_3881 ? MEDICAL_RECORD : coding(c));

const coding = (c: CodedValue): Coding => ({ system: c.system, code: c.code, display: c.display });
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

const HUMAN_USER: Coding = {
  system: "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
  code: "humanuser",
  display: "human user",
};
const SYSTEM_OBJECT: Coding = { system: ENTITY_TYPE, code: "2", display: "System Object" };
const WORKFLOW_LIFECYCLE: Partial<Record<AuditFact["kind"], Coding>> = {
  WorkflowCreated: { system: LIFECYCLE, code: "1", display: "Origination / Creation" },
  WorkflowChanged: { system: LIFECYCLE, code: "3", display: "Amendment" },
  WorkflowDeleted: { system: LIFECYCLE, code: "14", display: "Logical deletion" },
};

function agents(fact: AuditFact, codes: AuditCodeTable, src: AuditSource): AuditEventAgent[] {
  const s = fact.study;
  const transfer = TRANSFER_KINDS.has(fact.kind);
  const exporting = EXPORT_KINDS.has(fact.kind);
  const out: AuditEventAgent[] = [
    {
      type: {
        coding: [
          coding(codes.roles.application),
          ...(exporting ? [coding(codes.roles.source)] : []),
          ...(transfer && !s?.calledAETitle ? [coding(codes.roles.destination)] : []),
        ],
      },
      who: { identifier: { value: src.application }, display: src.application },
      altId: src.processId,
      requestor: !s?.callingAETitle && !fact.user,
      network: { address: src.hostname, type: "1" },
    },
  ];
  const ae = (title: string, role: CodedValue, requestor: boolean): AuditEventAgent => ({
    type: { coding: [coding(role)] },
    who: { identifier: { value: title }, display: title },
    altId: `AETITLES=${title}`,
    requestor,
  });
  // the sender's address: an IP is network type 2, a host name type 1
  const network = fact.senderAddress
    ? { network: { address: fact.senderAddress, type: isIP(fact.senderAddress) ? ("2" as const) : ("1" as const) } }
    : {};
  // the person who acted (a reviewer): the requestor, typed as a human user (a code R4 knows)
  if (fact.user) out.push({ type: { coding: [HUMAN_USER] }, who: { display: fact.user }, requestor: true });
  if (s?.callingAETitle) out.push({ ...ae(s.callingAETitle, codes.roles.source, !fact.user), ...network });
  else if (transfer) {
    const sender = fact.sender || UNKNOWN_SENDER;
    out.push({ type: { coding: [coding(codes.roles.source)] }, who: { display: sender }, requestor: true, ...network });
  }
  if (s?.calledAETitle) out.push(ae(s.calledAETitle, codes.roles.destination, false));
  // the node a Security Alert is about: the one that was refused
  if (fact.kind === "NodeAuthenticationFailed") {
    const who = fact.sender || UNKNOWN_SENDER;
    out.push({ type: { coding: [coding(codes.roles.source)] }, who: { display: who }, requestor: false, ...network });
  }
  // the node an export went to, at its network address
  const node = fact.exportNode;
  if (node) {
    out.push({
      type: { coding: [coding(codes.roles.destination)] },
      who: { identifier: { value: node.userId }, display: node.userId },
      ...(node.aeTitle ? { altId: `AETITLES=${node.aeTitle}` } : {}),
      requestor: false,
      network: { address: node.address, type: isIP(node.address) ? "2" : "1" },
    });
  }
  if (fact.destination) {
    out.push({
      type: { coding: [coding(exporting ? codes.roles.media : codes.roles.destination)] },
      who: { display: fact.destination },
      requestor: false,
      ...(exporting ? { media: coding(codes.mediaType) } : {}),
    });
  }
  return out;
}

function entities(fact: AuditFact, codes: AuditCodeTable): AuditEventEntity[] {
  const out: AuditEventEntity[] = [];
  const s = fact.study;
  if (s) {
    const details = [
      ...(s.sopClasses ?? []).map((c) => ({ type: "SOPClass", valueString: `${c.uid} (${c.instances})` })),
      ...(s.sopClassUIDs ?? [])
        .filter((u) => !s.sopClasses?.some((c) => c.uid === u))
        .map((u) => ({ type: "SOPClass", valueString: u })),
    ];
    out.push({
      what: {
        identifier: {
          type: { coding: [idType(codes.objects.study)] },
          system: DICOM_UID_SYSTEM,
          value: `urn:oid:${s.studyInstanceUID}`,
        },
        display: codes.objects.study.display,
      },
      type: SYSTEM_OBJECT,
      role: { system: OBJECT_ROLE, code: "3", display: "Report" },
      ...(details.length ? { detail: details } : {}),
      ...(s.accessionNumber
        ? { extension: [{ url: ACCESSION_EXT, valueIdentifier: { value: s.accessionNumber } }] }
        : {}),
    });
    if (s.patientId) {
      out.push({
        what: { identifier: { type: { coding: [idType(codes.objects.patient)] }, value: s.patientId } },
        type: { system: ENTITY_TYPE, code: "1", display: "Person" },
        role: { system: OBJECT_ROLE, code: "1", display: "Patient" },
      });
    }
  }
  // a Security Alert's subject: the service that refused a node
  if (fact.alertSubject) {
    out.push({
      what: { identifier: { value: fact.alertSubject }, display: fact.alertSubject },
      type: SYSTEM_OBJECT,
      role: { system: OBJECT_ROLE, code: "13", display: "Security Resource" },
    });
  }
  const ns = fact.namespace ? `${fact.namespace}/` : "";
  const d = (type: string, v: string | undefined) => (v === undefined ? [] : [{ type, valueString: v }]);
  if (fact.task) {
    const detail = [...d("Workflow", fact.workflow), ...d("Step", fact.step)];
    out.push({
      what: { identifier: { type: { coding: [idType(codes.objects.task)] }, value: `${ns}${fact.task}` } },
      type: SYSTEM_OBJECT,
      role: { system: OBJECT_ROLE, code: "20", display: "Job" },
      name: fact.task,
      ...(detail.length ? { detail } : {}),
    });
  } else if (fact.workflow) {
    const lifecycle = WORKFLOW_LIFECYCLE[fact.kind];
    const detail = d("Step", fact.step);
    out.push({
      what: { identifier: { type: { coding: [idType(codes.objects.workflow)] }, value: `${ns}${fact.workflow}` } },
      type: SYSTEM_OBJECT,
      role: { system: OBJECT_ROLE, code: "5", display: "Master file" },
      ...(lifecycle ? { lifecycle } : {}),
      name: fact.workflow,
      ...(detail.length ? { detail } : {}),
    });
  }
  return out;
}

export function renderFhirAuditEvent(fact: AuditFact, codes: AuditCodeTable, src: AuditSource): FhirAuditEvent {
  const c = codes.events[fact.kind];
  if (!c) throw new Error(`audit fact ${JSON.stringify(fact.kind)}: no entry in the audit code table`);
  const text = outcomeText(fact);
  const entity = entities(fact, codes);
  return {
    resourceType: "AuditEvent",
    ...(FHIR_ID.test(fact.id) ? { id: fact.id } : {}),
    type: coding(c.eventId),
    ...(c.eventTypes.length ? { subtype: c.eventTypes.map(coding) } : {}),
    action: c.action,
    recorded: auditTime(fact),
    outcome: OUTCOME_INDICATOR[fact.outcome],
    ...(text !== undefined ? { outcomeDesc: text } : {}),
    agent: agents(fact, codes, src),
    source: {
      ...(src.enterpriseSiteId ? { site: src.enterpriseSiteId } : {}),
      observer: { display: src.sourceId },
      type: [{ system: SOURCE_TYPE, code: "4", display: "Application Server" }],
    },
    ...(entity.length ? { entity } : {}),
  };
}
