// Scenario results shaped as bench/scenarios/* write them, with round numbers.
import type { ScenarioResult } from "../../../bench/lib/result.ts";

const pct = (p50: number, p95: number, p99: number) => ({ n: 100, missing: 0, p50, p95, p99, max: p99, mean: p50 });

export function results(): ScenarioResult[] {
  const r = (scenario: string, details: Record<string, unknown>): ScenarioResult => ({
    scenario,
    rows: [],
    details,
    profiles: [],
  });
  return [
    r("noise", {}),
    r("1 latency", {
      perRate: [
        { rate: 10, eventToJobMs: pct(60, 200, 571) },
        { rate: 50, eventToJobMs: pct(900, 5000, 7500) },
        { rate: 200, eventToJobMs: pct(4000, 15_000, 16_800) },
      ],
    }),
    r("2 throughput", {
      studiesPerSecondToJob: { overall: 20, sustained: 22.6 },
      studiesPerSecondToSucceeded: { overall: 15, sustained: 18 },
      writes: { wire: { perStudy: 6.5 }, cluster: { perStudy: 17.4 } },
    }),
    r("baseline", {
      jobsPerSecondCreated: { overall: 40, sustained: 41.8 },
      jobsPerSecondComplete: { overall: 25, sustained: 30 },
      writes: { cluster: { perStudy: 9 } },
      perRate: [
        { rate: 10, latencyMs: pct(12, 20, 30) },
        { rate: 50, latencyMs: pct(15, 40, 60) },
        { rate: 200, latencyMs: pct(50, 300, 800) },
      ],
    }),
    r("argo", {
      workflowsPerSecondToPod: { overall: 9, sustained: 10 },
      workflowsPerSecondToSucceeded: { overall: 5, sustained: 6 },
      writes: { controller: { perStudy: 8 }, cluster: { perStudy: 21 } },
    }),
  ];
}
