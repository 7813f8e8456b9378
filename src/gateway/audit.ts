// The PS3.15 audit of what the gateway receives. A transfer is one association (DIMSE) or one
// request (STOW-RS) from one sender; for each study in it the gateway records
//
//   Begin Transferring DICOM Instances (110102)  when the study's first instance arrives
//   DICOM Instances Transferred (110104)         when the transfer ends: the SOP classes and
//                                                counts stored, or why instances were refused
//
// with the sender as Source (calling AE title and peer address; an HTTP client by its address),
// the gateway as Destination (its called AE title, or the application itself), the study and,
// where the headers name one, the patient. Audit records are the one place those identifiers
// may go (facts.ts); logs and metrics here carry kinds and counts only.
//
// Records go through the operator's pipeline (src/audit/pipeline.ts: FHIR AuditEvent on
// radflow.audit.<kind>, DICOM AuditMessage spooled for the syslog forwarder). A record that
// cannot be published now is retried in the background with backoff: an instance is never
// refused because the audit stream is slow, and stop() waits for what is still owed.
import { randomUUID } from "node:crypto";
import type { AuditFact, AuditOutcome, AuditSink } from "../audit/facts.ts";
import { logger } from "../log/logger.ts";
import { auditRecords } from "./metrics.ts";

const log = logger("gateway");

/** What an audit record may say about a study: its UID and, when the headers give them, patient and accession. */
export interface StudySubject {
  study: string;
  patientId?: string;
  accessionNumber?: string;
}

/** The subject of a DICOM data set (dcmjs naturalized), or undefined without a StudyInstanceUID. */
export function subjectOf(dataset: Record<string, unknown>): StudySubject | undefined {
  const s = (v: unknown) => (typeof v === "string" && v.replace(/\0/g, "").trim()) || undefined;
  const study = s(dataset.StudyInstanceUID);
  if (!study) return undefined;
  const patientId = s(dataset.PatientID);
  const accessionNumber = s(dataset.AccessionNumber);
  return { study, ...(patientId ? { patientId } : {}), ...(accessionNumber ? { accessionNumber } : {}) };
}

export interface TransferPeer {
  protocol: "dimse" | "stow";
  callingAETitle?: string;
  calledAETitle?: string;
  /** The sender's IP address. */
  address?: string;
}

/** An IPv4 peer seen on a dual-stack socket is "::ffff:a.b.c.d": audit records want a.b.c.d. */
export function peerAddress(a: string | undefined): string | undefined {
  return a?.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

/** Records facts, retrying in the background; stop() waits for (or gives up on) what is owed. */
export class AuditRecorder {
  private readonly sink: AuditSink;
  private readonly inflight = new Set<Promise<void>>();
  private stopping = false;
  private readonly retry: { initialMs: number; maxMs: number; attempts: number };

  constructor(sink: AuditSink, retry: Partial<AuditRecorder["retry"]> = {}) {
    this.sink = sink;
    this.retry = { initialMs: 500, maxMs: 30_000, attempts: 20, ...retry };
  }

  record(fact: AuditFact): void {
    const p = this.attempt(fact).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  private async attempt(fact: AuditFact): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.sink.record(fact);
        auditRecords.inc({ kind: fact.kind, outcome: "recorded" });
        return;
      } catch (e) {
        if (this.stopping || i + 1 >= this.retry.attempts) {
          auditRecords.inc({ kind: fact.kind, outcome: "failed" });
          log.error({ kind: fact.kind, id: fact.id, err: (e as Error).message }, "audit record lost");
          return;
        }
        auditRecords.inc({ kind: fact.kind, outcome: "retried" });
        if (i === 0) log.warn({ kind: fact.kind, err: (e as Error).message }, "audit record not published; retrying");
        await new Promise((r) => setTimeout(r, Math.min(this.retry.maxMs, this.retry.initialMs * 2 ** i)));
      }
    }
  }

  /** Waits for every record still being published (up to graceMs), then gives up on the rest. */
  async stop(graceMs = 10_000): Promise<void> {
    const all = Promise.allSettled([...this.inflight]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.stopping = true;
  }

  /** Resolves once every record handed over so far is published or given up (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }
}

interface StudyTransfer {
  subject: StudySubject;
  /** Order of the study in the transfer: fact ids name it instead of its UID. */
  n: number;
  /** Stored instances by SOP class. */
  stored: Map<string, number>;
  /** Refused instances by outcome (out-of-resources, invalid, mismatch). */
  refused: Map<string, number>;
}

/** One association's or request's studies, audited as PS3.15 transfers. */
export class TransferAudit {
  private readonly studies = new Map<string, StudyTransfer>();
  private readonly id = randomUUID();
  private ended = false;
  private readonly recorder: AuditRecorder;
  private readonly peer: TransferPeer;
  private readonly now: () => Date;

  constructor(recorder: AuditRecorder, peer: TransferPeer, now: () => Date = () => new Date()) {
    this.recorder = recorder;
    this.peer = peer;
    this.now = now;
  }

  private study(subject: StudySubject): StudyTransfer {
    let t = this.studies.get(subject.study);
    if (!t) {
      t = { subject, n: this.studies.size, stored: new Map(), refused: new Map() };
      this.studies.set(subject.study, t);
      this.recorder.record(this.fact(t, "BeginTransferring", "success"));
    } else if (!t.subject.patientId && subject.patientId) t.subject = { ...t.subject, ...subject };
    return t;
  }

  /** An instance was stored (and journaled) and its sender told so. */
  stored(subject: StudySubject, sopClassUID: string | undefined): void {
    if (this.ended) return;
    const t = this.study(subject);
    const c = sopClassUID ?? "unknown";
    t.stored.set(c, (t.stored.get(c) ?? 0) + 1);
  }

  /**
   * An instance was refused. Without a study (not DICOM, cut before its StudyInstanceUID) there
   * is nothing PS3.15 lets a transfer record name: metrics and logs count it.
   */
  refused(subject: StudySubject | undefined, outcome: string): void {
    if (this.ended || !subject) return;
    const t = this.study(subject);
    t.refused.set(outcome, (t.refused.get(outcome) ?? 0) + 1);
  }

  /** The association or request ended: one Instances Transferred record per study. */
  end(interruption?: string): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.studies.values()) {
      const stored = [...t.stored.values()].reduce((a, b) => a + b, 0);
      const refused = [...t.refused.values()].reduce((a, b) => a + b, 0);
      const outcome: AuditOutcome =
        stored === 0 ? "seriousFailure" : refused > 0 || interruption ? "minorFailure" : "success";
      const why = [...t.refused].map(([o, n]) => `${n} ${o}`).join(", ");
      const reason =
        [refused > 0 ? `instances refused (${why})` : undefined, interruption].filter(Boolean).join("; ") || undefined;
      const description = outcome === "success" ? undefined : `${stored} stored, ${refused} refused`;
      this.recorder.record({
        ...this.fact(t, "InstancesTransferred", outcome),
        ...(reason ? { reason } : {}),
        ...(description ? { description } : {}),
      });
    }
  }

  private fact(t: StudyTransfer, kind: "BeginTransferring" | "InstancesTransferred", outcome: AuditOutcome) {
    const p = this.peer;
    const sopClasses = [...t.stored].map(([uid, instances]) => ({ uid, instances })).filter((c) => c.uid !== "unknown");
    const fact: AuditFact = {
      id: `gw-${this.id}-${t.n}-${kind === "BeginTransferring" ? "b" : "t"}`,
      kind,
      time: this.now().toISOString(),
      outcome,
      ...(p.protocol === "stow" ? { sender: "DICOMweb STOW-RS client" } : {}),
      ...(p.address ? { senderAddress: p.address } : {}),
      study: {
        studyInstanceUID: t.subject.study,
        ...(t.subject.accessionNumber ? { accessionNumber: t.subject.accessionNumber } : {}),
        ...(t.subject.patientId ? { patientId: t.subject.patientId } : {}),
        ...(p.callingAETitle ? { callingAETitle: p.callingAETitle } : {}),
        ...(p.calledAETitle ? { calledAETitle: p.calledAETitle } : {}),
        ...(kind === "InstancesTransferred" && sopClasses.length ? { sopClasses } : {}),
      },
    };
    return fact;
  }
}
