// The PS3.15 audit of an export's outcome (A.5.3.6 Export, 110106, action R): the gateway as the
// Source, the destination node as Destination (its AE title or the DICOMweb URL's host, at its
// network address), the Media it wrote to, the study and, where the sent headers name one, the
// patient. Sent is a success; Sent with warning statuses a minor failure; Failed a serious one.
//
// Media identifier: PS3.15 wants one on the 110154 participant even for a network export. radflow
// uses the DICOMDestination's API path (/apis/radflow.io/v1alpha1/namespaces/<ns>/dicomdestinations/<name>):
// it is a URI (MediaType 110037 "URI"), names the object the site configured and can look up, holds
// no PHI, and stays the same whether the destination speaks DIMSE or DICOMweb; the endpoint itself
// is the Destination participant.
//
// One id per export outcome: <task uid>:export:<step>:<destination>:<phase>. A request redelivered
// after a crash between the send and the ack records the same fact again, and the audit pipeline
// (Nats-Msg-Id) keeps it once.
import { open } from "node:fs/promises";
import type { DICOMDestination } from "../api/v1alpha1/dicomdestination.ts";
import type { ExportStatus } from "../api/v1alpha1/inferencetask.ts";
import type { AuditFact, AuditOutcome } from "../audit/facts.ts";
import { readHeaderFile } from "../dicom/header.ts";
import type { Instance } from "./instances.ts";
import { readPart10Meta } from "./raw-dataset.ts";
import type { ExportRequestData } from "./request.ts";

/** What the sent instances' headers say: the patient (for the audit record only) and SOP classes. */
export interface ExportSubject {
  patientId?: string;
  sopClasses: { uid: string; instances: number }[];
}

/** The SOP class from a file's meta group (a few KiB read, not the data set). */
async function metaSopClass(p: string): Promise<string | undefined> {
  const fh = await open(p, "r");
  try {
    const buf = Buffer.alloc(8192);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return readPart10Meta(buf.subarray(0, bytesRead)).sopClassUID;
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Reads the patient and SOP classes from what was sent: each file's meta group for its SOP class,
 * and data set headers (never pixel data) only until one names the patient — a forwarded study
 * of 2,000 instances is not read twice.
 */
export async function exportSubject(instances: Instance[]): Promise<ExportSubject> {
  let patientId: string | undefined;
  const counts = new Map<string, number>();
  const count = (uid: unknown) => {
    if (typeof uid === "string" && uid) counts.set(uid, (counts.get(uid) ?? 0) + 1);
  };
  const pidOf = (ds: Record<string, unknown> | undefined) =>
    typeof ds?.PatientID === "string" ? ds.PatientID.replace(/\0/g, "").trim() || undefined : undefined;
  for (const inst of instances) {
    if (inst.kind === "bytes") {
      count(inst.header?.SOPClassUID);
      patientId ??= pidOf(inst.header);
      continue;
    }
    count(await metaSopClass(inst.path));
    if (!patientId) {
      const h = await readHeaderFile(inst.path).catch(() => undefined);
      patientId = pidOf(h?.kind === "dicom" ? h.header.dataset : undefined);
    }
  }
  return {
    ...(patientId ? { patientId } : {}),
    sopClasses: [...counts].map(([uid, instances]) => ({ uid, instances })),
  };
}

/** The audit id of one export outcome (see the header). */
export function exportAuditId(taskUid: string, step: string, destination: string, phase: string): string {
  return `${taskUid}:export:${step}:${destination}:${phase}`;
}

/** The media identifier of a destination: its API path (see the header). */
export function destinationMediaId(namespace: string, name: string): string {
  return `/apis/radflow.io/v1alpha1/namespaces/${namespace}/dicomdestinations/${name}`;
}

/** The destination node as the audit names it: AE title and host (DIMSE), or the URL's host (DICOMweb). */
export function exportNode(d: DICOMDestination | undefined): AuditFact["exportNode"] {
  if (d?.spec.dimse) {
    const m = d.spec.dimse;
    return { userId: m.calledAETitle, aeTitle: m.calledAETitle, address: m.host };
  }
  if (d?.spec.dicomweb) {
    const host = new URL(d.spec.dicomweb.url).hostname.replace(/^\[|\]$/g, "");
    return { userId: host, address: host };
  }
  return undefined;
}

/** The fact of one recorded outcome; none for Pending (still trying) or Skipped (nothing was to be sent). */
export function exportAuditFact(
  r: ExportRequestData,
  entry: Pick<ExportStatus, "phase" | "reason" | "message" | "instances">,
  o: { destination?: DICOMDestination; subject?: ExportSubject; warnings?: number; time: Date },
): AuditFact | undefined {
  if (entry.phase !== "Sent" && entry.phase !== "Failed") return undefined;
  const outcome: AuditOutcome =
    entry.phase === "Failed" ? "seriousFailure" : (o.warnings ?? 0) > 0 ? "minorFailure" : "success";
  const node = exportNode(o.destination);
  const s = o.subject;
  return {
    id: exportAuditId(r.task.uid, r.step, r.destination, entry.phase),
    kind: "InstancesExported",
    time: o.time.toISOString(),
    outcome,
    namespace: r.task.namespace,
    workflow: r.workflow,
    task: r.task.name,
    step: r.step,
    ...(entry.reason ? { reason: entry.reason } : {}),
    description:
      entry.phase === "Sent"
        ? `${entry.instances ?? 0} instance(s) sent${o.warnings ? `, ${o.warnings} with a warning status` : ""} (content ${r.content})`
        : (entry.message ?? "export failed").slice(0, 512),
    destination: destinationMediaId(r.task.namespace, r.destination),
    ...(node ? { exportNode: node } : {}),
    study: {
      studyInstanceUID: r.study.studyInstanceUID,
      ...(r.study.accessionNumber ? { accessionNumber: r.study.accessionNumber } : {}),
      ...(s?.patientId ? { patientId: s.patientId } : {}),
      ...(s?.sopClasses.length ? { sopClasses: s.sopClasses } : {}),
    },
  };
}
