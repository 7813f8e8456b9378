// The gateway's Prometheus metrics, in a registry of its own (the gateway is its own process and
// its /metrics should not list the operator's series). Same conventions as src/metrics: radflow_
// prefix, labels are outcomes, protocols and codes only — never an AE title's study, a UID or a path.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const gatewayRegistry = new Registry();
collectDefaultMetrics({ register: gatewayRegistry, prefix: "radflow_" });

export const associations = new Counter({
  name: "radflow_gateway_associations_total",
  help: "DICOM associations, by outcome (accepted, rejected-calling-ae, rejected-called-ae, rejected-tls, aborted, released).",
  labelNames: ["outcome"] as const,
  registers: [gatewayRegistry],
});
export const activeAssociations = new Gauge({
  name: "radflow_gateway_associations_active",
  help: "DICOM associations open now.",
  registers: [gatewayRegistry],
});
export const instances = new Counter({
  name: "radflow_gateway_instances_total",
  help: "Instances received, by protocol (dimse, stow) and outcome (stored, invalid, mismatch, out-of-resources).",
  labelNames: ["protocol", "outcome"] as const,
  registers: [gatewayRegistry],
});
export const bytesReceived = new Counter({
  name: "radflow_gateway_received_bytes_total",
  help: "Bytes of instances stored, by protocol.",
  labelNames: ["protocol"] as const,
  registers: [gatewayRegistry],
});
export const storageErrors = new Counter({
  name: "radflow_gateway_storage_errors_total",
  help: "Instances refused with an out-of-resources status because the storage failed (disk full, I/O error).",
  registers: [gatewayRegistry],
});
export const studiesPublished = new Counter({
  name: "radflow_gateway_study_events_total",
  help: "Study events published, by kind (first, followup, republished after a restart) and outcome.",
  labelNames: ["kind", "outcome"] as const,
  registers: [gatewayRegistry],
});
export const assemblyWait = new Histogram({
  name: "radflow_gateway_assembly_wait_seconds",
  help: "From a study's first pending instance to its study event being acknowledged by JetStream.",
  buckets: [0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600],
  registers: [gatewayRegistry],
});
export const publishLatency = new Histogram({
  name: "radflow_gateway_publish_lag_seconds",
  help: "From the end of the quiet window (or the maximum wait) to the study event's acknowledgement.",
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
  registers: [gatewayRegistry],
});
export const pendingStudies = new Gauge({
  name: "radflow_gateway_studies_pending",
  help: "Studies with instances not yet announced in a study event.",
  registers: [gatewayRegistry],
});
export const publishErrors = new Counter({
  name: "radflow_gateway_publish_errors_total",
  help: "Failed attempts to publish a study event (retried with backoff).",
  registers: [gatewayRegistry],
});
export const auditRecords = new Counter({
  name: "radflow_gateway_audit_records_total",
  help: "PS3.15 transfer audit records, by kind (BeginTransferring, InstancesTransferred) and outcome (recorded, retried, failed).",
  labelNames: ["kind", "outcome"] as const,
  registers: [gatewayRegistry],
});
export const securityAlerts = new Counter({
  name: "radflow_gateway_security_alerts_total",
  help: "Refused nodes (TLS handshake, unknown AE title, STOW-RS token), by outcome: recorded as a PS3.15 Security Alert, or suppressed by the rate limit.",
  labelNames: ["outcome"] as const,
  registers: [gatewayRegistry],
});
export const stowUnauthorized = new Counter({
  name: "radflow_gateway_stow_unauthorized_total",
  help: "STOW-RS requests refused with 401: no bearer token, or not a valid one.",
  registers: [gatewayRegistry],
});
