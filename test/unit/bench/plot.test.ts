// The benchmark's hand-written SVG plot: axes, scales, escaping, missing figures, and a document
// xmllint accepts as well-formed XML.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sideBySide } from "../../../bench/lib/compare.ts";
import { esc, label, linearTicks, logTicks, plotSideBySide, shade, svg } from "../../../bench/lib/plot.ts";
import { results } from "./sample.ts";

const tmp = mkdtempSync(path.join(os.tmpdir(), "radflow-plot-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** xmllint --noout: exits non-zero, naming the problem, on a document that is not well-formed. */
function wellFormed(doc: string): void {
  const f = path.join(tmp, `${Math.random().toString(36).slice(2)}.svg`);
  writeFileSync(f, doc);
  execFileSync("xmllint", ["--noout", f], { stdio: ["ignore", "pipe", "pipe"] });
}

describe("axes", () => {
  it("a log axis spans whole decades around its data", () => {
    expect(logTicks(12, 7500)).toEqual([10, 100, 1000, 10_000]);
    expect(logTicks(100, 100)).toEqual([100, 1000]);
    expect(logTicks(0.4, 3)).toEqual([0.1, 1, 10]);
  });

  it("a linear axis ends on a round number at or above the largest value", () => {
    expect(linearTicks(41.8)).toEqual([0, 10, 20, 30, 40, 50]);
    expect(linearTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(linearTicks(0)).toEqual([0, 1]);
    expect(linearTicks(Number.NaN)).toEqual([0, 1]);
  });

  it("labels are short", () => {
    expect(label(16_800)).toBe("16.8k");
    expect(label(571)).toBe("571");
    expect(label(22.6)).toBe("22.6");
    expect(label(0.48)).toBe("0.48");
    expect(label(Number.NaN)).toBe("n/a");
  });

  it("percentile shades lighten toward p50 and keep the colour for p99", () => {
    expect(shade("#1f6feb", 2)).toBe("#1f6feb");
    expect(shade("#000000", 0)).toBe("#8c8c8c");
  });
});

describe("svg", () => {
  it("escapes text", () => {
    expect(esc(`a<b & "c">`)).toBe("a&lt;b &amp; &quot;c&quot;&gt;");
    const doc = svg("<radflow> & co", "", [
      { kind: "bars", title: "t", yLabel: "y", width: 200, groups: [{ label: "a<b", bars: [] }] },
    ]);
    expect(doc).toContain("&lt;radflow&gt; &amp; co");
    wellFormed(doc);
  });

  it("draws one point per percentile and rate on the log scale, and a bar per figure", () => {
    const s = sideBySide(results());
    const doc = plotSideBySide(s, "radflow beside plain Jobs and Argo Workflows", "2 cores");
    wellFormed(doc);
    // radflow and baseline, three percentiles each, at three rates
    expect(doc.match(/<circle /g)).toHaveLength(18);
    // throughput: 2 groups × 3; writes: 3 + 2 (no "own" writes for the baseline, which has no controller)
    expect(doc.match(/<\/title><\/rect>/g)).toHaveLength(11);
    expect(doc).toContain("radflow ÷ baseline 0.54×");
    expect(doc).toContain("radflow ÷ Argo 2.26×");
    expect(doc).toContain("<title>Argo: 10</title>");
  });

  it("leaves out what a run did not measure", () => {
    const only = results().filter((r) => r.scenario !== "argo" && r.scenario !== "baseline");
    const doc = plotSideBySide(sideBySide(only), "t", "s");
    wellFormed(doc);
    expect(doc.match(/<circle /g)).toHaveLength(9);
    expect(doc).not.toContain("NaN");
    expect(doc).toContain("radflow ÷ Argo n/a");
  });

  it("says so when there is no latency at all", () => {
    const doc = plotSideBySide(sideBySide([]), "t", "s");
    wellFormed(doc);
    expect(doc).toContain("no data");
    expect(doc).not.toContain("NaN");
  });
});
