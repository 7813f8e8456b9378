// Who reports the audit records: the AuditSourceIdentification of the DICOM message, the
// application ActiveParticipant, the syslog HOSTNAME and PROCID, the FHIR AuditEvent.source.
import { hostname } from "node:os";

export interface AuditSource {
  /** AuditSourceID / FHIR source.observer: names this radflow installation, e.g. "radflow@ct-cluster". */
  sourceId: string;
  /** AuditEnterpriseSiteID / FHIR source.site, when the site has one. */
  enterpriseSiteId?: string;
  /** UserID of radflow as the application ActiveParticipant. */
  application: string;
  /** This replica's host (pod) name: NetworkAccessPointID and syslog HOSTNAME. */
  hostname: string;
  /** Process ID: AlternativeUserID of the application participant and syslog PROCID. */
  processId: string;
}

/** The source as seen from this process; `sourceId` defaults to "radflow@<hostname>". */
export function localAuditSource(o: Partial<AuditSource> = {}): AuditSource {
  const host = o.hostname ?? process.env.POD_NAME ?? hostname();
  return {
    sourceId: o.sourceId ?? `radflow@${host}`,
    enterpriseSiteId: o.enterpriseSiteId,
    application: o.application ?? "radflow-operator",
    hostname: host,
    processId: o.processId ?? String(process.pid),
  };
}
