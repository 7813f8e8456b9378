// Results of a finished InferenceTask, out to JetStream: io.radflow.task.succeeded|failed on
// radflow.task.<outcome>, and for a succeeded task with export destinations a MONAI-compatible
// ExportRequestEvent on md.export.request.<plugin>. Every message has a Nats-Msg-Id derived from
// the task's uid and outcome, so the reconciler may publish again after a crash (before it
// recorded status.resultsPublished) and the stream drops the repeat.
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import type { AIWorkflow } from "../api/v1alpha1/aiworkflow.ts";
import {
  type MonaiExportRequestEvent,
  SUBJECT,
  TASK_FAILED,
  TASK_SUCCEEDED,
  type TaskResultData,
  type TaskResultEvent,
} from "../api/v1alpha1/events.ts";
import type { InferenceTask } from "../api/v1alpha1/inferencetask.ts";
import { type AuditSink, noAudit } from "../audit/facts.ts";
import { resultsPublishedFact } from "../audit/task-facts.ts";
import { planExports } from "../export/plan.ts";
import type { ExportRequestEvent } from "../export/request.ts";
import { resultsPublished, turnaround } from "../metrics/metrics.ts";
import { stableId } from "./route.ts";
import { STREAM } from "./streams.ts";

export type ResultOutcome = "succeeded" | "failed";

export interface ResultMessage {
  kind: "native" | "monai-export" | "export";
  subject: string;
  msgId: string;
  event: TaskResultEvent | MonaiExportRequestEvent | ExportRequestEvent;
}

/** Nats-Msg-Id of a result message: the same task, outcome (and export plugin) give the same id. */
export function resultMsgId(taskUid: string, outcome: string, extra = ""): string {
  return stableId(taskUid, outcome, extra);
}

/** Succeeded → succeeded; Failed and Canceled → failed; anything else has no result yet. */
export function outcomeOf(task: InferenceTask): ResultOutcome | undefined {
  switch (task.status?.phase) {
    case "Succeeded":
      return "succeeded";
    case "Failed":
    case "Canceled":
      return "failed";
    default:
      return undefined;
  }
}

/**
 * Where the task's results are: a step may say so in its outputs (`resultLocation`, the last
 * step that does wins); otherwise `<storage>/results/<task name>` under the task's storage (or
 * the workflow's, for a task created before it had one).
 */
export function resultLocation(task: InferenceTask, workflow?: AIWorkflow): string | undefined {
  for (const s of [...(task.status?.steps ?? [])].reverse()) {
    const loc = s.outputs?.resultLocation;
    if (typeof loc === "string" && loc) return loc;
  }
  const storage = task.spec.storage ?? workflow?.spec.storage;
  const name = task.metadata.name ?? "";
  if (storage?.s3) return `${storage.s3.uri.replace(/\/+$/, "")}/results/${name}`;
  if (storage?.pvc) {
    const sub = storage.pvc.subPath?.replace(/^\/+|\/+$/g, "");
    return `pvc://${storage.pvc.claimName}/${sub ? `${sub}/` : ""}results/${name}`;
  }
  return undefined;
}

/** The messages a finished task publishes (pure). Throws if the task has not finished. */
export function buildResultEvents(task: InferenceTask, workflow?: AIWorkflow): ResultMessage[] {
  const outcome = outcomeOf(task);
  const ns = task.metadata.namespace ?? "";
  const name = task.metadata.name ?? "";
  const uid = task.metadata.uid;
  if (!outcome) throw new Error(`InferenceTask ${ns}/${name} has not finished (phase ${task.status?.phase ?? "none"})`);
  if (!uid) throw new Error(`InferenceTask ${ns}/${name} has no metadata.uid`);
  const status = task.status ?? {};
  const succeeded = status.conditions?.find((c) => c.type === "Succeeded");
  const steps = status.steps ?? [];
  const outputs: Record<string, Record<string, unknown>> = {};
  for (const s of steps) if (s.outputs) outputs[s.name] = s.outputs;
  const location = resultLocation(task, workflow);
  const reason = outcome === "failed" ? (succeeded?.reason ?? status.phase) : undefined;

  const data: TaskResultData = {
    task: { namespace: ns, name, uid },
    workflow: task.spec.workflowRef,
    eventId: task.spec.eventId,
    ...(task.spec.eventSource ? { eventSource: task.spec.eventSource } : {}),
    priority: task.spec.priority,
    phase: status.phase ?? "Failed",
    ...(reason ? { reason } : {}),
    ...(outcome === "failed" && succeeded?.message ? { message: succeeded.message } : {}),
    study: {
      studyInstanceUID: task.spec.study.studyInstanceUID,
      ...(task.spec.study.accessionNumber ? { accessionNumber: task.spec.study.accessionNumber } : {}),
      ...(task.spec.study.location ? { location: task.spec.study.location } : {}),
    },
    ...(status.startTime ? { startTime: status.startTime } : {}),
    ...(status.completionTime ? { completionTime: status.completionTime } : {}),
    steps: steps.map((s) => ({
      name: s.name,
      phase: s.phase,
      ...(s.reason ? { reason: s.reason } : {}),
      ...(s.outputs ? { outputs: s.outputs } : {}),
    })),
    outputs,
    ...(location ? { resultLocation: location } : {}),
  };
  const msgId = resultMsgId(uid, outcome);
  const out: ResultMessage[] = [
    {
      kind: "native",
      subject: outcome === "succeeded" ? SUBJECT.taskSucceeded : SUBJECT.taskFailed,
      msgId,
      event: {
        specversion: "1.0",
        id: msgId,
        source: `/apis/radflow.io/v1alpha1/namespaces/${ns}/inferencetasks/${name}`,
        type: outcome === "succeeded" ? TASK_SUCCEEDED : TASK_FAILED,
        subject: name,
        // the completion time, not "now": a republished event is the same event
        time: status.completionTime ?? new Date(0).toISOString(),
        datacontenttype: "application/json",
        data,
      },
    },
  ];

  if (outcome === "succeeded" && task.spec.export?.length) {
    const files = exportFiles(steps, location);
    if (files.length) {
      const byPlugin = new Map<string, string[]>();
      for (const d of task.spec.export) byPlugin.set(d.plugin, [...(byPlugin.get(d.plugin) ?? []), d.name]);
      for (const [plugin, destinations] of byPlugin) {
        const id = resultMsgId(uid, outcome, `export:${plugin}`);
        out.push({
          kind: "monai-export",
          subject: SUBJECT.monaiExportRequest(plugin),
          msgId: id,
          event: {
            workflow_instance_id: uid,
            export_task_id: `${name}-export`,
            files,
            destinations,
            correlation_id: task.spec.eventId,
            message_id: id,
            error_messages: [],
            plug_in_assemblies: [],
          },
        });
      }
    }
  }
  // DICOM exports, one request per step and destination, for radflow gateway (src/export/plan.ts)
  for (const m of planExports(task)) out.push({ kind: "export", ...m });
  return out;
}

// Files to export: what steps listed in outputs.files, else the results location as a key in
// its bucket (MONAI export services read paths relative to their bucket).
function exportFiles(steps: NonNullable<InferenceTask["status"]>["steps"] & {}, location?: string): string[] {
  const files = new Set<string>();
  for (const s of steps) {
    const f = s.outputs?.files;
    if (Array.isArray(f)) for (const x of f) if (typeof x === "string" && x) files.add(x);
  }
  if (files.size === 0 && location) files.add(location.replace(/^[a-z0-9]+:\/\/[^/]+\//, ""));
  return [...files];
}

export interface PublishResultsOptions {
  /** The task's workflow, if the caller has it (fallback storage for the results location). */
  workflow?: AIWorkflow;
  /** Receives one ResultsPublished fact once every message is acknowledged. */
  audit?: AuditSink;
  /** Publish MONAI ExportRequestEvents (needs the MONAI subjects in RADFLOW_RESULTS); default true. */
  monaiExport?: boolean;
  /** How long to wait for each JetStream ack, ms; default 10 s. */
  timeoutMs?: number;
}

export interface PublishedResults {
  outcome: ResultOutcome;
  messages: number;
  /** Messages the stream already had (a republish after a crash). */
  duplicates: number;
}

/**
 * Publishes a finished task's results and resolves only when JetStream has stored every
 * message (or reports it a duplicate). Rejects if any publish fails; calling again is safe.
 */
export async function publishResults(
  js: JetStreamClient,
  task: InferenceTask,
  opts: PublishResultsOptions = {},
): Promise<PublishedResults> {
  const msgs = buildResultEvents(task, opts.workflow).filter(
    (m) => m.kind !== "monai-export" || opts.monaiExport !== false,
  );
  const acks: PubAck[] = await Promise.all(
    msgs.map((m) =>
      js.publish(m.subject, JSON.stringify(m.event), {
        msgID: m.msgId,
        expect: { streamName: STREAM.results },
        timeout: opts.timeoutMs ?? 10_000,
      }),
    ),
  );
  const outcome = outcomeOf(task) as ResultOutcome;
  let duplicates = 0;
  acks.forEach((ack, i) => {
    if (ack.duplicate) duplicates++;
    else resultsPublished.inc({ outcome, kind: msgs[i]?.kind ?? "native" });
  });
  const native = acks[0];
  const eventTime = Date.parse(task.spec.eventTime ?? "");
  if (native && !native.duplicate && !Number.isNaN(eventTime)) {
    turnaround.observe(
      { workflow: task.spec.workflowRef.name, priority: task.spec.priority, outcome },
      Math.max(0, (Date.now() - eventTime) / 1000),
    );
  }
  const destination = msgs.map((m) => m.subject).join(", ");
  await (opts.audit ?? noAudit).record(resultsPublishedFact(task, new Date().toISOString(), destination));
  return { outcome, messages: msgs.length, duplicates };
}
