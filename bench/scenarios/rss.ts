// Scenario 4: the operator's memory with N finished studies present — each an InferenceTask
// (Succeeded, results published), its Job (Complete) and the Job's pod (Succeeded) — and its cold
// start over them, for each N of --rss-tasks in turn (the namespace grows from one N to the
// next). They are made straight through the API (bench/lib/finished.ts), so that resyncing them
// costs reads and reconciles but no writes. Cold start = spawn → caches synced (the "caches
// synced: reconciling" log line) → /readyz → every task reconciled once (work queue empty).
// Memory is read without the profiler; a last, profiled restart only provides the CPU profile.
// The chart's memory limit (helm/radflow/values.yaml, resources.limits.memory) is printed next to
// each figure.
import { readFileSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { createFinished, readWorkflow } from "../lib/finished.ts";
import { GROUP, pool, VERSION, waitUntil } from "../lib/kube.ts";
import type { Operator } from "../lib/operator.ts";
import { sleep } from "../lib/operator.ts";
import { sum } from "../lib/prom.ts";
import { fmt, mb, type Row, type ScenarioResult } from "../lib/result.ts";
import { round } from "../lib/stats.ts";
import { singleStep, workflow } from "./common.ts";

const SELECTOR = "app.kubernetes.io/managed-by=radflow";
const TARGET_MB = 250; // issue 15: < 250 MB at 10,000 tasks

/** The chart's container memory limit in MiB (resources.limits.memory), when it reads as one. */
export function chartMemoryLimitMiB(): number | undefined {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../helm/radflow/values.yaml");
  const text = readFileSync(file, "utf8");
  const m = /^resources:\n(?:[ \t].*\n)*?[ \t]+limits:\n(?:[ \t].*\n)*?[ \t]+memory:\s*"?(\d+)(Mi|Gi)"?/m.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
}

type Lister = (page: { limit: number; _continue?: string }) => Promise<{
  items: { metadata?: { managedFields?: unknown } }[];
  metadata?: { _continue?: string; continue?: string };
}>;

/** How many objects a paged list returns, and the JSON size of the first (whole, and managedFields). */
async function census(list: Lister): Promise<{ count: number; bytes: number; managedFieldsBytes: number }> {
  let count = 0;
  let cont: string | undefined;
  let sample: { metadata?: { managedFields?: unknown } } | undefined;
  do {
    const page = await list({ limit: 500, _continue: cont });
    count += page.items.length;
    sample ??= page.items[0];
    cont = page.metadata?._continue ?? page.metadata?.continue;
  } while (cont);
  return {
    count,
    bytes: sample ? JSON.stringify(sample).length : 0,
    managedFieldsBytes: sample ? JSON.stringify(sample.metadata?.managedFields ?? []).length : 0,
  };
}

async function objectsPresent(ctx: Context, ns: string) {
  const k = ctx.kube;
  return {
    tasks: await census(
      (p) =>
        k.custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: "inferencetasks",
          limit: p.limit,
          _continue: p._continue,
        }) as ReturnType<Lister>,
    ),
    jobs: await census((p) => k.batch.listNamespacedJob({ namespace: ns, labelSelector: SELECTOR, ...p }) as never),
    // kube-controller-manager's pod GC keeps at most --terminated-pod-gc-threshold (12,500 by
    // default) finished pods: beyond that the oldest are deleted, as on any default cluster
    pods: await census((p) => k.core.listNamespacedPod({ namespace: ns, labelSelector: SELECTOR, ...p }) as never),
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
  sourceRoot?: string,
): Promise<{ op: Operator; c: ColdStart }> {
  const op = await ctx.operator(name, [ns], { profile, sourceRoot });
  const reconciled = async () => {
    const m = await op.metrics();
    return {
      done: sum(m, "radflow_reconcile_total", { controller: "inferencetask" }),
      depth: sum(m, "radflow_workqueue_depth", { queue: "inferencetask" }),
    };
  };
  await waitUntil(`${n} tasks reconciled`, Math.max(600_000, n * 60), async () => {
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
  const sizes = ctx.opts.rssTasks;
  // --rss-namespace: carry on in a namespace an earlier run filled (kept afterwards, so that a
  // later run can grow it further)
  const reuse = ctx.opts.rssNamespace;
  const ns = reuse ?? (await ctx.namespace("rss"));
  const rows: Row[] = [];
  const limitMiB = chartMemoryLimitMiB();
  const details: Record<string, unknown> = {
    namespace: ns,
    sizes,
    perTask: "InferenceTask Succeeded (results published) + its Job (Complete) + its pod (Succeeded)",
    chartMemoryLimitMiB: limitMiB,
  };
  const profiles: ScenarioResult["profiles"] = [];
  const stop = async (op: Operator) => {
    const p = await ctx.stopOperator(op);
    if (p) profiles.push(p);
  };

  // the operator with nothing to hold: the baseline
  // memory is measured without --cpu-prof: the profiler keeps its samples in memory
  let wfName = "bench-rss";
  if (!reuse) {
    const op0 = await ctx.operator("rss-empty", [ns], { profile: false });
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
  }
  const base = details.baseline as { rssMB: number } | undefined;
  const aiwf = await readWorkflow(ctx, ns, wfName);

  const bySize: Record<string, unknown>[] = [];
  details.bySize = bySize;
  let made = reuse ? (await objectsPresent(ctx, ns)).tasks.count : 0;
  const limitText = limitMiB ? `chart limit ${limitMiB} MiB` : "chart limit unknown";
  for (const want of sizes) {
    // a namespace that already holds more (--rss-namespace) is measured as it is
    const n = Math.max(want, made);
    // the studies, created with the operator down
    log(`rss: creating ${n - made} finished studies (task + Job + pod) through the API (${n} in all)`);
    const t0 = performance.now();
    const now = Date.now();
    await pool(
      Array.from({ length: n - made }, (_, i) => i),
      64,
      () => createFinished(ctx, aiwf, now),
    );
    const createS = (performance.now() - t0) / 1000;
    const creation = { studies: n - made, seconds: round(createS), studiesPerSecond: round((n - made) / createS) };
    made = n;
    const present = await objectsPresent(ctx, ns);
    log(`rss: present ${JSON.stringify(present)}`);

    // a first start and a restart over the same objects; the worst RSS of the two is the figure
    // (--rss-starts 1: the first start only — the studies are finished, with radflow's finalizer,
    // so a first start writes nothing a restart would not)
    const measure = async (label: string, sourceRoot?: string) => {
      log(`rss: cold start over ${n} tasks (${label})`);
      const first = await coldStart(ctx, `rss-cold-${label}-${n}`, ns, n, false, sourceRoot);
      await stop(first.op);
      let second = first;
      if (ctx.opts.rssStarts > 1) {
        log(`rss: restart over ${n} tasks (${label})`);
        second = await coldStart(ctx, `rss-restart-${label}-${n}`, ns, n, false, sourceRoot);
        await stop(second.op);
      }
      const worst = Math.max(second.c.rssAfter10sMB, second.c.peakMB, first.c.peakMB);
      const r = { coldStart: first.c, restart: second.c, worstMB: worst };
      // on stderr at once: a run stopped before its end still leaves its figures
      log(`rss: ${n} finished studies, operator ${label}: ${JSON.stringify(r)}`);
      return r;
    };
    // --compare: the other revision first, on the very same objects, then this one
    const compare = ctx.compareRoot ? await measure("compare", ctx.compareRoot) : undefined;
    const m = await measure("this");
    bySize.push({
      tasks: n,
      creation,
      present,
      ...m,
      perStudyKB: base ? round(((m.restart.rssAfter10sMB - base.rssMB) * 1024) / n, 2) : undefined,
      withinChartLimit: limitMiB ? m.worstMB < limitMiB : undefined,
      ...(compare ? { compare } : {}),
    });
    const objects = `${present.tasks.count} tasks, ${present.jobs.count} Jobs, ${present.pods.count} pods`;
    const rss = (x: typeof m) =>
      `${fmt(x.restart.rssAfter10sMB, "MB")} (peak ${fmt(x.worstMB, "MB")}; heap ${fmt(x.restart.heapUsedMB, "MB")})`;
    rows.push({
      metric: `operator RSS with ${n} finished studies (settled; peak)`,
      value: `${rss(m)}; empty ${fmt(base?.rssMB, "MB")}; ${objects}`,
      target: n <= 10_000 ? `< ${TARGET_MB} MB; ${limitText}` : limitText,
      met: n <= 10_000 ? m.worstMB < TARGET_MB : limitMiB ? m.worstMB < limitMiB : undefined,
    });
    if (compare) rows.push({ metric: `  the same, operator of ${ctx.opts.compare}`, value: rss(compare) });
    const cs = (c: ColdStart) =>
      `synced ${fmt(c.syncedMs, "ms", 0)}, ready ${fmt(c.readyMs, "ms", 0)}, all reconciled ${fmt(c.resyncedMs, "ms", 0)}`;
    rows.push({ metric: `cold start over ${n} tasks (first start)`, value: cs(m.coldStart) });
    rows.push({ metric: `cold start over ${n} tasks (restart)`, value: cs(m.restart) });
    if (compare) rows.push({ metric: `  the same, operator of ${ctx.opts.compare}`, value: cs(compare.restart) });
  }
  if (ctx.opts.profile) {
    const n = made;
    log("rss: one more restart under --cpu-prof (for the profile only; its numbers are not used)");
    const third = await coldStart(ctx, "rss-profiled", ns, n, true);
    await stop(third.op);
    details.profiledRestart = third.c;
  }
  return { scenario: "4 memory / cold start", rows, details, profiles };
}
