import { AUDIT_EVENT_KINDS } from "../../../src/audit/codes.ts";
import type { AuditEventKind, AuditFact } from "../../../src/audit/facts.ts";
import type { AuditSource } from "../../../src/audit/source.ts";

export const SOURCE: AuditSource = {
  sourceId: "radflow@test-cluster",
  enterpriseSiteId: "Hôpital Süd",
  application: "radflow-operator",
  hostname: "radflow-operator-7d9f-abcde",
  processId: "4242",
};

export const STUDY = {
  studyInstanceUID: "1.2.840.113619.2.55.3.604688119.971.1234567890.123",
  accessionNumber: "ACC-2024-0001",
  patientId: "PAT^123",
  callingAETitle: "CT_SCANNER_1",
  calledAETitle: "RADFLOW_GW",
  sopClasses: [{ uid: "1.2.840.10008.5.1.4.1.1.2", instances: 312 }],
  sopClassUIDs: ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.22"],
};

const STUDY_KINDS = new Set<AuditEventKind>([
  "StudyReceived",
  "StudyUnmatched",
  "StudyRejected",
  "BeginTransferring",
  "InstancesTransferred",
]);
const TASK_KINDS = new Set<AuditEventKind>([
  "TaskCreated",
  "StepStarted",
  "GPUWait",
  "StepFinished",
  "TaskSucceeded",
  "TaskFailed",
  "TaskCanceled",
  "TaskTimedOut",
  "ResultsPublished",
  "ReviewVerdict",
]);

/** A realistic fact of each kind, with every field that kind would carry. */
export function sampleFact(kind: AuditEventKind, i = 0): AuditFact {
  const base: AuditFact = {
    id: `fact-${kind}-${i}`,
    kind,
    time: "2025-03-14T09:26:53.589+01:00",
    outcome: kind === "TaskFailed" || kind === "StudyRejected" ? "seriousFailure" : "success",
  };
  if (STUDY_KINDS.has(kind)) {
    return {
      ...base,
      namespace: "radiology",
      study: { ...STUDY },
      reason: kind === "StudyRejected" ? "Invalid" : undefined,
    };
  }
  if (TASK_KINDS.has(kind)) {
    return {
      ...base,
      namespace: "radiology",
      workflow: "head-ct-hemorrhage",
      task: "head-ct-hemorrhage-5f2a9c1e",
      step: kind.startsWith("Step") || kind === "GPUWait" ? "detect" : kind === "ReviewVerdict" ? "review" : undefined,
      reason: kind === "TaskFailed" ? "StepFailed" : kind === "ReviewVerdict" ? "Accepted" : undefined,
      user: kind === "ReviewVerdict" ? "system:serviceaccount:radiology:dr-house" : undefined,
      description: kind === "TaskFailed" ? "step 'detect' exited with code 3 <OOM> & retried 2×" : undefined,
      destination: kind === "ResultsPublished" ? "radflow.task.completed" : undefined,
      study: { studyInstanceUID: STUDY.studyInstanceUID, accessionNumber: STUDY.accessionNumber },
    };
  }
  if (kind === "InstancesExported") {
    // the gateway's export of a task's results to a DICOMDestination (src/export/audit.ts)
    return {
      ...base,
      namespace: "radiology",
      workflow: "head-ct-hemorrhage",
      task: "head-ct-hemorrhage-5f2a9c1e",
      step: "detect",
      description: "1 instance(s) sent (content auto)",
      destination: "/apis/radflow.io/v1alpha1/namespaces/radiology/dicomdestinations/pacs",
      exportNode: { userId: "PACS_MAIN", aeTitle: "PACS_MAIN", address: "10.20.30.40" },
      study: {
        studyInstanceUID: STUDY.studyInstanceUID,
        accessionNumber: STUDY.accessionNumber,
        patientId: STUDY.patientId,
      },
    };
  }
  if (kind === "NodeAuthenticationFailed") {
    // the gateway refused an association from an unknown calling AE title (src/gateway/security-alerts.ts)
    return {
      ...base,
      outcome: "minorFailure",
      sender: "INTRUDER",
      senderAddress: "192.0.2.66",
      alertSubject: "dicom://radflow-gateway-0:11112",
      reason: "association rejected: calling AE title not recognized",
    };
  }
  if (kind.startsWith("Workflow")) return { ...base, namespace: "radiology", workflow: "head-ct-hemorrhage" };
  return { ...base, description: kind === "OperatorStopped" ? "SIGTERM" : undefined };
}

export const ALL_KINDS = AUDIT_EVENT_KINDS;
