// radflow beside its peers: the figures picked out of a run's results, their ratios, and a
// verdict only where both sides were measured.
import { describe, expect, it } from "vitest";
import { sideBySide } from "../../../bench/lib/compare.ts";
import { results } from "./sample.ts";

describe("sideBySide", () => {
  it("divides radflow's sustained rates by the baseline's and Argo's, and compares p99 at 50/s", () => {
    const s = sideBySide(results());
    expect(s.figures.radflow.latency.map((p) => p.rate)).toEqual([10, 50, 200]);
    expect(s.ratios.radflowOverBaselineToJob).toBeCloseTo(22.6 / 41.8, 6);
    expect(s.ratios.radflowOverBaselineToSucceeded).toBeCloseTo(18 / 30, 6);
    expect(s.ratios.p99At50RadflowOverBaseline).toBeCloseTo(7500 / 60, 6);
    expect(s.ratios.radflowOverArgoToCreated).toBeCloseTo(2.26, 6);
    expect(s.ratios.radflowOverArgoToSucceeded).toBeCloseTo(3, 6);
    expect(s.ratios.argoWritesOverRadflowCluster).toBeCloseTo(21 / 17.4, 6);
    expect(s.ratios.argoWritesOverRadflowOwn).toBeCloseTo(8 / 6.5, 6);
  });

  it("prints every figure with its ratio and the goal, met or missed", () => {
    const rows = sideBySide(results()).rows;
    const by = (m: RegExp) => rows.find((r) => m.test(r.metric));
    expect(by(/baseline, to Job/)).toMatchObject({ value: "22.6 ÷ 41.8 = 0.54 ×", target: "≥ 0.8", met: false });
    expect(by(/p99 @50/)).toMatchObject({ value: "7500.0 ms vs 60.0 ms = 125.00 ×", met: false });
    expect(by(/Argo, to Succeeded/)).toMatchObject({ value: "18.0 ÷ 6.0 = 3.00 ×", met: true });
    expect(by(/whole cluster/)).toMatchObject({ met: true });
    expect(by(/controller's own/)).toMatchObject({ value: "8.00 vs 6.50 = 1.23 ×", met: true });
  });

  it("gives no verdict where a peer did not run or failed", () => {
    const rs = results().map((r) => (r.scenario === "argo" ? { ...r, error: "no pods" } : r));
    const s = sideBySide(rs.filter((r) => r.scenario !== "baseline"));
    expect(Number.isNaN(s.ratios.radflowOverArgoToCreated)).toBe(true);
    expect(Number.isNaN(s.ratios.radflowOverBaselineToJob)).toBe(true);
    for (const r of s.rows.filter((x) => /Argo|baseline/.test(x.metric))) expect(r.met).toBeUndefined();
  });
});
