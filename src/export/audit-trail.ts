// The export worker's audit trail: the same pipeline as the gateway's receiving side (FHIR
// AuditEvents on radflow.audit.<kind>, with --audit syslog also the operator's syslog spool,
// which only the operator's leader forwards), on the export side's own NATS connection.
import type { NatsConnection } from "@nats-io/transport-node";
import { loadAuditCodes } from "../audit/codes.ts";
import type { AuditSink } from "../audit/facts.ts";
import { AuditTrail } from "../audit/pipeline.ts";
import { localAuditSource } from "../audit/source.ts";
import type { GatewayAuditConfig } from "../gateway/gateway.ts";

export async function startExportAudit(
  nc: NatsConnection,
  a: GatewayAuditConfig | undefined,
): Promise<{ sink: AuditSink; stop(): Promise<void> } | undefined> {
  if (!a || a.mode === "off") return undefined;
  const trail = new AuditTrail({
    nc,
    codes: loadAuditCodes(a.codes),
    source: localAuditSource({ application: "radflow-gateway" }),
    syslog:
      a.mode === "syslog"
        ? {
            send: () => Promise.reject(new Error("the gateway does not forward audit records")),
            close: async () => {},
          }
        : undefined,
    forward: false,
    replicas: a.replicas,
    spool: a.spool,
  });
  await trail.start();
  return { sink: trail, stop: () => trail.stop() };
}
