// Scenario 4: the operator's memory with N InferenceTasks present, and its cold start over them.
// The tasks are created straight through the API (as ingest would have made them, with
// buildTask) and given a terminal status (Succeeded, results published), so that resyncing them
// costs reads and reconciles but no writes. Cold start = spawn → caches synced (the "caches
// synced: reconciling" log line) → /readyz → every task reconciled once (work queue empty).
// Memory is read without the profiler; a last, profiled restart only provides the CPU profile.
import { performance } from "node:perf_hooks";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { toStudyEvent } from "../../src/api/v1alpha1/events.ts";
import type { InferenceTaskStatus } from "../../src/api/v1alpha1/inferencetask.ts";
import { buildTask } from "../../src/ingest/route.ts";
import { jobName } from "../../src/jobs/job-builder.ts";
import { mergePatch } from "../../src/kube/client.ts";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { GROUP, pool, VERSION, waitUntil } from "../lib/kube.ts";
import type { Operator } from "../lib/operator.ts";
import { sleep } from "../lib/operator.ts";
import { sum } from "../lib/prom.ts";
import { fmt, mb, type Row, type ScenarioResult } from "../lib/result.ts";
import { round } from "../lib/stats.ts";
import { studyEvent } from "../lib/studies.ts";
import { singleStep, workflow } from "./common.ts";

function terminalStatus(task: string, at: number): InferenceTaskStatus {
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
  const start = iso(at - 42_000);
  const end = iso(at - 30_000);
  return {
    observedGeneration: 1,
    phase: "Succeeded",
    currentStep: "infer",
    conditions: [
      {
        type: "Succeeded",
        status: "True",
        reason: "Succeeded",
        message: "1 step(s) succeeded, 0 skipped",
        lastTransitionTime: end,
        observedGeneration: 1,
      },
    ],
    steps: [
      {
        name: "infer",
        phase: "Succeeded",
        reason: "Completed",
        jobName: jobName(task, "infer"),
        attempts: 1,
        startTime: start,
        completionTime: end,
        outputs: { finding: "negative", score: 0.07, model: "bench-1.0" },
      },
    ],
    startTime: start,
    completionTime: end,
    duration: "12s",
    resultsPublished: end,
  };
}

/** Size of one task as the API serves it (JSON), and how much of it is metadata.managedFields. */
async function sampleTaskSize(ctx: Context, ns: string): Promise<{ bytes: number; managedFieldsBytes: number }> {
  const list = (await ctx.kube.custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: "inferencetasks",
    limit: 1,
  })) as { items: { metadata?: { managedFields?: unknown } }[] };
  const t = list.items[0];
  if (!t) return { bytes: 0, managedFieldsBytes: 0 };
  return {
    bytes: JSON.stringify(t).length,
    managedFieldsBytes: JSON.stringify(t.metadata?.managedFields ?? []).length,
  };
}

interface ColdStart {
  syncedMs?: number;
  readyMs: number;
  resyncedMs: number;
  rssMB: number;
  rssAfter10sMB: number;
  peakMB: number;
  heapUsedMB: number;
}

async function coldStart(
  ctx: Context,
  name: string,
  ns: string,
  n: number,
  profile = false,
): Promise<{ op: Operator; c: ColdStart }> {
  const op = await ctx.operator(name, [ns], { profile });
  const reconciled = async () => {
    const m = await op.metrics();
    return {
      done: sum(m, "radflow_reconcile_total", { controller: "inferencetask" }),
      depth: sum(m, "radflow_workqueue_depth", { queue: "inferencetask" }),
    };
  };
  await waitUntil(`${n} tasks reconciled`, 600_000, async () => {
    const r = await reconciled();
    return r.done >= n && r.depth === 0;
  });
  const resyncedMs = Date.now() - op.spawnedAt;
  const synced = op.findLog(/caches synced/);
  const m0 = op.memory();
  await sleep(10_000);
  const m1 = op.memory();
  const metrics = await op.metrics();
  return {
    op,
    c: {
      syncedMs: synced ? synced.time - op.spawnedAt : undefined,
      readyMs: op.readyMs,
      resyncedMs,
      rssMB: round(mb(m0.rss)),
      rssAfter10sMB: round(mb(m1.rss)),
      peakMB: round(mb(m1.peak)),
      heapUsedMB: round(mb(sum(metrics, "radflow_nodejs_heap_size_used_bytes"))),
    },
  };
}

export async function rssScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.opts.rssTasks;
  const ns = await ctx.namespace("rss");
  const rows: Row[] = [];
  const details: Record<string, unknown> = { namespace: ns, tasks: n, taskPhase: "Succeeded (results published)" };
  const profiles: ScenarioResult["profiles"] = [];
  const stop = async (op: Operator) => {
    const p = await ctx.stopOperator(op);
    if (p) profiles.push(p);
  };

  // the operator with nothing to hold: the baseline
  // memory is measured without --cpu-prof: the profiler keeps its samples in memory
  const op0 = await ctx.operator("rss-empty", [ns], { profile: false });
  let wfName = "bench-rss";
  try {
    const wf = await workflow(ctx, ns, wfName, singleStep("KNEE"), { bodyPart: "KNEE" });
    wfName = wf.name;
    await sleep(5000);
    const m = await op0.metrics();
    details.baseline = {
      rssMB: round(mb(op0.memory().rss)),
      heapUsedMB: round(mb(sum(m, "radflow_nodejs_heap_size_used_bytes"))),
      readyMs: op0.readyMs,
    };
  } finally {
    await stop(op0);
  }

  // N tasks, created with the operator down
  const aiwf = AIWorkflow.parse(
    await ctx.kube.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: "aiworkflows",
      name: wfName,
    }),
  );
  log(`rss: creating ${n} InferenceTasks (Succeeded) through the API`);
  const t0 = performance.now();
  const now = Date.now();
  await pool(
    Array.from({ length: n }, (_, i) => i),
    32,
    async () => {
      const e = studyEvent(`${ctx.runId}-rss`, { bodyPart: "KNEE" });
      const parsed = toStudyEvent(e.body, new Date().toISOString());
      if (!parsed.ok) throw new Error(`bench study event does not parse: ${parsed.reason}`);
      const task = buildTask(aiwf, parsed.event);
      const name = task.metadata.name as string;
      const common = { group: GROUP, version: VERSION, namespace: ns, plural: "inferencetasks" };
      await ctx.kube.custom.createNamespacedCustomObject({ ...common, body: task });
      await ctx.kube.custom.patchNamespacedCustomObjectStatus(
        { ...common, name, body: { status: terminalStatus(name, now) } },
        mergePatch,
      );
    },
  );
  const createS = (performance.now() - t0) / 1000;
  details.creation = { seconds: round(createS), tasksPerSecond: round(n / createS) };
  details.taskObject = await sampleTaskSize(ctx, ns);

  log("rss: cold start over them");
  const first = await coldStart(ctx, "rss-cold", ns, n);
  await stop(first.op);
  log("rss: restart");
  const second = await coldStart(ctx, "rss-restart", ns, n);
  await stop(second.op);
  details.coldStart = first.c;
  details.restart = second.c;
  if (ctx.opts.profile) {
    log("rss: one more restart under --cpu-prof (for the profile only; its numbers are not used)");
    const third = await coldStart(ctx, "rss-profiled", ns, n, true);
    await stop(third.op);
    details.profiledRestart = third.c;
  }
  const base = details.baseline as { rssMB: number };
  details.perTaskKB = round(((second.c.rssAfter10sMB - base.rssMB) * 1024) / n, 2);

  rows.push({
    metric: `operator RSS with ${n} tasks (settled; peak)`,
    value: `${fmt(second.c.rssAfter10sMB, "MB")} (peak ${fmt(second.c.peakMB, "MB")}; empty ${fmt(base.rssMB, "MB")}; heap ${fmt(second.c.heapUsedMB, "MB")})`,
    target: n === 10_000 ? "< 250 MB" : "< 250 MB (at 10,000)",
    met: second.c.rssAfter10sMB < 250 && second.c.peakMB < 250,
  });
  const cs = (c: ColdStart) =>
    `synced ${fmt(c.syncedMs, "ms", 0)}, ready ${fmt(c.readyMs, "ms", 0)}, all reconciled ${fmt(c.resyncedMs, "ms", 0)}`;
  rows.push({ metric: `cold start over ${n} tasks (first start)`, value: cs(first.c) });
  rows.push({ metric: `cold start over ${n} tasks (restart)`, value: cs(second.c) });
  return { scenario: "4 memory / cold start", rows, details, profiles };
}
