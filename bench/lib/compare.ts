// radflow beside its two peers, from one run's scenario results: the baseline (plain Jobs of
// radflow's shape through the same API server: the machine's limit) and Argo Workflows (the same
// single-step workload as Workflows). Pure: results in, figures with their ratios and the issue's
// goals out (goals are printed, never asserted).
import type { Row, ScenarioResult } from "./result.ts";
import { fmt } from "./result.ts";

interface Rate {
  sustained: number;
  overall: number;
}
interface Pcts {
  p50: number;
  p95: number;
  p99: number;
}
export interface LatencyPoint extends Pcts {
  rate: number;
}

/** Every number the side-by-side needs, NaN / empty where a scenario did not run or failed. */
export interface Figures {
  radflow: {
    toJob: number;
    toSucceeded: number;
    latency: LatencyPoint[]; // event → Job created, by rate
    writesOwn: number; // per study, on the wire (every request the operator sent)
    writesCluster: number; // per study, every client (API server)
  };
  baseline: { toJob: number; toSucceeded: number; latency: LatencyPoint[]; writesCluster: number };
  argo: { toPod: number; toSucceeded: number; writesOwn: number; writesCluster: number };
}

export interface SideBySide {
  figures: Figures;
  ratios: {
    radflowOverBaselineToJob: number;
    radflowOverBaselineToSucceeded: number;
    p99At50RadflowOverBaseline: number;
    radflowOverArgoToCreated: number;
    radflowOverArgoToSucceeded: number;
    argoWritesOverRadflowCluster: number;
    argoWritesOverRadflowOwn: number;
  };
  rows: Row[];
}

const num = (x: unknown): number => (typeof x === "number" ? x : Number.NaN);
const rate = (x: unknown): number => num((x as Rate | undefined)?.sustained);
const details = (results: ScenarioResult[], scenario: string): Record<string, unknown> | undefined => {
  const r = results.find((x) => x.scenario === scenario && !x.error);
  return r?.details;
};
const point = (rateValue: unknown, s: unknown): LatencyPoint => {
  const p = (s ?? {}) as Partial<Pcts>;
  return { rate: num(rateValue), p50: num(p.p50), p95: num(p.p95), p99: num(p.p99) };
};
const writes = (w: unknown, ...keys: string[]): number => {
  let x: unknown = w;
  for (const k of keys) x = (x as Record<string, unknown> | undefined)?.[k];
  return num((x as { perStudy?: number } | undefined)?.perStudy);
};

/** The scenario names the results carry (bench/scenarios/*). */
export const NAMES = { latency: "1 latency", throughput: "2 throughput", baseline: "baseline", argo: "argo" };

export function figures(results: ScenarioResult[]): Figures {
  const lat = details(results, NAMES.latency);
  const tp = details(results, NAMES.throughput);
  const bl = details(results, NAMES.baseline);
  const ar = details(results, NAMES.argo);
  const perRate = (d: Record<string, unknown> | undefined, key: string) =>
    ((d?.perRate as Record<string, unknown>[] | undefined) ?? []).map((x) => point(x.rate, x[key]));
  return {
    radflow: {
      toJob: rate(tp?.studiesPerSecondToJob),
      toSucceeded: rate(tp?.studiesPerSecondToSucceeded),
      latency: perRate(lat, "eventToJobMs"),
      writesOwn: writes(tp?.writes, "wire"),
      writesCluster: writes(tp?.writes, "cluster"),
    },
    baseline: {
      toJob: rate(bl?.jobsPerSecondCreated),
      toSucceeded: rate(bl?.jobsPerSecondComplete),
      latency: perRate(bl, "latencyMs"),
      writesCluster: writes(bl?.writes, "cluster"),
    },
    argo: {
      toPod: rate(ar?.workflowsPerSecondToPod),
      toSucceeded: rate(ar?.workflowsPerSecondToSucceeded),
      writesOwn: writes(ar?.writes, "controller"),
      writesCluster: writes(ar?.writes, "cluster"),
    },
  };
}

const p99At = (l: LatencyPoint[], r: number) => l.find((x) => x.rate === r)?.p99 ?? Number.NaN;
const ok = (x: number) => Number.isFinite(x);

export function sideBySide(results: ScenarioResult[]): SideBySide {
  const f = figures(results);
  const rf = f.radflow;
  const rfP99 = p99At(rf.latency, 50);
  const blP99 = p99At(f.baseline.latency, 50);
  const ratios = {
    radflowOverBaselineToJob: rf.toJob / f.baseline.toJob,
    radflowOverBaselineToSucceeded: rf.toSucceeded / f.baseline.toSucceeded,
    p99At50RadflowOverBaseline: rfP99 / blP99,
    radflowOverArgoToCreated: rf.toJob / f.argo.toPod,
    radflowOverArgoToSucceeded: rf.toSucceeded / f.argo.toSucceeded,
    argoWritesOverRadflowCluster: f.argo.writesCluster / rf.writesCluster,
    argoWritesOverRadflowOwn: f.argo.writesOwn / rf.writesOwn,
  };
  const x = (v: number) => fmt(v, "×", 2);
  const rows: Row[] = [];
  // met stays undefined when a figure is missing (a peer did not run): no verdict either way
  const row = (metric: string, value: string, target: string, met: boolean | undefined) =>
    rows.push({ metric, value, target, met });
  const r = ratios;
  row(
    "radflow ÷ baseline, to Job created (sustained /s)",
    `${fmt(rf.toJob)} ÷ ${fmt(f.baseline.toJob)} = ${x(r.radflowOverBaselineToJob)}`,
    "≥ 0.8",
    ok(r.radflowOverBaselineToJob) ? r.radflowOverBaselineToJob >= 0.8 : undefined,
  );
  row(
    "radflow ÷ baseline, to Succeeded / Complete (sustained /s)",
    `${fmt(rf.toSucceeded)} ÷ ${fmt(f.baseline.toSucceeded)} = ${x(r.radflowOverBaselineToSucceeded)}`,
    "≥ 0.8",
    ok(r.radflowOverBaselineToSucceeded) ? r.radflowOverBaselineToSucceeded >= 0.8 : undefined,
  );
  row(
    "p99 @50/s: radflow event→Job vs baseline create→Job",
    `${fmt(rfP99)} ms vs ${fmt(blP99)} ms = ${x(r.p99At50RadflowOverBaseline)}`,
    "≤ 2×, and < 100 ms",
    ok(r.p99At50RadflowOverBaseline) ? r.p99At50RadflowOverBaseline <= 2 && rfP99 < 100 : undefined,
  );
  row(
    "radflow ÷ Argo, to Job / pod created (sustained /s)",
    `${fmt(rf.toJob)} ÷ ${fmt(f.argo.toPod)} = ${x(r.radflowOverArgoToCreated)}`,
    "≥ 3",
    ok(r.radflowOverArgoToCreated) ? r.radflowOverArgoToCreated >= 3 : undefined,
  );
  row(
    "radflow ÷ Argo, to Succeeded (sustained /s)",
    `${fmt(rf.toSucceeded)} ÷ ${fmt(f.argo.toSucceeded)} = ${x(r.radflowOverArgoToSucceeded)}`,
    "≥ 3",
    ok(r.radflowOverArgoToSucceeded) ? r.radflowOverArgoToSucceeded >= 3 : undefined,
  );
  row(
    "API writes per study, whole cluster: Argo vs radflow (baseline)",
    `${fmt(f.argo.writesCluster, "", 2)} vs ${fmt(rf.writesCluster, "", 2)} (${fmt(f.baseline.writesCluster, "", 2)}) = ${x(r.argoWritesOverRadflowCluster)}`,
    "radflow fewer",
    ok(r.argoWritesOverRadflowCluster) ? r.argoWritesOverRadflowCluster > 1 : undefined,
  );
  row(
    "API writes per study, controller's own: Argo vs radflow",
    `${fmt(f.argo.writesOwn, "", 2)} vs ${fmt(rf.writesOwn, "", 2)} = ${x(r.argoWritesOverRadflowOwn)}`,
    "radflow fewer",
    ok(r.argoWritesOverRadflowOwn) ? r.argoWritesOverRadflowOwn > 1 : undefined,
  );
  return { figures: f, ratios, rows };
}
