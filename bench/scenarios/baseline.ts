// Baseline: the machine's own limit. Plain Jobs of radflow's shape (bench/lib/shape.ts) created
// straight through the same API server, with no operator: N at full concurrency → Jobs created/s
// (their ADDED watch event) and Complete/s (KWOK runs their pods, the Job controller completes
// them); then open loop at the latency scenario's rates → create → ADDED latency, measured with
// the same clock and watch as radflow's event → Job. radflow ÷ baseline is in the side-by-side.
import { performance } from "node:perf_hooks";
import type { V1Job } from "@kubernetes/client-node";
import { perStudyLine, profileRow } from "../lib/apiserver-profile.ts";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { coresLine, coresUsed, cpuMsPerStudy } from "../lib/cpu.ts";
import { apiserverMetrics, pool, Recorder } from "../lib/kube.ts";
import { sleep } from "../lib/operator.ts";
import { fmt, type Row, type ScenarioResult } from "../lib/result.ts";
import { JobShape } from "../lib/shape.ts";
import { type LatencySummary, rates, round, summarize } from "../lib/stats.ts";
import { apiserverWrites } from "../lib/writes.ts";
import { singleStep } from "./common.ts";

/** Creates in flight at once: "full concurrency" for one client on this machine. */
export const PEER_CONCURRENCY = 64;

type JobEvent = { metadata?: { name?: string }; status?: { conditions?: { type: string; status: string }[] } };

/** When each Job of the namespace was first seen (ADDED) and seen Complete (or Failed). */
function jobTimes(ctx: Context, namespace: string) {
  const added = new Map<string, number>();
  const complete = new Map<string, number>();
  const failed = new Set<string>();
  const rec = new Recorder<JobEvent>(ctx.kube.kc, `/apis/batch/v1/namespaces/${namespace}/jobs`, (type, j, at) => {
    const name = j.metadata?.name;
    if (!name || type === "DELETED") return;
    if (!added.has(name)) added.set(name, at);
    const cond = (t: string) => j.status?.conditions?.some((c) => c.type === t && c.status === "True");
    if (!complete.has(name) && (cond("Complete") || cond("Failed"))) {
      complete.set(name, at);
      if (cond("Failed")) failed.add(name);
    }
  });
  return { added, complete, failed, rec };
}

/** Polls until `done()` or nothing moved for `stallMs`; true when it stalled. */
async function waitProgress(progress: () => number, goal: number, stallMs = 60_000): Promise<boolean> {
  let last = -1;
  let since = performance.now();
  for (;;) {
    const p = progress();
    if (p >= goal) return false;
    if (p !== last) {
      last = p;
      since = performance.now();
    } else if (performance.now() - since > stallMs) return true;
    await sleep(50);
  }
}

export interface OpenLoopResult {
  latencyMs: LatencySummary; // create sent → Job ADDED at the benchmark
  responseMs: LatencySummary; // create sent → API server's response
  maxLagMs: number;
  errors: number;
}

/** Creates `jobs` at `rate`/s, each at start + i/rate whatever came before (open loop). */
async function openLoop(ctx: Context, jobs: V1Job[], rate: number, added: Map<string, number>) {
  const sentAt: number[] = [];
  const answered: number[] = [];
  const inflight: Promise<void>[] = [];
  let errors = 0;
  let maxLagMs = 0;
  const start = performance.now();
  for (const [i, job] of jobs.entries()) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const now = performance.now();
    maxLagMs = Math.max(maxLagMs, now - due);
    sentAt[i] = now;
    inflight.push(
      ctx.kube.batch.createNamespacedJob({ namespace: job.metadata?.namespace as string, body: job }).then(
        () => {
          answered[i] = performance.now();
        },
        () => {
          errors++;
        },
      ),
    );
  }
  await Promise.all(inflight);
  const names = jobs.map((j) => j.metadata?.name as string);
  await waitProgress(() => names.filter((n) => added.has(n)).length, names.length - errors, 30_000);
  const lat: number[] = [];
  const resp: number[] = [];
  names.forEach((n, i) => {
    const a = added.get(n);
    if (a !== undefined) lat.push(a - (sentAt[i] as number));
    if (answered[i] !== undefined) resp.push((answered[i] as number) - (sentAt[i] as number));
  });
  return {
    latencyMs: summarize(lat, jobs.length),
    responseMs: summarize(resp, jobs.length),
    maxLagMs: round(maxLagMs),
    errors,
  };
}

export async function baselineScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.opts.throughputStudies;
  const ns = await ctx.namespace("baseline");
  const shape = new JobShape(ns, "bench-baseline", singleStep("HEAD"), `${ctx.runId}-baseline`);
  const rows: Row[] = [];
  const t = jobTimes(ctx, ns);
  await t.rec.start();
  try {
    // 1: N at once, PEER_CONCURRENCY creates in flight
    const jobs = Array.from({ length: n }, () => shape.next());
    const names = jobs.map((j) => j.metadata?.name as string);
    log(`baseline: ${n} plain Jobs of radflow's shape, ${PEER_CONCURRENCY} creates in flight`);
    const apiBefore = ctx.cluster.own ? await apiserverMetrics(ctx.kube.kc) : undefined;
    const c0 = ctx.cpu();
    const profiling = ctx.apiserverProfile("baseline");
    let errors = 0;
    const t0 = performance.now();
    await pool(jobs, PEER_CONCURRENCY, (job) =>
      ctx.kube.batch.createNamespacedJob({ namespace: ns, body: job }).catch(() => {
        errors++;
      }),
    );
    const createMs = performance.now() - t0;
    const stalled = await waitProgress(() => names.filter((x) => t.complete.has(x)).length, n - errors);
    const c1 = ctx.cpu();
    const cores = coresUsed(c0, c1);
    const perStudy = cpuMsPerStudy(c0, c1, n);
    const apiserverProfile = await profiling;
    const at = (m: Map<string, number>) => names.map((x) => m.get(x)).filter((x): x is number => x !== undefined);
    const toCreated = rates(t0, at(t.added));
    const toComplete = rates(t0, at(t.complete));
    await sleep(2000); // the Job controller's last status writes
    const cluster = apiBefore ? apiserverWrites(apiBefore, await apiserverMetrics(ctx.kube.kc), n) : undefined;
    const failed = names.filter((x) => t.failed.has(x)).length;
    rows.push({
      metric: `plain Jobs/s created (${n} at once; sustained / overall)`,
      value: `${fmt(toCreated.sustained)} / ${fmt(toCreated.overall)}${errors ? `, ${errors} create errors` : ""}`,
    });
    rows.push({
      metric: "plain Jobs/s Complete (sustained / overall)",
      value: `${fmt(toComplete.sustained)} / ${fmt(toComplete.overall)}${failed ? `, ${failed} failed` : ""}${stalled ? ", STALLED" : ""}`,
    });
    if (cluster)
      rows.push({ metric: "API writes per Job, whole cluster (API server)", value: fmt(cluster.perStudy, "", 2) });
    rows.push({ metric: "machine CPU during the burst (cores)", value: coresLine(cores) });
    rows.push({ metric: "CPU per Job in the burst (ms)", value: perStudyLine(perStudy) });
    const pr = profileRow(apiserverProfile);
    if (pr) rows.push(pr);

    // 2: open loop at each rate of the latency scenario (the same seconds per rate)
    const perRate: ({ rate: number; jobs: number } & OpenLoopResult)[] = [];
    for (const [i, rate] of ctx.opts.rates.entries()) {
      const k = Math.round(rate * (ctx.opts.latencySeconds[i] as number));
      log(`baseline: ${k} plain Jobs at ${rate}/s (open loop)`);
      const r = await openLoop(
        ctx,
        Array.from({ length: k }, () => shape.next()),
        rate,
        t.added,
      );
      perRate.push({ rate, jobs: k, ...r });
      const l = r.latencyMs;
      rows.push({
        metric: `create→Job @${rate}/s p50 / p95 / p99 (max)`,
        value: `${fmt(l.p50)} / ${fmt(l.p95)} / ${fmt(l.p99)} ms (${fmt(l.max)})${l.missing ? `, ${l.missing} missing` : ""}`,
      });
      await sleep(2000);
    }
    return {
      scenario: "baseline",
      rows,
      details: {
        namespace: ns,
        jobs: n,
        concurrency: PEER_CONCURRENCY,
        createMs: round(createMs),
        createErrors: errors,
        jobsFailed: failed,
        jobsPerSecondCreated: toCreated,
        jobsPerSecondComplete: toComplete,
        writes: { cluster },
        cpuCores: cores,
        cpuMsPerStudy: perStudy,
        apiserverProfile,
        perRate,
        stalled,
      },
      profiles: [],
    };
  } finally {
    t.rec.stop();
  }
}
