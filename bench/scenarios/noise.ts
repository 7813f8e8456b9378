// How noisy the machine is: the same short measurements repeated. A fixed CPU-bound loop in the
// benchmark process (the machine alone), and a short event → Job run at 50 events/s (the whole
// system: operator, API server, etcd, NATS, and whatever else runs on the machine).
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Context } from "../lib/context.ts";
import { log } from "../lib/context.ts";
import { sleep } from "../lib/operator.ts";
import { fmt, type Row, type ScenarioResult } from "../lib/result.ts";
import { round, spread, summarize } from "../lib/stats.ts";
import { latencies, run, singleStep, workflow } from "./common.ts";

function cpuLoopMs(): number {
  const buf = Buffer.alloc(1 << 20, 7);
  const t0 = performance.now();
  for (let i = 0; i < 300; i++) createHash("sha256").update(buf).digest();
  return performance.now() - t0;
}

export async function noiseScenario(ctx: Context): Promise<ScenarioResult> {
  const repeats = ctx.opts.noiseRepeats;
  const n = ctx.opts.noiseStudies;
  const rows: Row[] = [];
  const loop = Array.from({ length: repeats }, cpuLoopMs);
  const ns = await ctx.namespace("noise");
  const op = await ctx.operator("noise", [ns]);
  const p50: number[] = [];
  const p99: number[] = [];
  const cpuPerStudy: number[] = [];
  const profiles: ScenarioResult["profiles"] = [];
  try {
    const wf = await workflow(ctx, ns, "bench-noise", singleStep("SPINE"), { bodyPart: "SPINE" });
    for (let i = 0; i < repeats; i++) {
      log(`noise: repeat ${i + 1}/${repeats}: ${n} studies at 50 events/s`);
      const c0 = op.cpuSeconds();
      const r = await run(ctx, wf, n, { rate: 50, waitTerminal: true });
      const s = summarize(latencies(r, "job"), n);
      p50.push(s.p50);
      p99.push(s.p99);
      cpuPerStudy.push(((op.cpuSeconds() - c0) * 1000) / n);
      await sleep(2000);
    }
  } finally {
    const p = await ctx.stopOperator(op);
    if (p) profiles.push(p);
  }
  const show = (xs: number[], unit: string) => {
    const s = spread(xs);
    return `${xs.map((x) => fmt(x, "", 1)).join(", ")} ${unit} (range ${fmt(s.relRangePct, "%", 0)} of mean)`;
  };
  rows.push({ metric: `CPU loop (sha256 300 MiB), ${repeats}×`, value: show(loop, "ms") });
  rows.push({ metric: `event→Job p50, ${n} studies @50/s, ${repeats}×`, value: show(p50, "ms") });
  rows.push({ metric: `event→Job p99, ${n} studies @50/s, ${repeats}×`, value: show(p99, "ms") });
  rows.push({ metric: `operator CPU per study @50/s, ${repeats}×`, value: show(cpuPerStudy, "ms") });
  return {
    scenario: "noise",
    rows,
    details: {
      namespace: ns,
      cpuLoopMs: loop.map((x) => round(x)),
      cpuLoopSpread: spread(loop),
      p50Ms: p50,
      p50Spread: spread(p50),
      p99Ms: p99,
      p99Spread: spread(p99),
      operatorCpuMsPerStudy: cpuPerStudy.map((x) => round(x, 2)),
      cpuPerStudySpread: spread(cpuPerStudy),
    },
    profiles,
  };
}
