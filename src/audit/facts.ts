// The lifecycle facts radflow audits (docs/ARCHITECTURE.md §5). Producers (ingest, reconcilers,
// the operator's start/stop) describe what happened; src/audit renders each fact as a DICOM
// AuditMessage (syslog/TLS) and a FHIR AuditEvent (NATS). Facts carry study identifiers:
// audit records exist to hold them, so a fact must never be logged as it is.
export type AuditEventKind =
  | "StudyReceived" // an event arrived and matched at least one workflow
  | "StudyUnmatched" // an event arrived and matched none
  | "StudyRejected" // an invalid event went to the dead-letter subject
  | "TaskCreated"
  | "StepStarted"
  | "GPUWait" // a step's pod is unschedulable for lack of a GPU
  | "StepFinished"
  | "TaskSucceeded"
  | "TaskFailed"
  | "TaskCanceled"
  | "TaskTimedOut"
  | "ResultsPublished"
  | "WorkflowCreated"
  | "WorkflowChanged"
  | "WorkflowDeleted"
  | "OperatorStarted"
  | "OperatorStopped"
  | "BeginTransferring" // the gateway began receiving a study's instances from a sender (PS3.15 A.5.3.2)
  | "InstancesTransferred" // the gateway finished receiving them: what was stored, or why not (A.5.3.4)
  | "ReviewVerdict" // a reviewer accepted or rejected a review step, or its review timed out
  | "InstancesExported" // the gateway sent (or failed to send) an export's instances to a DICOMDestination
  | "NodeAuthenticationFailed"; // the gateway refused a node: TLS handshake, unknown AE title, STOW-RS token (A.5.3.11)

export type AuditOutcome = "success" | "minorFailure" | "seriousFailure" | "majorFailure";

export interface AuditFact {
  /** Unique and stable for the fact: a repeat of the same fact has the same id (dedupe key). */
  id: string;
  kind: AuditEventKind;
  time: string; // RFC 3339 with zone
  outcome: AuditOutcome;
  /** human-readable, may hold PHI only through the study fields below, never free text from the study */
  description?: string;
  namespace?: string;
  workflow?: string;
  task?: string;
  step?: string;
  reason?: string;
  /** Where results went (ResultsPublished): a NATS subject or export destination name, no PHI. */
  destination?: string;
  /** Who announced the study (its event's CloudEvents source), when no calling AE title says so. */
  sender?: string;
  /** The sender's network address (IP), for the Source participant's network access point. */
  senderAddress?: string;
  /**
   * The node an export went to (InstancesExported): its AE title (DIMSE) or the URL's host
   * (DICOMweb) as the Destination participant, with its network address; `destination` is then
   * the media identifier.
   */
  exportNode?: { userId: string; aeTitle?: string; address: string };
  /** What a Security Alert is about: the gateway's service that refused a node (a URI, no PHI). */
  alertSubject?: string;
  /** The person who acted (a reviewer's Kubernetes user name): the requesting participant. */
  user?: string;
  study?: {
    studyInstanceUID: string;
    accessionNumber?: string;
    patientId?: string;
    callingAETitle?: string;
    calledAETitle?: string;
    sopClassUIDs?: string[];
    /** SOP classes with instance counts; preferred over sopClassUIDs (DICOM wants the count). */
    sopClasses?: { uid: string; instances: number }[];
  };
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * The fact's time as an xsd:dateTime / FHIR instant with its zone kept (upper-case T and Z).
 * A time without a zone is a producer bug that would make the record ambiguous: it throws.
 */
export function auditTime(fact: Pick<AuditFact, "time" | "kind">): string {
  if (!RFC3339.test(fact.time) || Number.isNaN(Date.parse(fact.time))) {
    throw new Error(
      `audit fact ${fact.kind}: time ${JSON.stringify(fact.time)} is not an RFC 3339 timestamp with a zone`,
    );
  }
  return fact.time.toUpperCase();
}

export interface AuditSink {
  /** Durably accepts the fact (spooled or sent); resolves once it cannot be lost. */
  record(fact: AuditFact): Promise<void>;
}

/** Used where auditing is not configured (unit tests, `radflow send`). */
export const noAudit: AuditSink = { record: async () => undefined };

/**
 * The patient ID a study event carries in its series attributes (DICOM JSON, tag 00100020), for
 * the audit record's Patient participant: audit records are where PHI may go, logs are not.
 */
export function patientIdOf(
  series: readonly { attributes?: Record<string, { Value?: unknown[] }> }[],
): string | undefined {
  for (const s of series) {
    const v = s.attributes?.["00100020"]?.Value?.[0];
    if (typeof v === "string" && v.trim() !== "") return v;
  }
  return undefined;
}
