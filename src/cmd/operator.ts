// `radflow operator`: the controllers, study ingest, results publishing, audit trail, metrics
// and health endpoints in one process. Flags override RADFLOW_* environment variables.
import { readFileSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { AIWorkflow } from "../api/v1alpha1/index.ts";
import { loadAuditCodes } from "../audit/codes.ts";
import { type AuditSink, noAudit } from "../audit/facts.ts";
import { AuditTrail, SPOOL_CONSUMER, SPOOL_STREAM, SPOOL_SUBJECT } from "../audit/pipeline.ts";
import { OperatorConfig } from "../config/operator-config.ts";
import { type Manager, startManager } from "../controllers/manager.ts";
import { connectNats, natsSettingsFromEnv } from "../ingest/connect.ts";
import { StudyIngest } from "../ingest/consumer.ts";
import { parseStorageTrust, setStorageTrust, watchSecretValues } from "../jobs/trust.ts";
import { loadKubeConfig } from "../kube/client.ts";
import { errMessage } from "../kube/informer.ts";
import { initStudyRefKey, logger } from "../log/logger.ts";
import { startMetricsServer } from "../metrics/server.ts";

const log = logger("operator");

const help = `radflow operator — run the radflow controllers and study ingest

flags (environment variable in brackets):
  --kubeconfig PATH          kubeconfig; in-cluster when unset         [KUBECONFIG]
  --namespaces a,b           namespaces to watch; all when unset       [RADFLOW_NAMESPACES]
  --workers N                concurrent task reconciles (8)            [RADFLOW_WORKERS]
  --identity NAME            leader-election identity (host-pid)       [POD_NAME]
  --leader-elect=false       run without leader election               [RADFLOW_LEADER_ELECT]
  --lease-namespace NS       namespace of the Lease (radflow-system)   [RADFLOW_LEASE_NAMESPACE]
  --lease-duration-ms N      lease duration (15000)                    [RADFLOW_LEASE_DURATION_MS]
  --renew-deadline-ms N      renew deadline (10000)                    [RADFLOW_RENEW_DEADLINE_MS]
  --retry-period-ms N        retry period (2000)                       [RADFLOW_RETRY_PERIOD_MS]
  --metrics-port N           /metrics port (8080; 0 = off)             [RADFLOW_METRICS_PORT]
  --health-port N            /healthz, /readyz port (8081; 0 = off)    [RADFLOW_HEALTH_PORT]
  --max-running-jobs N       global cap on running step Jobs (0: none) [RADFLOW_MAX_RUNNING_JOBS]
  --start-timeout-seconds N  a step pod that cannot start fails (300)  [RADFLOW_START_TIMEOUT_SECONDS]
  --task-ttl-seconds N       TTL of finished tasks (86400; 0: keep)    [RADFLOW_TASK_TTL_SECONDS]
  --priority-class P=NAME    PriorityClass of a priority (repeatable)  [RADFLOW_PRIORITY_CLASSES=stat=a,batch=b]
  --allow-secret NS/NAME     Secret storage may name (repeatable)      [RADFLOW_ALLOWED_SECRETS=ns/a,ns/b]
  --allow-pvc NS/NAME        PVC storage may name (repeatable)         [RADFLOW_ALLOWED_PVCS=ns/a,ns/b]
  --nats-url URL             NATS server(s); no ingest when unset      [RADFLOW_NATS_URL]
  --consumer NAME            durable consumer (radflow-operator)       [RADFLOW_NATS_CONSUMER]
  --monai                    also consume md.workflow.request          [RADFLOW_MONAI=true]
  --stream-replicas N        replicas of streams and KV bucket (1)     [RADFLOW_STREAM_REPLICAS]
  --syslog-host HOST         Audit Record Repository (syslog over TLS) [RADFLOW_SYSLOG_HOST]
  --syslog-port N            its port (6514)                           [RADFLOW_SYSLOG_PORT]
  --syslog-ca FILE           CA that signed its certificate            [RADFLOW_SYSLOG_CA]
  --audit-codes FILE         site remapping of audit event codes       [RADFLOW_AUDIT_CODES]

environment only:
  RADFLOW_NATS_USER, RADFLOW_NATS_PASSWORD(_FILE), RADFLOW_NATS_TOKEN(_FILE), RADFLOW_NATS_CREDS,
  RADFLOW_NATS_NKEY_SEED_FILE, RADFLOW_NATS_TLS_CA, RADFLOW_NATS_TLS_CERT, RADFLOW_NATS_TLS_KEY
                             NATS credentials
  RADFLOW_PHI_HMAC_KEY(_FILE) site key (>= 16 bytes) for study references in logs
  RADFLOW_LOG_LEVEL          info; RADFLOW_LOG_LEVELS=ingest=debug,kube=warn per module
  RADFLOW_AUDIT_SPOOL_NAME   a syslog spool of this installation's own (stream
                             RADFLOW_AUDIT_SPOOL_<name>) when several share one NATS
`;

function csv(s: string | undefined): string[] {
  return (s ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
}

export function parseOperatorArgs(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const { values } = parseArgs({
    args,
    options: {
      help: { type: "boolean" },
      kubeconfig: { type: "string" },
      namespaces: { type: "string" },
      workers: { type: "string" },
      identity: { type: "string" },
      "leader-elect": { type: "string" },
      "lease-namespace": { type: "string" },
      "lease-duration-ms": { type: "string" },
      "renew-deadline-ms": { type: "string" },
      "retry-period-ms": { type: "string" },
      "metrics-port": { type: "string" },
      "health-port": { type: "string" },
      "max-running-jobs": { type: "string" },
      "start-timeout-seconds": { type: "string" },
      "task-ttl-seconds": { type: "string" },
      "priority-class": { type: "string", multiple: true },
      "allow-secret": { type: "string", multiple: true },
      "allow-pvc": { type: "string", multiple: true },
      "nats-url": { type: "string" },
      consumer: { type: "string" },
      monai: { type: "boolean" },
      "stream-replicas": { type: "string" },
      "syslog-host": { type: "string" },
      "syslog-port": { type: "string" },
      "syslog-ca": { type: "string" },
      "audit-codes": { type: "string" },
    },
    allowPositionals: false,
  });
  const num = (v: string | undefined) => (v === undefined || v === "" ? undefined : Number(v));
  const pcs = [...(values["priority-class"] ?? []), ...csv(env.RADFLOW_PRIORITY_CLASSES)];
  const cfg = OperatorConfig.parse({
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    namespaces: csv(values.namespaces ?? env.RADFLOW_NAMESPACES),
    workers: num(values.workers ?? env.RADFLOW_WORKERS),
    identity: values.identity ?? env.POD_NAME ?? `${os.hostname()}-${process.pid}`,
    leaderElection: (values["leader-elect"] ?? env.RADFLOW_LEADER_ELECT ?? "true") !== "false",
    leaseNamespace: values["lease-namespace"] ?? env.RADFLOW_LEASE_NAMESPACE,
    leaseDurationMs: num(values["lease-duration-ms"] ?? env.RADFLOW_LEASE_DURATION_MS),
    renewDeadlineMs: num(values["renew-deadline-ms"] ?? env.RADFLOW_RENEW_DEADLINE_MS),
    retryPeriodMs: num(values["retry-period-ms"] ?? env.RADFLOW_RETRY_PERIOD_MS),
    metricsPort: num(values["metrics-port"] ?? env.RADFLOW_METRICS_PORT),
    healthPort: num(values["health-port"] ?? env.RADFLOW_HEALTH_PORT),
    maxRunningJobs: num(values["max-running-jobs"] ?? env.RADFLOW_MAX_RUNNING_JOBS),
    startTimeoutSeconds: num(values["start-timeout-seconds"] ?? env.RADFLOW_START_TIMEOUT_SECONDS),
    taskTtlSeconds: num(values["task-ttl-seconds"] ?? env.RADFLOW_TASK_TTL_SECONDS),
    priorityClasses: Object.fromEntries(pcs.map((p) => p.split("=").map((x) => x.trim()))),
    nats: {
      url: values["nats-url"] ?? env.RADFLOW_NATS_URL,
      consumer: values.consumer ?? env.RADFLOW_NATS_CONSUMER ?? "radflow-operator",
      monai: values.monai ?? env.RADFLOW_MONAI === "true",
      streamReplicas: num(values["stream-replicas"] ?? env.RADFLOW_STREAM_REPLICAS),
    },
  });
  const syslogHost = values["syslog-host"] ?? env.RADFLOW_SYSLOG_HOST;
  const syslog = syslogHost
    ? {
        host: syslogHost,
        port: Number(values["syslog-port"] ?? env.RADFLOW_SYSLOG_PORT ?? 6514),
        caFile: values["syslog-ca"] ?? env.RADFLOW_SYSLOG_CA,
      }
    : undefined;
  return {
    help: values.help === true,
    cfg,
    syslog,
    auditCodes: values["audit-codes"] ?? env.RADFLOW_AUDIT_CODES,
    auditSpool: auditSpool(env.RADFLOW_AUDIT_SPOOL_NAME),
    storageTrust: parseStorageTrust(
      [...(values["allow-secret"] ?? []), ...csv(env.RADFLOW_ALLOWED_SECRETS)],
      [...(values["allow-pvc"] ?? []), ...csv(env.RADFLOW_ALLOWED_PVCS)],
    ),
  };
}

/** The syslog spool named by RADFLOW_AUDIT_SPOOL_NAME; undefined: the shared default spool. */
export function auditSpool(
  name: string | undefined,
): { stream: string; subject: string; consumer: string } | undefined {
  if (!name) return undefined;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw new Error(
      `RADFLOW_AUDIT_SPOOL_NAME ${JSON.stringify(name)}: use 1-64 letters, digits, '-' or '_' (it names a JetStream stream and subject)`,
    );
  }
  return {
    stream: `${SPOOL_STREAM}_${name}`,
    subject: `${SPOOL_SUBJECT}.${name}`,
    consumer: `${SPOOL_CONSUMER}-${name}`,
  };
}

export async function main(args: string[]): Promise<number> {
  const { help: wantHelp, cfg, syslog, auditCodes, auditSpool: spool, storageTrust } = parseOperatorArgs(args);
  if (wantHelp) {
    process.stdout.write(help);
    return 0;
  }
  initStudyRefKey(); // RADFLOW_PHI_HMAC_KEY(_FILE): a short key fails here, at start
  const kc = loadKubeConfig(cfg.kubeconfig);
  // the Secrets and PVCs workflows may name, and the Secret values cut out of step outputs
  setStorageTrust(storageTrust);
  await watchSecretValues(kc, storageTrust);

  let nc: NatsConnection | undefined;
  let audit: AuditSink = noAudit;
  let trail: AuditTrail | undefined;
  let ingest: StudyIngest | undefined;
  let backlogged = false;
  if (cfg.nats.url) {
    nc = await connectNats({
      ...natsSettingsFromEnv(),
      servers: csv(cfg.nats.url),
      waitForServer: true,
      name: cfg.identity,
    });
    trail = new AuditTrail({
      nc,
      // the audit streams are as precious as the others: the same replica count
      replicas: cfg.nats.streamReplicas,
      codes: loadAuditCodes(auditCodes),
      syslog: syslog
        ? { host: syslog.host, port: syslog.port, ca: syslog.caFile ? readFileSync(syslog.caFile) : "" }
        : undefined,
      spool,
      // only the leader forwards to the repository (one TLS stream keeps the order)
      forward: false,
      // once per backlog episode (it is called on every change: draining N records would
      // otherwise log N warnings and write N Events); the gauge radflow_audit_backlog has the depth
      onBacklog: (n) => {
        if (n === 0) {
          if (backlogged) log.info("audit record backlog drained");
          backlogged = false;
          return;
        }
        if (backlogged) return;
        backlogged = true;
        log.warn({ backlog: n }, "audit records spooled: the Audit Record Repository is not taking them");
        manager?.operatorEvent(
          "Warning",
          "AuditBacklog",
          `${n} audit record(s) spooled: the Audit Record Repository is not taking them`,
        );
      },
    });
    await trail.start();
    audit = trail;
  }
  const js = nc ? jetstream(nc) : undefined;
  let stopping = false;
  let manager: Manager | undefined;

  manager = await startManager(kc, cfg, {
    audit,
    results: js ? { js, monaiExport: cfg.nats.monai } : undefined,
    onLeading: async (workflows: () => AIWorkflow[]) => {
      if (!nc) return;
      if (syslog) trail?.startForwarding();
      ingest = new StudyIngest({
        nc,
        kubeConfig: kc,
        workflows: { list: workflows },
        audit,
        consumer: cfg.nats.consumer,
        streams: { monai: cfg.nats.monai, replicas: cfg.nats.streamReplicas },
      });
      await ingest.start();
      log.info({ consumer: cfg.nats.consumer }, "study ingest started");
    },
    onLostLeadership: () => {
      log.error("leadership lost: exiting so that a clean restart campaigns again");
      process.exit(1);
    },
  });
  await audit.record({
    id: `${cfg.identity}:OperatorStarted:${Date.now()}`,
    kind: "OperatorStarted",
    time: new Date().toISOString(),
    outcome: "success",
    description: `radflow operator ${cfg.identity} started`,
  });

  const running = manager;
  const metrics = cfg.metricsPort ? await startMetricsServer(cfg.metricsPort) : undefined;
  const health =
    !cfg.healthPort || cfg.healthPort === cfg.metricsPort
      ? metrics
      : await startMetricsServer(cfg.healthPort, { metrics: false });
  health?.probe("/healthz", () => ({ ok: !stopping, detail: "stopping" }));
  health?.probe("/readyz", () => {
    if (stopping) return { ok: false, detail: "stopping" };
    if (!running.ready()) return { ok: false, detail: "informer caches not synced" };
    if (nc?.isClosed()) return { ok: false, detail: "NATS connection closed" };
    return { ok: true };
  });
  log.info(
    { identity: cfg.identity, namespaces: cfg.namespaces, workers: cfg.workers, ingest: !!nc },
    "operator running",
  );

  await new Promise<void>((resolve) => {
    const shutdown = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, "shutting down: stopping intake, finishing in-flight work, releasing the lease");
      void (async () => {
        try {
          await ingest?.stop();
          await manager.stop();
          await audit.record({
            id: `${cfg.identity}:OperatorStopped:${Date.now()}`,
            kind: "OperatorStopped",
            time: new Date().toISOString(),
            outcome: "success",
            description: `radflow operator ${cfg.identity} stopped (${sig})`,
          });
          await trail?.stop();
          await nc?.drain();
        } catch (err) {
          log.error({ err: errMessage(err) }, "error during shutdown");
        }
        await health?.close();
        if (metrics !== health) await metrics?.close();
        resolve();
      })();
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
  });
  return 0;
}
