// Scenario 4: the operator's memory with N finished studies present — each an InferenceTask
// (Succeeded, results published), its Job (Complete) and the Job's pod (Succeeded) — and its cold
// start over them, for each N of --rss-tasks in turn (the namespace grows from one N to the
// next). They are made straight through the API (bench/lib/finished.ts), so that resyncing them
// costs reads and reconciles but no writes. Cold start = spawn → caches synced (the "caches
// synced: reconciling" log line) → /readyz → every task reconciled once (work queue empty).
// Memory is read without the profiler; a last, profiled restart only provides the CPU profile.
// The operator runs as the chart runs it: in a memory cgroup whose limit is the chart's
// resources.limits.memory (bench/lib/cgroup.ts), so Node sizes its heap from that limit and the
// kernel's OOM killer acts at it; with the node flags the chart gives it (NODE_OPTIONS), and for
// comparison without them. Per start: RSS (/proc), the cgroup's peak usage, failcnt and OOM kills,
// V8's heap after its last full GC (--trace-gc) and the heap limit Node chose in the cgroup.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { type CgroupMemory, MemoryCgroup } from "../lib/cgroup.ts";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { readWorkflow, seedFinished } from "../lib/finished.ts";
import { summarizeGcTrace } from "../lib/gc-trace.ts";
import { GROUP, VERSION } from "../lib/kube.ts";
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

/** objectsPresent summed over namespaces (the sample sizes are the first namespace's). */
async function objectsPresentIn(ctx: Context, namespaces: string[]) {
  const all = await Promise.all(namespaces.map((ns) => objectsPresent(ctx, ns)));
  const first = all[0] as Awaited<ReturnType<typeof objectsPresent>>;
  const total = (k: keyof typeof first) => ({ ...first[k], count: all.reduce((a, x) => a + x[k].count, 0) });
  return { tasks: total("tasks"), jobs: total("jobs"), pods: total("pods") };
}

/** The node flags the chart's Deployment gives the operator (values.yaml `nodeOptions`), if any. */
export function chartNodeOptions(): string[] {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../helm/radflow/values.yaml");
  const m = /^nodeOptions:\s*"?([^"\n#]*)"?/m.exec(readFileSync(file, "utf8"));
  return (m?.[1] ?? "").trim().split(/\s+/).filter(Boolean);
}

/**
 * The node-flag variants to measure: RADFLOW_BENCH_RSS_NODE_OPTIONS ("," between variants, "none"
 * for no flags), else the chart's flags, and for comparison none when the chart sets some.
 */
export function nodeFlagVariants(
  text: string | undefined,
  chartFlags: string[],
): { label: string; nodeArgs: string[] }[] {
  if (text?.trim())
    return text.split(",").map((v) => {
      const args = v.trim() === "none" ? [] : v.trim().split(/\s+/).filter(Boolean);
      return { label: args.length ? args.join(" ") : "no flags", nodeArgs: args };
    });
  return [
    { label: chartFlags.length ? `chart (${chartFlags.join(" ")})` : "chart (no flags)", nodeArgs: chartFlags },
    ...(chartFlags.length ? [{ label: "no flags", nodeArgs: [] }] : []),
  ];
}

/** The heap limit and semi-space Node picks with these flags inside a cgroup of `limitBytes`. */
function nodeHeapInCgroup(limitBytes: number, nodeArgs: string[]): Record<string, unknown> {
  const cg = MemoryCgroup.create(`radflow-bench-${process.pid}-probe`, limitBytes);
  if (!(cg instanceof MemoryCgroup)) return { unavailable: cg.unavailable };
  try {
    const script =
      "const v=require('v8');const h=v.getHeapStatistics();const n=v.getHeapSpaceStatistics().find(s=>s.space_name==='new_space');" +
      "console.log(JSON.stringify({heapLimitMB:Math.round(h.heap_size_limit/2**20),newSpaceMB:Math.round(n.space_size/2**20*10)/10}))";
    const w = cg.wrap(process.execPath, [...nodeArgs, "-e", script]);
    const r = spawnSync(w.cmd, w.args, { encoding: "utf8" });
    return JSON.parse(r.stdout.trim() || "{}") as Record<string, unknown>;
  } finally {
    void cg.remove();
  }
}

interface ColdStart {
  nodeArgs: string[];
  syncedMs?: number;
  readyMs: number;
  resyncedMs: number;
  rssMB: number;
  rssAfter10sMB: number;
  peakMB: number;
  /** the settled RSS's anonymous and file-backed parts (/proc RssAnon, RssFile) */
  rssAnonMB?: number;
  rssFileMB?: number;
  heapUsedMB: number;
  /** V8's heap after its last mark-compact (--trace-gc), MB */
  heapAfterGcMB?: number;
  /** the cgroup at the chart's limit, when the operator ran in one */
  cgroup?: {
    maxUsageMB: number;
    workingSetMB: number;
    rssMB: number;
    cacheMB: number;
    failcnt: number;
    oomKills: number;
    underOom: boolean;
  };
  /** the operator still running at the end (not OOM-killed) */
  alive: boolean;
  error?: string;
}

const cgroupFigures = (c: CgroupMemory): NonNullable<ColdStart["cgroup"]> => ({
  maxUsageMB: round(mb(c.maxUsageBytes)),
  workingSetMB: round(mb(c.workingSetBytes)),
  rssMB: round(mb(c.rssBytes)),
  cacheMB: round(mb(c.cacheBytes)),
  failcnt: c.failcnt,
  oomKills: c.oomKills,
  underOom: c.underOom,
});

async function coldStart(
  ctx: Context,
  name: string,
  namespaces: string[],
  n: number,
  o: { profile?: boolean; sourceRoot?: string; nodeArgs: string[]; limitBytes?: number },
): Promise<{ op?: Operator; cg?: MemoryCgroup; c: ColdStart }> {
  let cg: MemoryCgroup | undefined;
  if (o.limitBytes) {
    const made = MemoryCgroup.create(`radflow-bench-${process.pid}-${name}`, o.limitBytes);
    if (made instanceof MemoryCgroup) cg = made;
    else log(`rss: operator runs without a memory cgroup: ${made.unavailable}`);
  }
  const nodeArgs = ["--trace-gc", ...o.nodeArgs];
  const c: ColdStart = {
    nodeArgs: o.nodeArgs,
    readyMs: 0,
    resyncedMs: 0,
    rssMB: 0,
    rssAfter10sMB: 0,
    peakMB: 0,
    heapUsedMB: 0,
    alive: true,
  };
  let op: Operator | undefined;
  const finish = () => {
    if (cg) c.cgroup = cgroupFigures(cg.read());
    if (op) {
      c.alive = op.alive();
      c.heapAfterGcMB = summarizeGcTrace(readFileSync(op.logFile, "utf8")).afterLastFullMB;
    }
  };
  try {
    op = await ctx.operator(name, namespaces, {
      profile: o.profile ?? false,
      sourceRoot: o.sourceRoot,
      nodeArgs,
      memoryCgroup: cg,
    });
    const deadline = Date.now() + Math.max(600_000, n * 60);
    for (;;) {
      if (!op.alive()) throw new Error(`operator died (${op.exitText()}) before reconciling ${n} tasks`);
      const m = await op.metrics().catch(() => undefined);
      if (
        m &&
        sum(m, "radflow_reconcile_total", { controller: "inferencetask" }) >= n &&
        sum(m, "radflow_workqueue_depth", { queue: "inferencetask" }) === 0
      )
        break;
      if (Date.now() > deadline)
        throw new Error(`${n} tasks not reconciled in ${Math.round((deadline - op.spawnedAt) / 1000)} s`);
      await sleep(500);
    }
    c.resyncedMs = Date.now() - op.spawnedAt;
    c.syncedMs = op.findLog(/caches synced/) ? (op.findLog(/caches synced/)?.time ?? 0) - op.spawnedAt : undefined;
    c.readyMs = op.readyMs;
    const m0 = op.memory();
    await sleep(10_000);
    const m1 = op.memory();
    const metrics = await op.metrics();
    c.rssMB = round(mb(m0.rss));
    c.rssAfter10sMB = round(mb(m1.rss));
    c.peakMB = round(mb(m1.peak));
    c.rssAnonMB = round(mb(m1.anon));
    c.rssFileMB = round(mb(m1.file));
    c.heapUsedMB = round(mb(sum(metrics, "radflow_nodejs_heap_size_used_bytes")));
  } catch (e) {
    c.error = (e as Error).message.split("\n")[0];
    log(`rss: ${name}: ${c.error}`);
  }
  finish();
  return { op, cg, c };
}

export async function rssScenario(ctx: Context): Promise<ScenarioResult> {
  const sizes = ctx.opts.rssTasks;
  // --rss-namespace: namespaces of their own names, made when missing and kept afterwards, so that
  // a later run carries on where this one stopped (seeding only adds what is missing). Several
  // (a,b): the studies are spread evenly over them and one operator watches them all — two
  // namespaces can be filled at once, and the operator then holds one more list+watch per kind
  const reuse = ctx.opts.rssNamespace
    ?.split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  const namespaces = reuse?.length ? reuse : [await ctx.namespace("rss")];
  for (const ns of reuse ?? [])
    await ctx.kube.createNamespace(ns).catch((e) => {
      if ((e as { code?: number }).code !== 409) throw e;
    });
  const rows: Row[] = [];
  const limitMiB = chartMemoryLimitMiB();
  const limitBytes = limitMiB ? limitMiB * 2 ** 20 : undefined;
  const chartFlags = chartNodeOptions();
  const variants = nodeFlagVariants(process.env.RADFLOW_BENCH_RSS_NODE_OPTIONS, chartFlags);
  const details: Record<string, unknown> = {
    namespaces,
    sizes,
    perTask: "InferenceTask Succeeded (results published) + its Job (Complete) + its pod (Succeeded)",
    chartMemoryLimitMiB: limitMiB,
    chartNodeOptions: chartFlags,
    nodeHeapInCgroup: limitBytes
      ? Object.fromEntries(variants.map((v) => [v.label, nodeHeapInCgroup(limitBytes, v.nodeArgs)]))
      : undefined,
  };
  const profiles: ScenarioResult["profiles"] = [];
  const stop = async (x: { op?: Operator; cg?: MemoryCgroup }) => {
    if (x.op) {
      const p = await ctx.stopOperator(x.op);
      if (p) profiles.push(p);
    }
    // an operator that never got ready is not in ctx's hands: what is left in its cgroup is it
    x.cg?.killAll();
    await x.cg?.remove().catch((e) => log(`rss: ${(e as Error).message}`));
  };

  // the operator with nothing to hold (one workflow in an empty namespace): the baseline; memory
  // is measured without --cpu-prof (the profiler keeps its samples in memory)
  const empty = await ctx.namespace("rss-empty");
  const wfName = "bench-rss";
  {
    const b = await coldStart(ctx, "rss-empty", [empty], 0, { nodeArgs: chartFlags, limitBytes });
    try {
      await workflow(ctx, empty, wfName, singleStep("KNEE"), { bodyPart: "KNEE" });
      await sleep(5000);
      const m = b.op ? await b.op.metrics() : undefined;
      details.baseline = {
        rssMB: b.op ? round(mb(b.op.memory().rss)) : undefined,
        heapUsedMB: m ? round(mb(sum(m, "radflow_nodejs_heap_size_used_bytes"))) : undefined,
        readyMs: b.op?.readyMs,
        cgroup: b.cg ? cgroupFigures(b.cg.read()) : undefined,
      };
    } finally {
      await stop(b);
    }
  }
  const base = details.baseline as { rssMB: number } | undefined;
  // the workflow in each measured namespace: made once, with an operator watching (it turns it Ready)
  const workflows: AIWorkflow[] = [];
  for (const ns of namespaces) {
    const hasWorkflow = await readWorkflow(ctx, ns, wfName).then(
      () => true,
      () => false,
    );
    if (!hasWorkflow) {
      const w = await ctx.operator("rss-workflow", [ns], { profile: false });
      try {
        await workflow(ctx, ns, wfName, singleStep("KNEE"), { bodyPart: "KNEE" });
      } finally {
        await ctx.stopOperator(w);
      }
    }
    workflows.push(await readWorkflow(ctx, ns, wfName));
  }

  const bySize: Record<string, unknown>[] = [];
  details.bySize = bySize;
  const limitText = limitMiB ? `chart limit ${limitMiB} MiB` : "chart limit unknown";
  for (const want of sizes) {
    // the studies, created (or finished, when a stopped run left them half made) with the operator
    // down; a namespace that already holds more is measured as it is
    log(`rss: making ${want} finished studies (task + Job + pod) present through the API`);
    const each = Math.ceil(want / namespaces.length);
    const parts = await Promise.all(
      namespaces.map((ns, i) =>
        seedFinished(ctx, workflows[i] as AIWorkflow, ns, each, {
          concurrency: Math.ceil(48 / namespaces.length),
          progress: (done, total, rate) => log(`rss: ${ns}: ${done}/${total} studies made, ${rate.toFixed(1)}/s`),
        }),
      ),
    );
    const seeded = parts.reduce((a, b) => ({
      found: a.found + b.found,
      repaired: a.repaired + b.repaired,
      created: a.created + b.created,
      seconds: Math.max(a.seconds, b.seconds),
      writes: a.writes + b.writes,
    }));
    const creation = {
      ...seeded,
      seconds: round(seeded.seconds),
      studiesPerSecond: round((seeded.created + seeded.repaired) / seeded.seconds),
      writesPerSecond: round(seeded.writes / seeded.seconds),
    };
    log(`rss: ${JSON.stringify(creation)}`);
    const present = await objectsPresentIn(ctx, namespaces);
    const n = present.tasks.count;
    log(`rss: present ${JSON.stringify(present)}`);

    // per node-flag variant: a first start and (--rss-starts 2) a restart over the same objects;
    // the worst RSS of the two is the figure
    const measure = async (label: string, nodeArgs: string[], sourceRoot?: string) => {
      const tag = label.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
      log(`rss: cold start over ${n} tasks (${label})`);
      const first = await coldStart(ctx, `rss-cold-${tag}-${n}`, namespaces, n, { sourceRoot, nodeArgs, limitBytes });
      await stop(first);
      let second = first;
      if (ctx.opts.rssStarts > 1 && first.c.alive && !first.c.error) {
        log(`rss: restart over ${n} tasks (${label})`);
        second = await coldStart(ctx, `rss-restart-${tag}-${n}`, namespaces, n, { sourceRoot, nodeArgs, limitBytes });
        await stop(second);
      }
      const worst = Math.max(second.c.rssAfter10sMB, second.c.peakMB, first.c.peakMB);
      const cgroupPeak = Math.max(first.c.cgroup?.maxUsageMB ?? 0, second.c.cgroup?.maxUsageMB ?? 0) || undefined;
      const r = { label, coldStart: first.c, restart: second.c, worstMB: worst, cgroupPeakMB: cgroupPeak };
      // on stderr at once: a run stopped before its end still leaves its figures
      log(`rss: ${n} finished studies, operator ${label}: ${JSON.stringify(r)}`);
      return r;
    };
    // --compare: the other revision first, on the very same objects, then this one
    const compare = ctx.compareRoot ? await measure("compare", chartFlags, ctx.compareRoot) : undefined;
    const measured = [];
    for (const v of variants) measured.push(await measure(v.label, v.nodeArgs));
    const m = measured[0] as Awaited<ReturnType<typeof measure>>;
    const held = (x: typeof m) =>
      [x.coldStart, x.restart].every((c) => c.alive && !c.error && (c.cgroup?.oomKills ?? 0) === 0);
    bySize.push({
      tasks: n,
      creation,
      present,
      ...m,
      variants: measured,
      perStudyKB: base ? round(((m.restart.rssAfter10sMB - base.rssMB) * 1024) / n, 2) : undefined,
      withinChartLimit: limitMiB ? held(m) && m.worstMB < limitMiB : undefined,
      ...(compare ? { compare } : {}),
    });
    const objects = `${present.tasks.count} tasks, ${present.jobs.count} Jobs, ${present.pods.count} pods`;
    const rss = (x: typeof m) => {
      const c = x.restart;
      const oom = [x.coldStart, x.restart].some((y) => !y.alive || (y.cgroup?.oomKills ?? 0) > 0) ? "; OOM-KILLED" : "";
      const err = c.error ? `; ${c.error}` : "";
      return `RSS ${fmt(c.rssAfter10sMB, "MB")} (anon ${fmt(c.rssAnonMB, "MB")}; peak ${fmt(x.worstMB, "MB")}); cgroup peak ${fmt(x.cgroupPeakMB, "MB")}, failcnt ${c.cgroup?.failcnt ?? "–"}; heap ${fmt(c.heapUsedMB, "MB")}, after GC ${fmt(c.heapAfterGcMB, "MB")}${oom}${err}`;
    };
    for (const x of measured)
      rows.push({
        metric: `operator with ${n} finished studies, ${x.label}`,
        value: `${rss(x)}; empty ${fmt(base?.rssMB, "MB")}; ${objects}`,
        target: n <= 10_000 ? `< ${TARGET_MB} MB; ${limitText}` : limitText,
        met: !held(x) ? false : n <= 10_000 ? x.worstMB < TARGET_MB : limitMiB ? x.worstMB < limitMiB : undefined,
      });
    if (compare) rows.push({ metric: `  the same, operator of ${ctx.opts.compare}`, value: rss(compare) });
    const cs = (c: ColdStart) =>
      `synced ${fmt(c.syncedMs, "ms", 0)}, ready ${fmt(c.readyMs, "ms", 0)}, all reconciled ${fmt(c.resyncedMs, "ms", 0)}`;
    rows.push({ metric: `cold start over ${n} tasks (first start, ${m.label})`, value: cs(m.coldStart) });
    if (ctx.opts.rssStarts > 1)
      rows.push({ metric: `cold start over ${n} tasks (restart, ${m.label})`, value: cs(m.restart) });
    if (compare) rows.push({ metric: `  the same, operator of ${ctx.opts.compare}`, value: cs(compare.restart) });
    if (seeded.created + seeded.repaired > 0)
      rows.push({
        metric: `making ${seeded.created + seeded.repaired} finished studies (6 writes each)`,
        value: `${fmt(creation.seconds, "s", 0)}: ${creation.studiesPerSecond}/s, ${creation.writesPerSecond} writes/s`,
      });
  }
  if (ctx.opts.profile) {
    log("rss: one more restart under --cpu-prof (for the profile only; its numbers are not used)");
    const n = (await objectsPresentIn(ctx, namespaces)).tasks.count;
    const third = await coldStart(ctx, "rss-profiled", namespaces, n, { profile: true, nodeArgs: chartFlags });
    await stop(third);
    details.profiledRestart = third.c;
  }
  return { scenario: "4 memory / cold start", rows, details, profiles };
}
