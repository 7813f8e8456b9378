// The gateway process: DIMSE SCP and STOW-RS in, study events on JetStream out, with health and
// metrics. Leader-free: replicas share nothing but the study volume and JetStream.
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { SUBJECT } from "../api/v1alpha1/events.ts";
import { loadAuditCodes } from "../audit/codes.ts";
import { AuditTrail } from "../audit/pipeline.ts";
import { localAuditSource } from "../audit/source.ts";
import { connectNats, type NatsSettings } from "../ingest/connect.ts";
import { streamConfigs } from "../ingest/streams.ts";
import { logger } from "../log/logger.ts";
import { type MetricsServer, startMetricsServer } from "../metrics/server.ts";
import type { AEPolicy } from "./ae-policy.ts";
import { Assembler, type Publish } from "./assembler.ts";
import { AuditRecorder } from "./audit.ts";
import { type DimseServer, startDimse } from "./dimse.ts";
import { Journal } from "./journal.ts";
import { gatewayRegistry } from "./metrics.ts";
import { type Refusal, SecurityAlerts } from "./security-alerts.ts";
import { StudyStorage } from "./storage.ts";
import { type StowServer, startStow } from "./stow.ts";
import { BearerTokens } from "./stow-auth.ts";

const log = logger("gateway");

export interface GatewayConfig {
  storageDir: string;
  dicomPort: number;
  /** STOW-RS port; 0 = off (tests pass "ephemeral" as -1). */
  httpPort: number;
  metricsPort: number;
  policy: AEPolicy;
  quietMs: number;
  maxWaitMs: number;
  nats: NatsSettings;
  subject?: string;
  /** CloudEvents source of the study events. */
  source?: string;
  maxPduLength?: number;
  audit?: GatewayAuditConfig;
  /** DICOM TLS on the DIMSE port: PEM files (a CA makes client certificates mandatory). */
  dicomTls?: { certFile: string; keyFile: string; caFile?: string };
  /** STOW-RS bearer tokens, one per line (a mounted Secret); open to anyone when unset. */
  stowTokenFile?: string;
}

/**
 * The gateway's PS3.15 records go through the operator's audit pipeline: FHIR AuditEvents on
 * radflow.audit.<kind> ("fhir"), and with "syslog" DICOM AuditMessages into the syslog spool too,
 * which the operator's leader forwards to the Audit Record Repository (the gateway never
 * forwards: one forwarder keeps the records in order).
 */
export interface GatewayAuditConfig {
  mode: "off" | "fhir" | "syslog";
  /** Site code table (as the operator's --audit-codes). */
  codes?: string;
  /** The operator's spool when RADFLOW_AUDIT_SPOOL_NAME names one. */
  spool?: { stream: string; subject: string; consumer: string };
  replicas?: number;
}

export interface Gateway {
  readonly dicomPort: number;
  readonly httpPort?: number;
  readonly metricsPort?: number;
  /** Stops taking instances, publishes what is pending, closes. */
  stop(): Promise<void>;
}

/** Port numbers: -1 asks for an ephemeral port (tests), 0 turns the listener off. */
const bindPort = (p: number) => Math.max(p, 0);

export async function startGateway(c: GatewayConfig): Promise<Gateway> {
  // configuration errors first, before anything listens: a missing certificate is no plain-TCP fallback
  const tls = c.dicomTls
    ? {
        cert: await readFile(c.dicomTls.certFile),
        key: await readFile(c.dicomTls.keyFile),
        ...(c.dicomTls.caFile ? { ca: await readFile(c.dicomTls.caFile) } : {}),
      }
    : undefined;
  const auth = c.stowTokenFile ? new BearerTokens(c.stowTokenFile) : undefined;
  await auth?.load();
  const storage = new StudyStorage(c.storageDir);
  await storage.init();
  const journal = new Journal(c.storageDir);
  await journal.init();

  let nc: NatsConnection | undefined;
  let stopping = false;
  const subject = c.subject ?? SUBJECT.studyReceived;
  const publish: Publish = async (subj, payload, msgID) => {
    if (!nc) throw new Error("not connected to NATS");
    const ack = await jetstream(nc).publish(subj, payload, { msgID, timeout: 10_000 });
    return { duplicate: ack.duplicate };
  };
  const assembler = new Assembler(journal, publish, {
    quietMs: c.quietMs,
    maxWaitMs: c.maxWaitMs,
    source: c.source,
    subject,
  });

  // the health endpoint comes first so that a slow NATS start is visible as "not ready"
  const metrics: MetricsServer | undefined =
    c.metricsPort !== 0 ? await startMetricsServer(bindPort(c.metricsPort), { registry: gatewayRegistry }) : undefined;
  metrics?.probe("/healthz", () => ({ ok: !stopping, detail: "stopping" }));
  let listening = false;
  // ready only once the journals are replayed and both listeners take connections
  metrics?.probe("/readyz", () => ({
    ok: !stopping && listening && nc !== undefined && !nc.isClosed(),
    detail: stopping ? "stopping" : !nc ? "connecting to NATS" : !listening ? "starting" : "NATS connection closed",
  }));

  nc = await connectNats({ ...c.nats, name: c.nats.name ?? "radflow-gateway" });
  await ensureStudyStream(nc, subject);
  const audit = await startAudit(nc, c.audit ?? { mode: "fhir" });
  // refused nodes (TLS, AE titles, STOW-RS tokens) as rate-limited Security Alerts
  const alerts = audit ? new SecurityAlerts(audit.recorder) : undefined;
  const ports: { dicom?: number; http?: number } = {};
  const host = hostname();
  const refused = (service: () => string) => (r: Omit<Refusal, "service">) =>
    alerts?.refused({ ...r, service: service() });

  // journals first: what was acknowledged before a crash is published before anything new
  const rec = await assembler.recover();
  if (rec.studies) log.info(rec, "journals replayed");

  const dicom: DimseServer = await startDimse({
    port: bindPort(c.dicomPort),
    policy: c.policy,
    storage,
    assembler,
    maxPduLength: c.maxPduLength,
    audit: audit?.recorder,
    tls,
    refused: refused(() => `dicom://${host}:${ports.dicom}`),
  });
  ports.dicom = dicom.port;
  const stow: StowServer | undefined =
    c.httpPort !== 0
      ? await startStow({
          port: bindPort(c.httpPort),
          storage,
          assembler,
          audit: audit?.recorder,
          auth,
          refused: refused(() => `http://${host}:${ports.http}/studies`),
        })
      : undefined;
  ports.http = stow?.port;
  listening = true;
  log.info(
    {
      dicomPort: dicom.port,
      httpPort: stow?.port,
      metricsPort: metrics?.port,
      quietMs: c.quietMs,
      maxWaitMs: c.maxWaitMs,
      sources: c.policy.sources.size,
      dicomTls: !!tls,
      clientCertificates: !!tls?.ca,
      stowAuth: !!auth,
    },
    "gateway listening",
  );
  if (c.policy.sources.size === 0) log.warn("no --source allow-list: any calling AE title may store");

  return {
    dicomPort: dicom.port,
    httpPort: stow?.port,
    metricsPort: metrics?.port,
    stop: async () => {
      stopping = true;
      await Promise.all([dicom.close(), stow?.close()]);
      await assembler.flushAll();
      await assembler.stop();
      alerts?.stop();
      await audit?.stop();
      await nc?.drain().catch(() => {});
      await metrics?.close();
    },
  };
}

/**
 * The gateway's audit pipeline (receiving and export side alike): FHIR AuditEvents on
 * radflow.audit.<kind> and, with --audit syslog, the operator's spool — filled here and drained by
 * the operator's leader, so this transport never sends.
 */
export async function startGatewayAuditTrail(nc: NatsConnection, a: GatewayAuditConfig): Promise<AuditTrail> {
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
  return trail;
}

/** The audit trail of received studies, publishing through the operator's streams. */
async function startAudit(
  nc: NatsConnection,
  a: GatewayAuditConfig,
): Promise<{ recorder: AuditRecorder; stop(): Promise<void> } | undefined> {
  if (a.mode === "off") {
    log.warn("audit off: received studies leave no PS3.15 record");
    return undefined;
  }
  const trail = await startGatewayAuditTrail(nc, a);
  const recorder = new AuditRecorder(trail);
  return {
    recorder,
    stop: async () => {
      await recorder.stop();
      await trail.stop();
    },
  };
}

/**
 * Makes sure a stream captures the study subject. The operator owns the streams' configuration
 * (it may add MONAI's subjects), so the gateway only adds the studies stream when none exists.
 */
async function ensureStudyStream(nc: NatsConnection, subject: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.find(subject);
  } catch {
    const cfg = streamConfigs()[0];
    if (cfg?.name)
      await jsm.streams
        .add({ ...cfg, name: cfg.name })
        .catch((e: Error) => log.warn({ err: e.message }, "studies stream not created"));
  }
}
