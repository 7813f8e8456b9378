// An AuditFact as a DICOM PS3.15 A.5 AuditMessage, valid against the RELAX NG schema in
// ../fixtures/audit/dicom-audit-message.rnc (checked by test/unit/audit with xmllint).
//
// Shape:
//   EventIdentification   EventID + EventTypeCode from the code table, action, time with zone, outcome
//   ActiveParticipant     radflow (110150 Application; also 110153 Source when it exports results),
//                         the calling AE (110153 Source, requestor) and called AE (110152 Destination)
//                         when the fact knows them. A study transfer (110104) always has both
//                         roles (PS3.15 A.5.3.4): without a calling AE the sender is the study
//                         event's source, without a called AE radflow is the destination. An export
//                         (110106) names its media: 110154 Destination Media with MediaType URI
//                         (A.5.3.6), the subjects and destinations the results went to.
//   AuditSourceIdentification  this installation, type 4 (application server)
//   ParticipantObjectIdentification  the study (110180, ID = StudyInstanceUID, accession and SOP
//                         classes in the description), the patient when known, then the task
//                         (role Job) or the workflow (role Master File)
import { isIP } from "node:net";
import type { AuditCodeTable, CodedValue } from "./codes.ts";
import { type AuditEventKind, type AuditFact, type AuditOutcome, auditTime } from "./facts.ts";
import type { AuditSource } from "./source.ts";
import { el, serializeXml, type XmlElement } from "./xml.ts";

export const OUTCOME_INDICATOR: Record<AuditOutcome, "0" | "4" | "8" | "12"> = {
  success: "0",
  minorFailure: "4",
  seriousFailure: "8",
  majorFailure: "12",
};

function coded(name: string, c: CodedValue): XmlElement {
  return el(name, { "csd-code": c.code, codeSystemName: c.codeSystemName, originalText: c.display });
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const detail = (type: string, value: string | undefined) =>
  value === undefined ? undefined : el("ParticipantObjectDetail", { type, value: b64(value) });

/** "reason: description", either part optional. */
export function outcomeText(fact: AuditFact): string | undefined {
  const parts = [fact.reason, fact.description].filter((s): s is string => !!s);
  return parts.length ? parts.join(": ") : undefined;
}

const WORKFLOW_LIFECYCLE: Partial<Record<AuditFact["kind"], string>> = {
  WorkflowCreated: "1", // Origination, Creation
  WorkflowChanged: "3", // Amendment
  WorkflowDeleted: "14", // Logical deletion
};

/** Facts that are a DICOM Instances Transferred event: the study reached radflow. */
export const TRANSFER_KINDS: ReadonlySet<AuditEventKind> = new Set([
  "StudyReceived",
  "StudyUnmatched",
  "StudyRejected",
  "BeginTransferring",
  "InstancesTransferred",
]);
/** Facts that are a DICOM Export event: radflow is the Source and names the media (110154). */
export const EXPORT_KINDS: ReadonlySet<AuditEventKind> = new Set(["ResultsPublished", "InstancesExported"]);
/** ParticipantObjectIDTypeCode of an object named by a URI (RFC 3881 code 12). */
const URI_ID_TYPE: CodedValue = { code: "12", codeSystemName: "RFC-3881", system: "urn:ietf:rfc:3881", display: "URI" };
/** Who sent a study when neither an AE title nor the event's source says (never an empty UserID). */
export const UNKNOWN_SENDER = "unknown";

/** The sender's network access point: an IP address is type 2, a host name type 1 (PS3.15 A.5.2). */
function senderNetwork(fact: AuditFact): { NetworkAccessPointID?: string; NetworkAccessPointTypeCode?: string } {
  const a = fact.senderAddress;
  if (!a) return {};
  return { NetworkAccessPointID: a, NetworkAccessPointTypeCode: isIP(a) ? "2" : "1" };
}

function participants(fact: AuditFact, codes: AuditCodeTable, src: AuditSource): XmlElement[] {
  const s = fact.study;
  const fromAE = !!s?.callingAETitle;
  const exporting = EXPORT_KINDS.has(fact.kind);
  const transfer = TRANSFER_KINDS.has(fact.kind);
  const out: XmlElement[] = [
    el(
      "ActiveParticipant",
      {
        UserID: src.application,
        AlternativeUserID: src.processId,
        // radflow acts on its own initiative, except when a modality's transfer or a person started it
        UserIsRequestor: !fromAE && !fact.user,
        NetworkAccessPointID: src.hostname,
        NetworkAccessPointTypeCode: "1",
      },
      coded("RoleIDCode", codes.roles.application),
      exporting && coded("RoleIDCode", codes.roles.source),
      // radflow received the study when no called AE title names the receiver
      transfer && !s?.calledAETitle && coded("RoleIDCode", codes.roles.destination),
    ),
  ];
  if (transfer && !fromAE) {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: fact.sender || UNKNOWN_SENDER, UserIsRequestor: true, ...senderNetwork(fact) },
        coded("RoleIDCode", codes.roles.source),
      ),
    );
  }
  // the person who acted (a reviewer): the requestor, as the user the Kubernetes API server named
  if (fact.user) out.push(el("ActiveParticipant", { UserID: fact.user, UserIsRequestor: true }));
  if (s?.callingAETitle) {
    out.push(
      el(
        "ActiveParticipant",
        {
          UserID: s.callingAETitle,
          AlternativeUserID: `AETITLES=${s.callingAETitle}`,
          UserIsRequestor: !fact.user,
          ...senderNetwork(fact),
        },
        coded("RoleIDCode", codes.roles.source),
      ),
    );
  }
  if (s?.calledAETitle) {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: s.calledAETitle, AlternativeUserID: `AETITLES=${s.calledAETitle}`, UserIsRequestor: false },
        coded("RoleIDCode", codes.roles.destination),
      ),
    );
  }
  // the node a Security Alert is about (A.5.3.11 "performing process"): the one that was refused
  if (fact.kind === "NodeAuthenticationFailed") {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: fact.sender || UNKNOWN_SENDER, UserIsRequestor: false, ...senderNetwork(fact) },
        coded("RoleIDCode", codes.roles.source),
      ),
    );
  }
  // the node an export went to: its AE title or host, at its network address
  const node = fact.exportNode;
  if (node) {
    out.push(
      el(
        "ActiveParticipant",
        {
          UserID: node.userId,
          ...(node.aeTitle ? { AlternativeUserID: `AETITLES=${node.aeTitle}` } : {}),
          UserIsRequestor: false,
          NetworkAccessPointID: node.address,
          NetworkAccessPointTypeCode: isIP(node.address) ? "2" : "1",
        },
        coded("RoleIDCode", codes.roles.destination),
      ),
    );
  }
  if (fact.destination) {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: fact.destination, UserIsRequestor: false },
        coded("RoleIDCode", exporting ? codes.roles.media : codes.roles.destination),
        exporting && el("MediaIdentifier", {}, coded("MediaType", codes.mediaType)),
      ),
    );
  }
  return out;
}

// The fixture's schema requires a ParticipantObjectName (or Query) on every participant object.
// For the study and the patient radflow uses the identifier itself: it holds no patient name and
// must not pull more PHI into the record than the fact carries.
function objects(fact: AuditFact, codes: AuditCodeTable, omittedSopClasses: number): XmlElement[] {
  const out: XmlElement[] = [];
  const s = fact.study;
  if (s) {
    const counted = new Set((s.sopClasses ?? []).map((c) => c.uid));
    const uncounted = (s.sopClassUIDs ?? []).filter((u) => !counted.has(u));
    const description =
      s.accessionNumber || s.sopClasses?.length
        ? el(
            "ParticipantObjectDescription",
            {},
            s.accessionNumber && el("Accession", { Number: s.accessionNumber }),
            ...(s.sopClasses ?? []).map((c) => el("SOPClass", { UID: c.uid, NumberOfInstances: c.instances })),
          )
        : undefined;
    out.push(
      el(
        "ParticipantObjectIdentification",
        { ParticipantObjectID: s.studyInstanceUID, ParticipantObjectTypeCode: "2", ParticipantObjectTypeCodeRole: "3" },
        coded("ParticipantObjectIDTypeCode", codes.objects.study),
        el("ParticipantObjectName", {}, s.studyInstanceUID),
        // a SOP class without its instance count cannot be a SOPClass element (the count is required)
        ...uncounted.map((u) => detail("SOPClassUID", u)),
        omittedSopClasses > 0 ? detail("SOPClassesOmitted", String(omittedSopClasses)) : undefined,
        description,
      ),
    );
    if (s.patientId) {
      out.push(
        el(
          "ParticipantObjectIdentification",
          { ParticipantObjectID: s.patientId, ParticipantObjectTypeCode: "1", ParticipantObjectTypeCodeRole: "1" },
          coded("ParticipantObjectIDTypeCode", codes.objects.patient),
          el("ParticipantObjectName", {}, s.patientId),
        ),
      );
    }
  }
  // a Security Alert's subject (A.5.3.11): the service that refused a node, as a URI
  if (fact.alertSubject) {
    out.push(
      el(
        "ParticipantObjectIdentification",
        { ParticipantObjectID: fact.alertSubject, ParticipantObjectTypeCode: "2", ParticipantObjectTypeCodeRole: "13" },
        coded("ParticipantObjectIDTypeCode", URI_ID_TYPE),
        el("ParticipantObjectName", {}, fact.alertSubject),
      ),
    );
  }
  const ns = fact.namespace ? `${fact.namespace}/` : "";
  if (fact.task) {
    out.push(
      el(
        "ParticipantObjectIdentification",
        {
          ParticipantObjectID: `${ns}${fact.task}`,
          ParticipantObjectTypeCode: "2",
          ParticipantObjectTypeCodeRole: "20",
        },
        coded("ParticipantObjectIDTypeCode", codes.objects.task),
        el("ParticipantObjectName", {}, fact.task),
        detail("Workflow", fact.workflow),
        detail("Step", fact.step),
      ),
    );
  } else if (fact.workflow) {
    out.push(
      el(
        "ParticipantObjectIdentification",
        {
          ParticipantObjectID: `${ns}${fact.workflow}`,
          ParticipantObjectTypeCode: "2",
          ParticipantObjectTypeCodeRole: "5",
          ParticipantObjectDataLifeCycle: WORKFLOW_LIFECYCLE[fact.kind],
        },
        coded("ParticipantObjectIDTypeCode", codes.objects.workflow),
        el("ParticipantObjectName", {}, fact.workflow),
        detail("Step", fact.step),
      ),
    );
  }
  return out;
}

/**
 * Largest AuditMessage radflow sends, in octets: rsyslog's default maxMessageSize ("8k") takes
 * 8096 octets of syslog message, and a longer one is cut there and its rest read as further,
 * broken records. 512 octets are left for the RFC 5424 header (at most ~480 here).
 */
export const MAX_AUDIT_MESSAGE_BYTES = 8096 - 512;

/**
 * The AuditMessage document (one line, with XML declaration), at most `maxBytes` octets: a fact
 * too big for that loses, in order, the end of its outcome text, the SOP classes without counts,
 * then SOP classes from the end (the count left out is recorded as a detail). Identifiers, codes
 * and participants are never dropped. Throws on a fact without a zoned time.
 */
export function renderAuditMessage(
  fact: AuditFact,
  codes: AuditCodeTable,
  src: AuditSource,
  maxBytes = MAX_AUDIT_MESSAGE_BYTES,
): string {
  let doc = renderWhole(fact, codes, src);
  if (Buffer.byteLength(doc) <= maxBytes) return doc;
  let f: AuditFact = { ...fact, study: fact.study ? { ...fact.study } : undefined };
  const steps: ((f: AuditFact) => AuditFact | undefined)[] = [
    (f) =>
      f.description && f.description.length > 256
        ? { ...f, description: `${f.description.slice(0, 255)}…` }
        : undefined,
    (f) => (f.reason && f.reason.length > 256 ? { ...f, reason: `${f.reason.slice(0, 255)}…` } : undefined),
    (f) => (f.study?.sopClassUIDs?.length ? { ...f, study: { ...f.study, sopClassUIDs: [] } } : undefined),
  ];
  for (const step of steps) {
    const next = step(f);
    if (!next) continue;
    f = next;
    doc = renderWhole(f, codes, src);
    if (Buffer.byteLength(doc) <= maxBytes) return doc;
  }
  // SOP classes from the end, halving what is kept until it fits
  const all = f.study?.sopClasses ?? [];
  for (let keep = Math.floor(all.length / 2); keep >= 0; keep = keep === 0 ? -1 : Math.floor(keep / 2)) {
    const kept = all.slice(0, keep);
    doc = renderWhole({ ...f, study: { ...f.study!, sopClasses: kept } }, codes, src, all.length - keep);
    if (Buffer.byteLength(doc) <= maxBytes) return doc;
  }
  throw new Error(
    `audit fact ${fact.kind}: the AuditMessage is ${Buffer.byteLength(doc)} octets even when cut, over ${maxBytes}`,
  );
}

function renderWhole(fact: AuditFact, codes: AuditCodeTable, src: AuditSource, omittedSopClasses = 0): string {
  const coding = codes.events[fact.kind];
  if (!coding) throw new Error(`audit fact ${JSON.stringify(fact.kind)}: no entry in the audit code table`);
  const text = outcomeText(fact);
  const doc = el(
    "AuditMessage",
    {},
    el(
      "EventIdentification",
      {
        EventActionCode: coding.action,
        EventDateTime: auditTime(fact),
        EventOutcomeIndicator: OUTCOME_INDICATOR[fact.outcome],
      },
      coded("EventID", coding.eventId),
      ...coding.eventTypes.map((t) => coded("EventTypeCode", t)),
      text !== undefined && el("EventOutcomeDescription", {}, text),
    ),
    ...participants(fact, codes, src),
    el(
      "AuditSourceIdentification",
      { AuditSourceID: src.sourceId, AuditEnterpriseSiteID: src.enterpriseSiteId },
      el("AuditSourceTypeCode", { "csd-code": "4" }),
    ),
    ...objects(fact, codes, omittedSopClasses),
  );
  return serializeXml(doc);
}
