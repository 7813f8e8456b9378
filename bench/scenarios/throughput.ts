// Scenario 2: sustained throughput. N studies are published as fast as JetStream takes them
// (a backlog, as after a gateway outage); the rate at which Jobs appear and tasks reach
// Succeeded is measured over the whole run and over the middle 80 % of completions.
// Scenario 3: Kubernetes API writes per single-step study, at a steady moderate rate.
import { performance } from "node:perf_hooks";
import { perStudyLine, profileRow } from "../lib/apiserver-profile.ts";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { coresLine, coresUsed, cpuMsPerStudy } from "../lib/cpu.ts";
import { apiserverMetrics } from "../lib/kube.ts";
import type { Operator } from "../lib/operator.ts";
import { sleep } from "../lib/operator.ts";
import { sum } from "../lib/prom.ts";
import { fmt, type Row, type ScenarioResult } from "../lib/result.ts";
import { rates, round, summarize } from "../lib/stats.ts";
import { apiserverWrites, operatorWrites } from "../lib/writes.ts";
import { latencies, operatorWork, run, singleStep, stages, workflow } from "./common.ts";

/** Waits until the operator's write count has not moved for `quietMs` (Events are written after the fact). */
async function quiesce(op: Operator, quietMs = 3000, maxMs = 60_000): Promise<void> {
  const writes = async () => {
    const m = await op.metrics();
    return ["create", "update", "patch", "delete"].reduce(
      (a, verb) => a + sum(m, "radflow_bench_http_requests_total", { verb }),
      0,
    );
  };
  const deadline = performance.now() + maxMs;
  let last = await writes();
  let since = performance.now();
  while (performance.now() < deadline) {
    await sleep(500);
    const now = await writes();
    if (now !== last) {
      last = now;
      since = performance.now();
    } else if (performance.now() - since >= quietMs) return;
  }
}

export async function throughputScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.opts.throughputStudies;
  const ns = await ctx.namespace("throughput");
  const op = await ctx.operator("throughput", [ns]);
  const rows: Row[] = [];
  const details: Record<string, unknown> = { namespace: ns, studies: n, gpu: 0 };
  const profiles: ScenarioResult["profiles"] = [];
  try {
    const wf = await workflow(ctx, ns, "bench-throughput", singleStep("ABDOMEN"), { bodyPart: "ABDOMEN" });
    log(`throughput: ${n} studies published at once`);
    const before = await op.metrics();
    const apiBefore = ctx.cluster.own ? await apiserverMetrics(ctx.kube.kc) : undefined;
    const cpu0 = op.cpuSeconds();
    const c0 = ctx.cpu(op);
    const profiling = ctx.apiserverProfile("throughput");
    const r = await run(ctx, wf, n, { waitTerminal: true });
    const c1 = ctx.cpu(op);
    const cores = coresUsed(c0, c1);
    const perStudy = cpuMsPerStudy(c0, c1, n);
    const apiserverProfile = await profiling;
    const toJob = rates(r.firstSent, [...r.jobAt.values()]);
    const toDone = rates(r.firstSent, [...r.doneAt.values()]);
    const cpu = op.cpuSeconds() - cpu0;
    await quiesce(op);
    const after = await op.metrics();
    const writes = operatorWrites(before, after, n);
    const cluster = apiBefore ? apiserverWrites(apiBefore, await apiserverMetrics(ctx.kube.kc), n) : undefined;
    const failed = [...r.phases.values()].filter((p) => p.phase === "Failed").length;
    Object.assign(details, {
      publishMs: round(r.publishMs),
      publishRate: round((n / r.publishMs) * 1000),
      jobsCreated: r.jobAt.size,
      tasksEnded: r.doneAt.size,
      tasksFailed: failed,
      studiesPerSecondToJob: toJob,
      studiesPerSecondToSucceeded: toDone,
      eventToJobMs: summarize(latencies(r, "job"), n),
      eventToSucceededMs: summarize(latencies(r, "done"), n),
      ...stages(r),
      operator: operatorWork(before, after, n),
      cpuCores: cores,
      cpuMsPerStudy: perStudy,
      apiserverProfile,
      operatorCpuSeconds: round(cpu, 2),
      operatorCpuMsPerStudy: round((cpu * 1000) / n, 2),
      writes: { ...writes, cluster },
      timedOut: r.timedOut,
    });
    rows.push({
      metric: `studies/s to Job created (${n} at once; sustained / overall)`,
      value: `${fmt(toJob.sustained)} / ${fmt(toJob.overall)}`,
      target: "≥ 100 /s",
      met: toJob.sustained >= 100 && r.jobAt.size === n,
    });
    rows.push({
      metric: "studies/s to task Succeeded (sustained / overall)",
      value: `${fmt(toDone.sustained)} / ${fmt(toDone.overall)}${failed ? `, ${failed} failed` : ""}`,
    });
    rows.push({
      metric: "operator CPU per study (burst)",
      value: `${fmt((cpu * 1000) / n, "ms", 2)} (${fmt(cpu / ((performance.now() - r.firstSent) / 1000), "cores", 2)} avg)`,
    });
    rows.push({ metric: "API writes per study in the burst (wire)", value: fmt(writes.wire.perStudy, "", 2) });
    rows.push({ metric: "machine CPU during the burst (cores)", value: coresLine(cores) });
    rows.push({ metric: "CPU per study in the burst (ms)", value: perStudyLine(perStudy) });
    const pr = profileRow(apiserverProfile);
    if (pr) rows.push(pr);
  } finally {
    const p = await ctx.stopOperator(op);
    if (p) profiles.push(p);
  }
  return { scenario: "2 throughput", rows, details, profiles };
}

export async function writesScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.opts.writesStudies;
  const rate = ctx.opts.writesRate;
  const ns = await ctx.namespace("writes");
  const op = await ctx.operator("writes", [ns]);
  const rows: Row[] = [];
  const details: Record<string, unknown> = { namespace: ns, studies: n, rate };
  const profiles: ScenarioResult["profiles"] = [];
  try {
    const wf = await workflow(ctx, ns, "bench-writes", singleStep("PELVIS"), { bodyPart: "PELVIS" });
    await quiesce(op, 1500);
    log(`writes: ${n} single-step studies at ${rate}/s`);
    const before = await op.metrics();
    const apiBefore = ctx.cluster.own ? await apiserverMetrics(ctx.kube.kc) : undefined;
    const r = await run(ctx, wf, n, { rate, waitTerminal: true });
    await quiesce(op);
    const after = await op.metrics();
    const w = operatorWrites(before, after, n);
    const cluster = apiBefore ? apiserverWrites(apiBefore, await apiserverMetrics(ctx.kube.kc), n) : undefined;
    const succeeded = [...r.phases.values()].filter((p) => p.phase === "Succeeded").length;
    Object.assign(details, { succeeded, ...w, cluster, timedOut: r.timedOut });
    const list = (b: Record<string, number>) =>
      Object.entries(b)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    rows.push({
      metric: "API writes per single-step study (operator metric)",
      value: `${fmt(w.operatorMetric.perStudy, "", 2)}: ${list(w.operatorMetric.breakdown)}`,
      target: "≤ 5",
      met: w.operatorMetric.perStudy <= 5 && succeeded === n,
    });
    if (succeeded !== n)
      rows.push({ metric: "  … WARNING: not every study finished", value: `${succeeded} of ${n} Succeeded` });
    rows.push({
      metric: "API writes per single-step study (on the wire)",
      value: `${fmt(w.wire.perStudy, "", 2)}: ${list(w.wire.breakdown)}`,
      target: "≤ 5",
      met: w.wire.perStudy <= 5 && succeeded === n,
    });
    if (cluster)
      rows.push({
        metric: "API writes per study, whole cluster (API server)",
        value: `${fmt(cluster.perStudy, "", 2)}: ${list(cluster.breakdown)}`,
      });
  } finally {
    const p = await ctx.stopOperator(op);
    if (p) profiles.push(p);
  }
  return { scenario: "3 API writes", rows, details, profiles };
}
