// Scenario 1: event → Job created latency at fixed open-loop rates. Each event's latency is the
// arrival of its Job's ADDED watch event at the benchmark minus the moment it published the
// event (one clock, this process); the Job is found by its task label, which is the task's
// deterministic name taskName(workflow, workflow uid, event id).
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { coresLine, coresUsed } from "../lib/cpu.ts";
import { fmt, type Row, type ScenarioResult } from "../lib/result.ts";
import { round, summarize } from "../lib/stats.ts";
import { latencies, operatorWork, run, singleStep, stages, workflow } from "./common.ts";

export async function latencyScenario(ctx: Context): Promise<ScenarioResult> {
  const ns = await ctx.namespace("latency");
  const op = await ctx.operator("latency", [ns]);
  const rows: Row[] = [];
  const perRate: Record<string, unknown>[] = [];
  const profiles: ScenarioResult["profiles"] = [];
  try {
    const wf = await workflow(ctx, ns, "bench-latency", singleStep("CHEST"), { bodyPart: "CHEST" });
    for (const [i, rate] of ctx.opts.rates.entries()) {
      const seconds = ctx.opts.latencySeconds[i] as number;
      const n = Math.round(rate * seconds);
      log(`latency: ${rate} events/s for ${seconds} s (${n} studies)`);
      const cpu0 = op.cpuSeconds();
      const before = await op.metrics();
      const c0 = ctx.cpu(op);
      const r = await run(ctx, wf, n, { rate, waitTerminal: true });
      const cores = coresUsed(c0, ctx.cpu(op));
      const cpu = op.cpuSeconds() - cpu0;
      const work = operatorWork(before, await op.metrics(), n);
      const split = stages(r);
      const job = summarize(latencies(r, "job"), n);
      const done = summarize(latencies(r, "done"), n);
      perRate.push({
        rate,
        seconds,
        studies: n,
        eventToJobMs: job,
        eventToSucceededMs: done,
        ...split,
        operator: work,
        cpuCores: cores,
        publisherMaxLagMs: round(r.publishMaxLagMs ?? 0),
        operatorCpuSeconds: round(cpu, 2),
        operatorCpuMsPerStudy: round((cpu * 1000) / n, 2),
        timedOut: r.timedOut,
      });
      const target = rate === 50 ? "p99 < 100 ms" : undefined;
      rows.push({
        metric: `event→Job @${rate}/s p50 / p95 / p99 (max)`,
        value: `${fmt(job.p50)} / ${fmt(job.p95)} / ${fmt(job.p99)} ms (${fmt(job.max)})${job.missing ? `, ${job.missing} missing` : ""}`,
        target,
        met: target ? job.p99 < 100 && job.missing === 0 : undefined,
      });
      rows.push({
        metric: "  … of which event→task / task→Job p50 (p99)",
        value: `${fmt(split.eventToTaskMs.p50)} (${fmt(split.eventToTaskMs.p99)}) / ${fmt(split.taskToJobMs.p50)} (${fmt(split.taskToJobMs.p99)}) ms`,
      });
      rows.push({
        metric: "  … event→Succeeded p50 / p99; operator CPU; machine cores",
        value: `${fmt(done.p50)} / ${fmt(done.p99)} ms; ${fmt((cpu * 1000) / n, "ms/study", 1)}; machine ${coresLine(cores)}`,
      });
      await new Promise((res) => setTimeout(res, 2000));
    }
  } finally {
    const profile = await ctx.stopOperator(op);
    if (profile) profiles.push(profile);
  }
  return { scenario: "1 latency", rows, details: { namespace: ns, perRate }, profiles };
}
