// radflow send <dir|files…>: DICOM files → one study event per study on NATS JetStream.
// Reads headers only (never pixel data), groups instances by study and series, and publishes a
// CloudEvents io.radflow.study.received (or, with --monai, a MONAI WorkflowRequestEvent) with
// Nats-Msg-Id = event id. Files that are not DICOM are counted and skipped; corrupt DICOM files
// are reported by path and make the exit code non-zero.
import { randomBytes, randomUUID } from "node:crypto";
import { lstat, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AETitle } from "../api/v1alpha1/common.ts";
import {
  type MonaiWorkflowRequestEvent,
  monaiArtifactType,
  STUDY_RECEIVED,
  type StudyReceivedEvent,
  SUBJECT,
} from "../api/v1alpha1/events.ts";
import type { Study } from "../api/v1alpha1/study.ts";
import { type DicomHeader, readHeaderFile } from "../dicom/header.ts";
import { MASK, maskStudy } from "../dicom/phi.ts";
import { identify, summarizeStudies, trimHeader } from "../dicom/summary.ts";
import { connectionOptions, natsSettingsFromEnv } from "../ingest/connect.ts";
import { studyRefWith } from "../log/logger.ts";

// Masked identifiers in this run's output: keyed references that stay the same within the run
// (a study and its series can be told apart) but cannot be reversed or matched elsewhere.
const runKey = randomBytes(32);
const ref = (uid: string) => studyRefWith(runKey, uid);

const usage = `usage: radflow send <dir|files...> [options]

Reads the headers of DICOM Part-10 files (folders are walked recursively) and publishes one
study event per study to NATS JetStream.

  --nats URL          NATS server (default $RADFLOW_NATS_URL or nats://127.0.0.1:4222);
                      credentials from RADFLOW_NATS_* variables as for the operator
  --dry-run           print the events instead of publishing them
  --show-phi          with --dry-run: print identifiers unmasked
  --monai             publish MONAI Deploy WorkflowRequestEvents on md.workflow.request
  --calling-ae AE     calling AE title to put in the events (the sender)
  --called-ae AE      called AE title to put in the events (the receiver)
  --location L        where steps find the study: a path under the workflow's storage or s3://…
  --subject S         subject to publish on (default radflow.study.received, or
                      md.workflow.request with --monai)
`;

interface Options {
  paths: string[];
  nats: string;
  dryRun: boolean;
  showPhi: boolean;
  monai: boolean;
  callingAE?: string;
  calledAE?: string;
  location?: string;
  subject?: string;
}

type Out = (s: string) => void;

export async function main(args: string[]): Promise<number> {
  const out: Out = (s) => process.stdout.write(s);
  const err: Out = (s) => process.stderr.write(s);
  let o: Options;
  try {
    const r = parseOptions(args);
    if (r === "help") {
      out(usage);
      return 0;
    }
    o = r;
  } catch (e) {
    err(`radflow send: ${(e as Error).message}\n${usage}`);
    return 2;
  }
  return send(o, out, err);
}

function parseOptions(args: string[]): Options | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      nats: { type: "string" },
      "dry-run": { type: "boolean", default: false },
      "show-phi": { type: "boolean", default: false },
      monai: { type: "boolean", default: false },
      "calling-ae": { type: "string" },
      "called-ae": { type: "string" },
      location: { type: "string" },
      subject: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  if (positionals.length === 0) throw new Error("give at least one folder or file");
  for (const [flag, v] of [
    ["--calling-ae", values["calling-ae"]],
    ["--called-ae", values["called-ae"]],
  ] as const) {
    if (v !== undefined && !AETitle.safeParse(v).success) throw new Error(`${flag}: not an AE title (1-16 characters)`);
  }
  if (values["show-phi"] && !values["dry-run"]) throw new Error("--show-phi only applies to --dry-run");
  if (values.subject !== undefined && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(values.subject)) {
    throw new Error("--subject: not a NATS subject (tokens of letters, digits, '-', '_' joined by '.')");
  }
  return {
    paths: positionals,
    nats: values.nats ?? process.env.RADFLOW_NATS_URL ?? "nats://127.0.0.1:4222",
    dryRun: values["dry-run"],
    showPhi: values["show-phi"],
    monai: values.monai,
    callingAE: values["calling-ae"],
    calledAE: values["called-ae"],
    location: values.location,
    subject: values.subject,
  };
}

interface Scan {
  headers: DicomHeader[];
  files: number;
  notDicom: number;
  notInstance: number;
  corrupt: number;
  /** study UID → series UID → SOP instance UIDs (for MONAI payload paths) */
  instances: Map<string, Map<string, string[]>>;
}

async function send(o: Options, out: Out, err: Out): Promise<number> {
  const files: string[] = [];
  let failed = 0;
  for (const p of o.paths) {
    try {
      await collect(p, files);
    } catch (e) {
      err(`${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      failed++;
    }
  }
  const scan = await scanFiles(files, err);
  failed += scan.corrupt;

  const studies: Study[] = [];
  for (const r of summarizeStudies(scan.headers, {
    callingAETitle: o.callingAE,
    calledAETitle: o.calledAE,
    location: o.location,
  })) {
    if (r.ok) studies.push(r.study);
    else {
      failed++;
      err(`study ${o.showPhi ? r.studyInstanceUID : ref(r.studyInstanceUID)}: cannot summarise: ${r.error}\n`);
    }
  }

  const correlation = randomUUID();
  const events = studies.map((s) =>
    o.monai ? monaiEvent(s, scan.instances.get(s.studyInstanceUID), o, correlation) : nativeEvent(s),
  );

  let published = 0;
  let duplicates = 0;
  if (o.dryRun) {
    for (const ev of events) out(`${JSON.stringify(o.showPhi ? ev.event : masked(ev), null, 2)}\n`);
  } else if (events.length) {
    let nc: NatsConnection | undefined;
    try {
      nc = await connect(
        connectionOptions(
          {
            ...natsSettingsFromEnv(),
            servers: o.nats.split(","),
            name: "radflow-send",
            waitForServer: false,
            maxReconnectAttempts: 5,
          },
          () => 1000,
        ),
      );
    } catch (e) {
      err(`radflow send: cannot connect to NATS at ${o.nats}: ${(e as Error).message}\n`);
      return 1;
    }
    const js = jetstream(nc);
    for (const ev of events) {
      try {
        const ack = await js.publish(o.subject ?? ev.subject, JSON.stringify(ev.event), {
          msgID: ev.id,
          timeout: 10_000,
          retries: 3,
        });
        if (ack.duplicate) duplicates++;
        published++;
      } catch (e) {
        failed++;
        err(`event ${ev.id}: not published: ${(e as Error).message}\n`);
      }
    }
    await nc.drain();
  }

  err(
    `${scan.files} files: ${scan.headers.length} DICOM instances, ${scan.notDicom} not DICOM (skipped), ` +
      `${scan.notInstance} DICOM without study/series/instance UIDs (skipped), ${scan.corrupt} corrupt; ` +
      `${studies.length} studies; ` +
      (o.dryRun
        ? `${events.length} events printed (dry run)\n`
        : `${published} events published${duplicates ? ` (${duplicates} already in the stream)` : ""}\n`),
  );
  return failed ? 1 : 0;
}

async function collect(p: string, files: string[]): Promise<void> {
  const st = await stat(p);
  if (!st.isDirectory()) {
    files.push(p);
    return;
  }
  const entries = await readdir(p, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const f = path.join(p, e.name);
    if (e.isDirectory()) await collect(f, files);
    else if (e.isFile()) files.push(f);
    // a symlink to a file counts; to a folder it is not followed (no loops)
    else if (
      e.isSymbolicLink() &&
      (
        await lstat(f)
          .then(() => stat(f))
          .catch(() => undefined)
      )?.isFile()
    )
      files.push(f);
  }
}

async function scanFiles(files: string[], err: Out): Promise<Scan> {
  const scan: Scan = {
    headers: [],
    files: files.length,
    notDicom: 0,
    notInstance: 0,
    corrupt: 0,
    instances: new Map(),
  };
  const progress = progressBar(files.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const f = files[i] as string;
      try {
        const r = await readHeaderFile(f);
        if (r.kind === "not-dicom") scan.notDicom++;
        else if (r.kind === "corrupt") {
          scan.corrupt++;
          progress.clear();
          err(`${f}: corrupt DICOM: ${r.error.slice(0, 200)}\n`);
        } else {
          const id = identify(r.header);
          if (typeof id === "string") scan.notInstance++;
          else {
            scan.headers.push(trimHeader(r.header));
            const series = scan.instances.get(id.study) ?? new Map<string, string[]>();
            scan.instances.set(id.study, series);
            const sops = series.get(id.series) ?? [];
            series.set(id.series, sops);
            sops.push(id.sop);
          }
        }
      } catch (e) {
        scan.corrupt++;
        progress.clear();
        err(`${f}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      }
      progress.update(++done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, files.length) }, worker));
  progress.done();
  return scan;
}

/** A progress bar on stderr, for large folders and only on a terminal. */
function progressBar(total: number) {
  const on = process.stderr.isTTY === true && total >= 200;
  let last = 0;
  const draw = (n: number) => {
    const width = 30;
    const filled = Math.round((n / total) * width);
    process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${n}/${total} files`);
  };
  return {
    update(n: number) {
      if (!on || (Date.now() - last < 100 && n < total)) return;
      last = Date.now();
      draw(n);
    },
    clear() {
      if (on) process.stderr.write("\r\x1b[K");
    },
    done() {
      if (on) process.stderr.write("\n");
    },
  };
}

type Outgoing = { id: string; subject: string } & (
  | { format: "native"; event: StudyReceivedEvent }
  | { format: "monai"; event: MonaiWorkflowRequestEvent }
);

function nativeEvent(study: Study): Outgoing {
  const id = randomUUID();
  return {
    id,
    subject: SUBJECT.studyReceived,
    format: "native",
    event: {
      specversion: "1.0",
      id,
      source: "/radflow/send",
      type: STUDY_RECEIVED,
      time: new Date().toISOString(),
      datacontenttype: "application/json",
      data: study,
    },
  };
}

function monaiEvent(
  study: Study,
  instances: Map<string, string[]> | undefined,
  o: Options,
  correlation: string,
): Outgoing {
  const id = randomUUID();
  const bucket = /^s3:\/\/([^/]+)/.exec(o.location ?? "")?.[1] ?? "radflow";
  const payload: { path: string; metadata: string }[] = [];
  for (const [series, sops] of instances ?? []) {
    for (const sop of sops) {
      const p = `dcm/${study.studyInstanceUID}/${series}/${sop}.dcm`;
      payload.push({ path: p, metadata: `${p}.json` });
    }
  }
  return {
    id,
    subject: SUBJECT.monaiWorkflowRequest,
    format: "monai",
    event: {
      payload_id: id,
      workflows: [],
      file_count: payload.length,
      correlation_id: correlation,
      bucket,
      trigger: {
        dataService: 1,
        source: o.callingAE ?? "RADFLOW-SEND",
        destination: o.calledAE ?? "MONAI-DEPLOY",
        artifactType: monaiArtifactType(study.series[0]?.modality),
      },
      data_origins: [],
      timestamp: new Date().toISOString(),
      workflow_instance_id: null,
      task_id: null,
      payload,
    },
  };
}

function masked(o: Outgoing): unknown {
  if (o.format === "native") return { ...o.event, data: maskStudy(o.event.data, ref) };
  return {
    ...o.event,
    payload: o.event.payload.map((p) => ({
      path: p.path.replace(/[0-9]+(\.[0-9]+)+/g, MASK),
      metadata: p.metadata?.replace(/[0-9]+(\.[0-9]+)+/g, MASK),
    })),
  };
}
