// A small SVG plot of one benchmark run, written by hand (no plotting dependency): latency
// percentiles by rate (log scale), throughput of radflow and its peers, and API writes per study.
// Pure: figures in, SVG text out. Missing figures (a scenario that did not run) are left out.
import type { Figures, SideBySide } from "./compare.ts";

export interface Point {
  x: number;
  y: number;
}
export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Point[];
}
export interface Bar {
  name: string;
  color: string;
  value: number;
}
export interface BarGroup {
  label: string;
  bars: Bar[];
  note?: string[]; // lines under the group's label
}
export type Chart =
  | {
      kind: "lines";
      title: string;
      xLabel: string;
      yLabel: string;
      series: Series[];
      width: number;
      /** a horizontal reference line (a target) */
      rule?: { y: number; label: string };
    }
  | { kind: "bars"; title: string; yLabel: string; groups: BarGroup[]; width: number };

export const COLORS = { radflow: "#1f6feb", baseline: "#6e7781", argo: "#e8590c" };

export function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Powers of ten spanning [min, max] (min > 0): the log axis' ticks. */
export function logTicks(min: number, max: number): number[] {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(max)));
  return Array.from({ length: hi - lo + 1 }, (_, i) => 10 ** (lo + i));
}

/** A round upper bound ≥ max (1, 2 or 5 × a power of ten) and its ticks from 0: the linear axis. */
export function linearTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const top = Math.ceil(max / step) * step;
  return Array.from({ length: Math.round(top / step) + 1 }, (_, i) => round6(i * step));
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export function label(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (v >= 10_000) return `${round6(v / 1000)}k`;
  if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/0$/, "");
}

const H = 300; // plot area height
const TOP = 70;
const LEFT = 56;

function text(x: number, y: number, s: string, attrs = ""): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;
}

function lines(c: Extract<Chart, { kind: "lines" }>, x0: number): string {
  const out: string[] = [];
  const w = c.width - LEFT - 16;
  const pts = c.series.flatMap((s) => s.points).filter((p) => p.y > 0 && Number.isFinite(p.y));
  const xs = [...new Set(c.series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  out.push(text(x0 + LEFT, TOP - 28, c.title, 'font-weight="bold"'));
  if (!pts.length || !xs.length) return [...out, text(x0 + LEFT, TOP + H / 2, "no data")].join("\n");
  const ys = [...pts.map((p) => p.y), ...(c.rule ? [c.rule.y] : [])];
  const ticks = logTicks(Math.min(...ys), Math.max(...ys));
  const lo = Math.log10(ticks[0] as number);
  const hi = Math.log10(ticks[ticks.length - 1] as number);
  const y = (v: number) => TOP + H - ((Math.log10(v) - lo) / (hi - lo)) * H;
  // rates sit evenly spaced (10, 50, 200 are far apart on any linear scale)
  const x = (v: number) => x0 + LEFT + (xs.length === 1 ? w / 2 : (xs.indexOf(v) / (xs.length - 1)) * (w - 40) + 20);
  for (const t of ticks) {
    out.push(`<line x1="${x0 + LEFT}" x2="${x0 + LEFT + w}" y1="${y(t)}" y2="${y(t)}" stroke="#d0d7de"/>`);
    out.push(text(x0 + LEFT - 6, y(t) + 4, label(t), 'text-anchor="end"'));
  }
  if (c.rule) {
    const ry = y(c.rule.y).toFixed(1);
    out.push(
      `<line x1="${x0 + LEFT}" x2="${x0 + LEFT + w}" y1="${ry}" y2="${ry}" stroke="#cf222e" stroke-dasharray="2 3"/>`,
    );
    out.push(text(x0 + LEFT + w, Number(ry) - 4, c.rule.label, 'text-anchor="end" font-size="10" fill="#cf222e"'));
  }
  for (const v of xs) out.push(text(x(v), TOP + H + 18, `${label(v)}/s`, 'text-anchor="middle"'));
  out.push(text(x0 + LEFT + w / 2, TOP + H + 38, c.xLabel, 'text-anchor="middle"'));
  out.push(
    text(x0 + 14, TOP + H / 2, c.yLabel, `text-anchor="middle" transform="rotate(-90 ${x0 + 14} ${TOP + H / 2})"`),
  );
  c.series.forEach((s, i) => {
    const p = s.points.filter((q) => q.y > 0 && Number.isFinite(q.y));
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : "";
    if (p.length > 1)
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${dash} points="${p.map((q) => `${x(q.x).toFixed(1)},${y(q.y).toFixed(1)}`).join(" ")}"/>`,
      );
    for (const q of p)
      out.push(`<circle cx="${x(q.x).toFixed(1)}" cy="${y(q.y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    const ly = TOP - 12 + Math.floor(i / 3) * 14;
    const lx = x0 + LEFT + (i % 3) * ((w + 16) / 3);
    out.push(
      `<line x1="${lx}" x2="${lx + 16}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${dash}/>`,
    );
    out.push(text(lx + 20, ly, s.name, 'font-size="11"'));
  });
  return out.join("\n");
}

function bars(c: Extract<Chart, { kind: "bars" }>, x0: number): string {
  const out: string[] = [];
  const w = c.width - LEFT - 16;
  out.push(text(x0 + LEFT, TOP - 28, c.title, 'font-weight="bold"'));
  const values = c.groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => Number.isFinite(v));
  const ticks = linearTicks(Math.max(0, ...values));
  const top = ticks[ticks.length - 1] as number;
  const y = (v: number) => TOP + H - (v / top) * H;
  for (const t of ticks) {
    out.push(`<line x1="${x0 + LEFT}" x2="${x0 + LEFT + w}" y1="${y(t)}" y2="${y(t)}" stroke="#d0d7de"/>`);
    out.push(text(x0 + LEFT - 6, y(t) + 4, label(t), 'text-anchor="end"'));
  }
  out.push(
    text(x0 + 14, TOP + H / 2, c.yLabel, `text-anchor="middle" transform="rotate(-90 ${x0 + 14} ${TOP + H / 2})"`),
  );
  const gw = w / Math.max(1, c.groups.length);
  c.groups.forEach((g, gi) => {
    const gx = x0 + LEFT + gi * gw;
    const bw = Math.min(36, (gw - 16) / Math.max(1, g.bars.length));
    const start = gx + (gw - bw * g.bars.length) / 2;
    g.bars.forEach((b, bi) => {
      const bx = start + bi * bw;
      if (!Number.isFinite(b.value)) {
        out.push(text(bx + bw / 2, TOP + H - 4, "–", 'text-anchor="middle" fill="#6e7781"'));
        return;
      }
      out.push(
        `<rect x="${(bx + 2).toFixed(1)}" y="${y(b.value).toFixed(1)}" width="${(bw - 4).toFixed(1)}" height="${(TOP + H - y(b.value)).toFixed(1)}" fill="${b.color}"><title>${esc(`${b.name}: ${label(b.value)}`)}</title></rect>`,
      );
      out.push(text(bx + bw / 2, y(b.value) - 4, label(b.value), 'text-anchor="middle" font-size="10"'));
    });
    out.push(text(gx + gw / 2, TOP + H + 18, g.label, 'text-anchor="middle"'));
    for (const [i, line] of (g.note ?? []).entries())
      out.push(text(gx + gw / 2, TOP + H + 32 + i * 13, line, 'text-anchor="middle" font-size="10" fill="#57606a"'));
  });
  // one legend per chart: the bar names of the first group, in order
  (c.groups[0]?.bars ?? []).forEach((b, i) => {
    const lx = x0 + LEFT + i * 86;
    out.push(`<rect x="${lx}" y="${TOP - 22}" width="10" height="10" fill="${b.color}"/>`);
    out.push(text(lx + 14, TOP - 13, b.name, 'font-size="11"'));
  });
  return out.join("\n");
}

/** One SVG document: a title, a subtitle and the charts side by side. */
export function svg(title: string, subtitle: string, charts: Chart[]): string {
  const width = charts.reduce((a, c) => a + c.width, 0);
  const height = TOP + H + 72;
  const parts: string[] = [];
  let x0 = 0;
  for (const c of charts) {
    parts.push(c.kind === "lines" ? lines(c, x0) : bars(c, x0));
    x0 += c.width;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 30}" viewBox="0 0 ${width} ${height + 30}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
${text(LEFT, 18, title, 'font-size="15" font-weight="bold"')}
${text(LEFT, 34, subtitle, 'font-size="11" fill="#57606a"')}
<g transform="translate(0,20)">
${parts.join("\n")}
</g>
</svg>
`;
}

const ratio = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : "n/a");

/** The run's plot: latency percentiles by rate, throughput (with ratios), writes per study. */
export function plotSideBySide(s: SideBySide, title: string, subtitle: string): string {
  const f: Figures = s.figures;
  const pct = (name: string, color: string, dashed: boolean, l: Figures["radflow"]["latency"]) =>
    (["p50", "p95", "p99"] as const).map((p, i) => ({
      name: `${name} ${p}`,
      color: shade(color, i),
      dashed,
      points: l.map((q) => ({ x: q.rate, y: q[p] })),
    }));
  return svg(title, subtitle, [
    {
      kind: "lines",
      title: "Latency to Job created (ms, log scale)",
      xLabel: "radflow: study event → Job · baseline: create → Job",
      yLabel: "milliseconds",
      series: [
        ...pct("radflow", COLORS.radflow, false, f.radflow.latency),
        ...pct("baseline", COLORS.baseline, true, f.baseline.latency),
      ],
      rule: { y: 100, label: "goal: radflow p99 < 100 ms at 50/s" },
      width: 460,
    },
    {
      kind: "bars",
      title: "Throughput (per second, sustained)",
      yLabel: "studies / Jobs / workflows per s",
      groups: [
        {
          label: "to Job (pod) created",
          note: [
            `radflow ÷ baseline ${ratio(s.ratios.radflowOverBaselineToJob)}`,
            `radflow ÷ Argo ${ratio(s.ratios.radflowOverArgoToCreated)}`,
          ],
          bars: [
            { name: "radflow", color: COLORS.radflow, value: f.radflow.toJob },
            { name: "baseline", color: COLORS.baseline, value: f.baseline.toJob },
            { name: "Argo", color: COLORS.argo, value: f.argo.toPod },
          ],
        },
        {
          label: "to Succeeded",
          note: [
            `radflow ÷ baseline ${ratio(s.ratios.radflowOverBaselineToSucceeded)}`,
            `radflow ÷ Argo ${ratio(s.ratios.radflowOverArgoToSucceeded)}`,
          ],
          bars: [
            { name: "radflow", color: COLORS.radflow, value: f.radflow.toSucceeded },
            { name: "baseline", color: COLORS.baseline, value: f.baseline.toSucceeded },
            { name: "Argo", color: COLORS.argo, value: f.argo.toSucceeded },
          ],
        },
      ],
      width: 420,
    },
    {
      kind: "bars",
      title: "API writes per study",
      yLabel: "writes",
      groups: [
        {
          label: "whole cluster",
          bars: [
            { name: "radflow", color: COLORS.radflow, value: f.radflow.writesCluster },
            { name: "baseline", color: COLORS.baseline, value: f.baseline.writesCluster },
            { name: "Argo", color: COLORS.argo, value: f.argo.writesCluster },
          ],
        },
        {
          label: "controller's own",
          bars: [
            { name: "radflow", color: COLORS.radflow, value: f.radflow.writesOwn },
            { name: "baseline", color: COLORS.baseline, value: Number.NaN },
            { name: "Argo", color: COLORS.argo, value: f.argo.writesOwn },
          ],
        },
      ],
      width: 340,
    },
  ]);
}

/** A lighter shade of a #rrggbb colour per percentile (p50 lightest … p99 the colour itself). */
export function shade(hex: string, i: number): string {
  const mix = [0.55, 0.3, 0][i] ?? 0;
  const c = [1, 3, 5].map((k) => Number.parseInt(hex.slice(k, k + 2), 16));
  return `#${c
    .map((v) =>
      Math.round(v + (255 - v) * mix)
        .toString(16)
        .padStart(2, "0"),
    )
    .join("")}`;
}
