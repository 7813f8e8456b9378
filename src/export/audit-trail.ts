// The export worker's audit trail: the gateway's pipeline (src/gateway/gateway.ts), on the
// export side's own NATS connection.
import type { NatsConnection } from "@nats-io/transport-node";
import type { AuditSink } from "../audit/facts.ts";
import { type GatewayAuditConfig, startGatewayAuditTrail } from "../gateway/gateway.ts";

export async function startExportAudit(
  nc: NatsConnection,
  a: GatewayAuditConfig | undefined,
): Promise<{ sink: AuditSink; stop(): Promise<void> } | undefined> {
  if (!a || a.mode === "off") return undefined;
  const trail = await startGatewayAuditTrail(nc, a);
  return { sink: trail, stop: () => trail.stop() };
}
