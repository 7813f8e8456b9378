// `radflow gateway`: receive studies over DICOM (C-STORE, C-ECHO) and DICOMweb (STOW-RS), store
// them where steps read them, and announce each study on JetStream. Flags override RADFLOW_*
// environment variables.
import { parseArgs } from "node:util";
import { SPOOL_CONSUMER, SPOOL_STREAM, SPOOL_SUBJECT } from "../audit/pipeline.ts";
import { startExportAudit } from "../export/audit-trail.ts";
import { startMonaiExportWorker } from "../export/monai-export.ts";
import { kubeDestinations, kubeExportRecorder } from "../export/record.ts";
import { type ExportSettings, startExportWorker } from "../export/worker.ts";
import { parseAETitles, parseSources } from "../gateway/ae-policy.ts";
import { type GatewayConfig, startGateway } from "../gateway/gateway.ts";
import { connectNats, natsSettingsFromEnv } from "../ingest/connect.ts";
import { loadKubeConfig } from "../kube/client.ts";
import { EventRecorder } from "../kube/events.ts";
import { initStudyRefKey, logger } from "../log/logger.ts";

const log = logger("gateway");

export const help = `radflow gateway — receive DICOM studies and announce them on NATS JetStream

flags (environment variable in brackets):
  --storage-dir DIR          study volume; studies/<hash>/… is what steps
                             read as RADFLOW_STUDY_DIR (/data)           [RADFLOW_STORAGE_DIR]
  --dicom-port N             DIMSE C-STORE / C-ECHO port (11112)         [RADFLOW_DICOM_PORT]
  --http-port N              DICOMweb STOW-RS port (8080; 0 = off)       [RADFLOW_HTTP_PORT]
  --metrics-port N           /metrics, /healthz, /readyz (9464; 0 = off) [RADFLOW_METRICS_PORT]
  --ae-title A,B             the gateway's AE titles (any when unset)    [RADFLOW_AE_TITLES]
  --source SPEC              allowed senders: CALLING[=CALLED|CALLED];…
                             (repeatable; any calling AE when unset)     [RADFLOW_SOURCES]
  --quiet-seconds N          a study is complete after N s without a new
                             instance (5)                                [RADFLOW_QUIET_SECONDS]
  --max-wait-seconds N       …or N s after its first instance (300)      [RADFLOW_MAX_WAIT_SECONDS]
  --nats-url URL             NATS server(s) (nats://127.0.0.1:4222)      [RADFLOW_NATS_URL]
  --subject S                study event subject (radflow.study.received) [RADFLOW_STUDY_SUBJECT]
  --max-pdu N                largest PDU accepted, bytes (65536)         [RADFLOW_MAX_PDU]
  --audit MODE               PS3.15 records of received studies: fhir
                             (radflow.audit.*), syslog (also spooled for
                             the operator's forwarder), off (fhir)       [RADFLOW_GATEWAY_AUDIT]
  --audit-codes FILE         site remapping of audit event codes         [RADFLOW_AUDIT_CODES]
  --tls-cert FILE            DICOM TLS on the DIMSE port: certificate…   [RADFLOW_DICOM_TLS_CERT]
  --tls-key FILE             …and its key (PEM; TLS 1.2+)                [RADFLOW_DICOM_TLS_KEY]
  --tls-ca FILE              require client certificates this CA signed  [RADFLOW_DICOM_TLS_CA]
  --stow-token-file FILE     STOW-RS needs "Authorization: Bearer <a
                             token of this file>" (one per line)         [RADFLOW_STOW_TOKEN_FILE]
  --export                   send task results to DICOMDestinations
                             (reads and writes the Kubernetes API)       [RADFLOW_EXPORT]
  --kubeconfig PATH          kubeconfig; in-cluster when unset           [KUBECONFIG]
  --export-attempts N        attempts before an export is Failed (5)     [RADFLOW_EXPORT_ATTEMPTS]
  --export-backoff-seconds N first retry delay, doubling to 5 min (10)   [RADFLOW_EXPORT_BACKOFF_SECONDS]
  --monai-export SINK,…      with --export, also serve MONAI's
                             md.export.request.<SINK> and answer on
                             md.export.complete                          [RADFLOW_MONAI_EXPORT]
  --monai-export-namespace NS  where MONAI destination names are
                             DICOMDestinations (default)                 [RADFLOW_MONAI_EXPORT_NAMESPACE]

environment only:
  RADFLOW_NATS_* credentials and TLS as for the operator; RADFLOW_PHI_HMAC_KEY(_FILE) for study
  references in logs; RADFLOW_LOG_LEVEL; RADFLOW_AUDIT_SPOOL_NAME and RADFLOW_STREAM_REPLICAS as
  the operator has them.

Unknown calling AE titles are rejected at association (reason 3), unknown called ones too
(reason 7). An instance is acknowledged only once it is on disk, checked and journaled; a full
disk answers A700 (out of resources). Each study is announced once, with the event id
<hash>-<revision>; instances arriving later produce a follow-up event (revision 1, 2, …).
`;

/** The gateway's settings: receiving, and with --export sending (MONAI-form requests too with --monai-export). */
export type GatewaySettings = GatewayConfig & {
  export?: ExportSettings & { monai?: { sinks: string[]; namespace: string } };
};

function int(flag: string, v: string | undefined, def: number, min = 0, max = 65535): number {
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag}: expected an integer ${min}-${max}`);
  return n;
}

export function parseGatewayArgs(args: string[], env: NodeJS.ProcessEnv = process.env): GatewaySettings | "help" {
  const { values } = parseArgs({
    args,
    options: {
      "storage-dir": { type: "string" },
      "dicom-port": { type: "string" },
      "http-port": { type: "string" },
      "metrics-port": { type: "string" },
      "ae-title": { type: "string" },
      source: { type: "string", multiple: true },
      "quiet-seconds": { type: "string" },
      "max-wait-seconds": { type: "string" },
      "nats-url": { type: "string" },
      subject: { type: "string" },
      "max-pdu": { type: "string" },
      audit: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "tls-ca": { type: "string" },
      "stow-token-file": { type: "string" },
      "audit-codes": { type: "string" },
      export: { type: "boolean" },
      kubeconfig: { type: "string" },
      "export-attempts": { type: "string" },
      "export-backoff-seconds": { type: "string" },
      "monai-export": { type: "string" },
      "monai-export-namespace": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  const e = (k: string) => (env[k] === "" ? undefined : env[k]);
  const quiet = Number(values["quiet-seconds"] ?? e("RADFLOW_QUIET_SECONDS") ?? 5);
  const maxWait = Number(values["max-wait-seconds"] ?? e("RADFLOW_MAX_WAIT_SECONDS") ?? 300);
  if (!(quiet > 0 && quiet <= 3600)) throw new Error("--quiet-seconds: expected a number of seconds, 0-3600");
  if (!(maxWait >= quiet && maxWait <= 86_400)) {
    throw new Error("--max-wait-seconds: expected a number of seconds at least --quiet-seconds and at most 86400");
  }
  const nats = natsSettingsFromEnv(env);
  const url = values["nats-url"];
  const subject = values.subject ?? e("RADFLOW_STUDY_SUBJECT");
  if (subject !== undefined && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subject)) {
    throw new Error("--subject: not a NATS subject");
  }
  const auditMode = values.audit ?? e("RADFLOW_GATEWAY_AUDIT") ?? "fhir";
  if (auditMode !== "fhir" && auditMode !== "syslog" && auditMode !== "off") {
    throw new Error("--audit: expected fhir, syslog or off");
  }
  const auditCodes = values["audit-codes"] ?? e("RADFLOW_AUDIT_CODES");
  // the operator's spool names (src/cmd/operator.ts auditSpool; not imported: it loads the controllers)
  const spoolName = e("RADFLOW_AUDIT_SPOOL_NAME");
  if (spoolName !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(spoolName)) {
    throw new Error("RADFLOW_AUDIT_SPOOL_NAME: use 1-64 letters, digits, '-' or '_'");
  }
  const spool = spoolName
    ? {
        stream: `${SPOOL_STREAM}_${spoolName}`,
        subject: `${SPOOL_SUBJECT}.${spoolName}`,
        consumer: `${SPOOL_CONSUMER}-${spoolName}`,
      }
    : undefined;
  const replicas = e("RADFLOW_STREAM_REPLICAS");
  const tlsCert = values["tls-cert"] ?? e("RADFLOW_DICOM_TLS_CERT");
  const tlsKey = values["tls-key"] ?? e("RADFLOW_DICOM_TLS_KEY");
  const tlsCa = values["tls-ca"] ?? e("RADFLOW_DICOM_TLS_CA");
  if (!tlsCert !== !tlsKey) throw new Error("--tls-cert and --tls-key: give both or neither");
  if (tlsCa && !tlsCert) throw new Error("--tls-ca needs --tls-cert and --tls-key");
  const stowTokenFile = values["stow-token-file"] ?? e("RADFLOW_STOW_TOKEN_FILE");
  const exporting = values.export ?? e("RADFLOW_EXPORT") === "true";
  const monaiSinks = (values["monai-export"] ?? e("RADFLOW_MONAI_EXPORT") ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  for (const sink of monaiSinks)
    if (!/^[A-Za-z0-9_-]+$/.test(sink)) throw new Error(`--monai-export: "${sink}" is not a NATS subject token`);
  if (monaiSinks.length && !exporting) throw new Error("--monai-export needs --export");
  const monaiNamespace = values["monai-export-namespace"] ?? e("RADFLOW_MONAI_EXPORT_NAMESPACE") ?? "default";
  return {
    ...(exporting
      ? {
          export: {
            kubeconfig: values.kubeconfig ?? e("KUBECONFIG"),
            attempts: int("--export-attempts", values["export-attempts"] ?? e("RADFLOW_EXPORT_ATTEMPTS"), 5, 1, 100),
            backoffMs:
              1000 *
              int(
                "--export-backoff-seconds",
                values["export-backoff-seconds"] ?? e("RADFLOW_EXPORT_BACKOFF_SECONDS"),
                10,
                1,
                3600,
              ),
            ...(monaiSinks.length ? { monai: { sinks: monaiSinks, namespace: monaiNamespace } } : {}),
          },
        }
      : {}),
    ...(tlsCert && tlsKey
      ? { dicomTls: { certFile: tlsCert, keyFile: tlsKey, ...(tlsCa ? { caFile: tlsCa } : {}) } }
      : {}),
    ...(stowTokenFile ? { stowTokenFile } : {}),
    audit: {
      mode: auditMode,
      ...(auditCodes ? { codes: auditCodes } : {}),
      ...(spool ? { spool } : {}),
      ...(replicas ? { replicas: int("RADFLOW_STREAM_REPLICAS", replicas, 1, 1, 5) } : {}),
    },
    storageDir: values["storage-dir"] ?? e("RADFLOW_STORAGE_DIR") ?? "/data",
    // -1 (an ephemeral port) is for tests
    dicomPort: int("--dicom-port", values["dicom-port"] ?? e("RADFLOW_DICOM_PORT"), 11112, -1),
    httpPort: int("--http-port", values["http-port"] ?? e("RADFLOW_HTTP_PORT"), 8080, -1),
    metricsPort: int("--metrics-port", values["metrics-port"] ?? e("RADFLOW_METRICS_PORT"), 9464, -1),
    policy: {
      calledAETitles: parseAETitles(values["ae-title"] ?? e("RADFLOW_AE_TITLES")),
      sources: parseSources([...(values.source ?? []), e("RADFLOW_SOURCES") ?? ""].join(";")),
    },
    quietMs: Math.round(quiet * 1000),
    maxWaitMs: Math.round(maxWait * 1000),
    nats: url ? { ...nats, servers: url.split(",").map((s) => s.trim()) } : nats,
    ...(subject ? { subject } : {}),
    maxPduLength: int("--max-pdu", values["max-pdu"] ?? e("RADFLOW_MAX_PDU"), 65536, 4096, 16 << 20),
  };
}

export async function main(args: string[]): Promise<number> {
  let cfg: GatewaySettings;
  try {
    const r = parseGatewayArgs(args);
    if (r === "help") {
      process.stdout.write(help);
      return 0;
    }
    cfg = r;
    initStudyRefKey();
  } catch (e) {
    process.stderr.write(`radflow gateway: ${(e as Error).message}\n`);
    return 2;
  }
  // handlers first: a SIGTERM while starting still ends in an orderly stop
  const signalled = new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info({ signal: sig }, "stopping: finishing open associations, publishing pending studies");
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  const gw = await startGateway(cfg);
  // results back to PACS (src/export/worker.ts), on a connection of its own
  const ex = cfg.export;
  const exportNc = ex ? await connectNats({ ...cfg.nats, name: "radflow-gateway-export" }) : undefined;
  const kc = ex ? loadKubeConfig(ex.kubeconfig) : undefined;
  const exportAudit = exportNc ? await startExportAudit(exportNc, cfg.audit) : undefined;
  const exporter =
    ex && exportNc && kc
      ? await startExportWorker({
          nc: exportNc,
          storageDir: cfg.storageDir,
          destinations: kubeDestinations(
            kc,
            process.env.RADFLOW_NAMESPACES?.split(",")
              .map((n) => n.trim())
              .filter(Boolean),
          ),
          recorder: kubeExportRecorder(kc, new EventRecorder(kc, "radflow-gateway", process.env.POD_NAME ?? "gateway")),
          attempts: ex.attempts,
          backoffMs: ex.backoffMs,
          audit: exportAudit?.sink,
        })
      : undefined;
  // MONAI-form requests (md.export.request.<sink>), answered with ExportCompleteEvents
  const monai =
    ex?.monai && exportNc && kc
      ? await startMonaiExportWorker({
          nc: exportNc,
          storageDir: cfg.storageDir,
          destinations: kubeDestinations(kc, [ex.monai.namespace]),
          sinks: ex.monai.sinks,
          namespace: ex.monai.namespace,
          attempts: ex.attempts,
          backoffMs: ex.backoffMs,
        })
      : undefined;
  await signalled;
  await monai?.stop();
  await exporter?.stop();
  await exportAudit?.stop();
  await exportNc?.drain().catch(() => {});
  await gw.stop();
  return 0;
}
