// Pieces the scenarios share: the benchmark's AIWorkflows, and "publish these study events and
// note when each task's Job appears and when each task ends".
import { performance } from "node:perf_hooks";
import { taskName } from "../../src/ingest/route.ts";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { type AIWorkflowSpecInput, jobRecorder, type TaskState, taskRecorder } from "../lib/kube.ts";
import { sleep } from "../lib/operator.ts";
import { deltaBy, type Scrape, sum } from "../lib/prom.ts";
import { type LatencySummary, round, summarize } from "../lib/stats.ts";
import { type StudyShape, studyEvent } from "../lib/studies.ts";

export const IMAGE = "registry.example.org/radflow-bench/model:1";

/** One step; gpu 0 runs on the CPU node, so the 8 fake GPUs do not cap throughput. */
export function singleStep(
  bodyPart: string,
  o: { priority?: AIWorkflowSpecInput["priority"]; gpu?: number; env?: { name: string; value: string }[] } = {},
): AIWorkflowSpecInput {
  return {
    priority: o.priority ?? "routine",
    trigger: { match: { modalities: ["CT"], bodyParts: [bodyPart] } },
    steps: [
      {
        name: "infer",
        image: IMAGE,
        args: ["--input", "/data/study", "--output", "/data/results"],
        resources: { gpu: o.gpu ?? 0 },
        ...(o.env ? { env: o.env } : {}),
      },
    ],
  };
}

export interface Workflow {
  namespace: string;
  name: string;
  uid: string;
  shape: StudyShape;
}

export async function workflow(
  ctx: Context,
  namespace: string,
  name: string,
  spec: AIWorkflowSpecInput,
  shape: StudyShape,
): Promise<Workflow> {
  const uid = await ctx.kube.createWorkflow(namespace, name, spec);
  await sleep(500); // the operator's informer sees Ready a moment after the API does
  return { namespace, name, uid, shape };
}

export interface RunResult {
  names: string[];
  sentAt: number[];
  taskAt: Map<string, number>;
  jobAt: Map<string, number>;
  doneAt: Map<string, number>;
  phases: Map<string, TaskState>;
  publishMaxLagMs?: number;
  publishMs: number;
  firstSent: number;
  timedOut: boolean;
}

export interface RunOptions {
  rate?: number; // open loop at this rate; as fast as possible when unset
  waitTerminal?: boolean; // also wait until every task ended
  stallMs?: number; // give up when nothing progressed for this long
}

/** Publishes `n` studies for the workflow and records when each Job appeared (and each task ended). */
export async function run(ctx: Context, wf: Workflow, n: number, o: RunOptions = {}): Promise<RunResult> {
  const events = Array.from({ length: n }, () => studyEvent(`${ctx.runId}-${wf.name}`, wf.shape));
  const names = events.map((e) => taskName(wf.name, wf.uid, e));
  const taskAt = new Map<string, number>();
  const jobAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  const phases = new Map<string, TaskState>();
  const jobs = jobRecorder(ctx.kube.kc, wf.namespace, (task, at) => jobAt.set(task, at));
  const tasks = taskRecorder(
    ctx.kube.kc,
    wf.namespace,
    phases,
    (task, _phase, at) => doneAt.set(task, at),
    (task, at) => taskAt.set(task, at),
  );
  await Promise.all([jobs.start(), tasks.start()]);
  const t0 = performance.now();
  const published: { sentAt: number[]; maxLagMs?: number } = o.rate
    ? await ctx.pub.openLoop(events, o.rate)
    : await ctx.pub.burst(events);
  const publishMs = performance.now() - t0;
  const want = new Set(names);
  const count = (m: Map<string, number>) => {
    let k = 0;
    for (const x of m.keys()) if (want.has(x)) k++;
    return k;
  };
  const stallMs = o.stallMs ?? 60_000;
  let last = -1;
  let lastChange = performance.now();
  let timedOut = false;
  for (;;) {
    const progress = count(jobAt) + (o.waitTerminal ? count(doneAt) : 0);
    const goal = n * (o.waitTerminal ? 2 : 1);
    if (progress >= goal) break;
    if (progress !== last) {
      last = progress;
      lastChange = performance.now();
    } else if (performance.now() - lastChange > stallMs) {
      log(`  no progress for ${stallMs / 1000} s: ${count(jobAt)}/${n} Jobs, ${count(doneAt)}/${n} ended; giving up`);
      timedOut = true;
      break;
    }
    await sleep(50);
  }
  jobs.stop();
  tasks.stop();
  return {
    names,
    sentAt: published.sentAt,
    taskAt,
    jobAt,
    doneAt,
    phases,
    publishMaxLagMs: published.maxLagMs,
    publishMs,
    firstSent: published.sentAt[0] ?? t0,
    timedOut,
  };
}

/** Event → Job created (or → task ended) latencies of the tasks that got there. */
export function latencies(r: RunResult, of: "job" | "done"): number[] {
  const m = of === "job" ? r.jobAt : r.doneAt;
  const out: number[] = [];
  r.names.forEach((name, i) => {
    const at = m.get(name);
    if (at !== undefined) out.push(at - (r.sentAt[i] as number));
  });
  return out;
}

/** The event → Job latency in two stages: event → InferenceTask seen (ingest), task → Job seen (reconcile). */
export function stages(r: RunResult): { eventToTaskMs: LatencySummary; taskToJobMs: LatencySummary } {
  const ingest: number[] = [];
  const reconcile: number[] = [];
  r.names.forEach((name, i) => {
    const t = r.taskAt.get(name);
    const j = r.jobAt.get(name);
    if (t !== undefined) ingest.push(t - (r.sentAt[i] as number));
    if (t !== undefined && j !== undefined) reconcile.push(j - t);
  });
  return { eventToTaskMs: summarize(ingest), taskToJobMs: summarize(reconcile) };
}

/** Mean time to response headers of the operator's API requests, by "verb resource" (no watches). */
function apiLatency(before: Scrape, after: Scrape): Record<string, number> {
  const n = deltaBy(before, after, "radflow_bench_http_requests_total", ["verb", "resource"]);
  const t = deltaBy(before, after, "radflow_bench_http_request_seconds_total", ["verb", "resource"]);
  const out: Record<string, number> = {};
  for (const [k, secs] of t) {
    const count = n.get(k) ?? 0;
    if (count) out[k] = round((secs / count) * 1000, 1);
  }
  return out;
}

/** Operator-side counters over a run: reconciles per study, mean reconcile time and queue wait. */
export function operatorWork(before: Scrape, after: Scrape, studies: number) {
  const d = (name: string, labels: Record<string, string>) => sum(after, name, labels) - sum(before, name, labels);
  const q = { queue: "inferencetask" };
  const c = { controller: "inferencetask" };
  const reconciles = d("radflow_reconcile_total", c);
  return {
    reconcilesPerStudy: round(reconciles / studies, 2),
    reconcileMeanMs: round((d("radflow_reconcile_duration_seconds_sum", c) / (reconciles || 1)) * 1000, 2),
    queueWaitMeanMs: round(
      (d("radflow_workqueue_latency_seconds_sum", q) / (d("radflow_workqueue_latency_seconds_count", q) || 1)) * 1000,
      2,
    ),
    apiRequestsPerStudy: round(d("radflow_bench_http_requests_total", {}) / studies, 2),
    apiMeanMs: apiLatency(before, after),
  };
}
