// Security Alerts (PS3.15 A.5.3.11, type Node Authentication) for the nodes the gateway refuses:
// a DICOM TLS handshake without an acceptable certificate, an association from a calling AE
// title not on the allow-list (or to a called title that is not ours), a STOW-RS request without
// a valid bearer token. Each is audited with the refused node (its AE title or kind of client,
// and its address) and the service that refused it as the alert's subject.
//
// Rate-limited, so that a port scanner or a misconfigured modality retrying every second cannot
// flood the audit trail: per refused node and reason at most one record per window (the first
// refusal at once; the ones after it are counted, and a summary record with the count follows
// when the window ends), and at most `maxPerWindow` records per window over all nodes (the rest
// are counted in radflow_gateway_security_alerts_total{outcome="suppressed"} and a log line).
import { randomUUID } from "node:crypto";
import type { AuditFact } from "../audit/facts.ts";
import { logger } from "../log/logger.ts";
import type { AuditRecorder } from "./audit.ts";
import { securityAlerts } from "./metrics.ts";

const log = logger("gateway");

export type RefusalReason = "tls-handshake" | "calling-ae" | "called-ae" | "stow-token";

const TEXT: Record<RefusalReason, string> = {
  "tls-handshake": "DICOM TLS handshake refused: no certificate the gateway's CA signed",
  "calling-ae": "association rejected: calling AE title not recognized",
  "called-ae": "association rejected: called AE title not recognized",
  "stow-token": "STOW-RS request refused: missing or invalid bearer token",
};

export interface Refusal {
  reason: RefusalReason;
  /** the refused node's address (IP) */
  address?: string;
  /** its calling AE title, when it gave one */
  callingAETitle?: string;
  /** the gateway's service that refused it (dicom://host:port, http://host:port/studies) */
  service: string;
}

export interface SecurityAlertOptions {
  windowMs?: number;
  maxPerWindow?: number;
  now?: () => Date;
}

interface Pending {
  refusal: Refusal;
  suppressed: number;
  since: Date;
}

export class SecurityAlerts {
  private readonly recorder: Pick<AuditRecorder, "record">;
  private readonly windowMs: number;
  private readonly maxPerWindow: number;
  private readonly now: () => Date;
  /** nodes already recorded in this window, with what was refused since */
  private readonly seen = new Map<string, Pending>();
  private recordedInWindow = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(recorder: Pick<AuditRecorder, "record">, o: SecurityAlertOptions = {}) {
    this.recorder = recorder;
    this.windowMs = o.windowMs ?? 60_000;
    this.maxPerWindow = o.maxPerWindow ?? 50;
    this.now = o.now ?? (() => new Date());
    this.timer = setInterval(() => this.flush(), this.windowMs);
    this.timer.unref();
  }

  /** A node was refused: record it now, or count it for the window's summary. */
  refused(r: Refusal): void {
    const key = `${r.reason}|${r.address ?? ""}|${r.callingAETitle ?? ""}|${r.service}`;
    const p = this.seen.get(key);
    if (p) {
      p.suppressed++;
      securityAlerts.inc({ outcome: "suppressed" });
      return;
    }
    this.seen.set(key, { refusal: r, suppressed: 0, since: this.now() });
    this.emit(r);
  }

  /** The window ended: one summary per node refused again since its record; a fresh window. */
  flush(): void {
    const pending = [...this.seen.values()].filter((p) => p.suppressed > 0);
    this.seen.clear();
    this.recordedInWindow = 0;
    for (const p of pending) {
      this.emit(p.refusal, `${p.suppressed} more refusal(s) of this node since ${p.since.toISOString()}`);
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.flush();
  }

  private emit(r: Refusal, description?: string): void {
    if (this.recordedInWindow >= this.maxPerWindow) {
      securityAlerts.inc({ outcome: "suppressed" });
      if (this.recordedInWindow === this.maxPerWindow)
        log.warn({ maxPerWindow: this.maxPerWindow }, "security alerts over their limit: counted, not audited");
      this.recordedInWindow++;
      return;
    }
    this.recordedInWindow++;
    securityAlerts.inc({ outcome: "recorded" });
    const fact: AuditFact = {
      id: `gw-alert-${randomUUID()}`,
      kind: "NodeAuthenticationFailed",
      time: this.now().toISOString(),
      outcome: "minorFailure",
      reason: TEXT[r.reason],
      ...(description ? { description } : {}),
      // the refused node: its calling AE title, else what kind of client it was
      sender: r.callingAETitle || (r.reason === "stow-token" ? "DICOMweb STOW-RS client" : "DICOM TLS client"),
      ...(r.address ? { senderAddress: r.address } : {}),
      alertSubject: r.service,
    };
    this.recorder.record(fact);
  }
}
