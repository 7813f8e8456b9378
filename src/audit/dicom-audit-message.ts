// An AuditFact as a DICOM PS3.15 A.5 AuditMessage, valid against the RELAX NG schema in
// ../fixtures/audit/dicom-audit-message.rnc (checked by test/unit/audit with xmllint).
//
// Shape:
//   EventIdentification   EventID + EventTypeCode from the code table, action, time with zone, outcome
//   ActiveParticipant     radflow (110150 Application; also 110153 Source when it exports results),
//                         the calling AE (110153 Source, requestor) and called AE (110152 Destination)
//                         when the fact knows them, the results destination (110152) when given
//   AuditSourceIdentification  this installation, type 4 (application server)
//   ParticipantObjectIdentification  the study (110180, ID = StudyInstanceUID, accession and SOP
//                         classes in the description), the patient when known, then the task
//                         (role Job) or the workflow (role Master File)
import type { AuditCodeTable, CodedValue } from "./codes.ts";
import { type AuditFact, type AuditOutcome, auditTime } from "./facts.ts";
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

function participants(fact: AuditFact, codes: AuditCodeTable, src: AuditSource): XmlElement[] {
  const s = fact.study;
  const fromAE = !!s?.callingAETitle;
  const exporting = fact.kind === "ResultsPublished";
  const out: XmlElement[] = [
    el(
      "ActiveParticipant",
      {
        UserID: src.application,
        AlternativeUserID: src.processId,
        // radflow acts on its own initiative, except when a modality's transfer started it
        UserIsRequestor: !fromAE,
        NetworkAccessPointID: src.hostname,
        NetworkAccessPointTypeCode: "1",
      },
      coded("RoleIDCode", codes.roles.application),
      exporting && coded("RoleIDCode", codes.roles.source),
    ),
  ];
  if (s?.callingAETitle) {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: s.callingAETitle, AlternativeUserID: `AETITLES=${s.callingAETitle}`, UserIsRequestor: true },
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
  if (fact.destination) {
    out.push(
      el(
        "ActiveParticipant",
        { UserID: fact.destination, UserIsRequestor: false },
        coded("RoleIDCode", codes.roles.destination),
      ),
    );
  }
  return out;
}

// The fixture's schema requires a ParticipantObjectName (or Query) on every participant object.
// For the study and the patient radflow uses the identifier itself: it holds no patient name and
// must not pull more PHI into the record than the fact carries.
function objects(fact: AuditFact, codes: AuditCodeTable): XmlElement[] {
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

/** The AuditMessage document (one line, with XML declaration). Throws on a fact without a zoned time. */
export function renderAuditMessage(fact: AuditFact, codes: AuditCodeTable, src: AuditSource): string {
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
    ...objects(fact, codes),
  );
  return serializeXml(doc);
}
