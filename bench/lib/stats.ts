// Percentiles and rates over measured times (milliseconds).

/** Nearest-rank percentile of an ascending-sorted list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export interface LatencySummary {
  n: number;
  missing: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(values: readonly number[], expected = values.length): LatencySummary {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    n: s.length,
    missing: expected - s.length,
    p50: round(percentile(s, 50)),
    p95: round(percentile(s, 95)),
    p99: round(percentile(s, 99)),
    max: round(s[s.length - 1] ?? Number.NaN),
    mean: round(mean),
  };
}

/**
 * Completions per second: over the whole run (first send → last completion) and sustained (the
 * middle 80 % of completions, which leaves out the ramp-up and the tail).
 */
export function rates(startMs: number, doneAt: readonly number[]): { overall: number; sustained: number } {
  const s = [...doneAt].sort((a, b) => a - b);
  if (s.length < 2) return { overall: Number.NaN, sustained: Number.NaN };
  const last = s[s.length - 1] as number;
  const lo = Math.floor(s.length * 0.1);
  const hi = Math.ceil(s.length * 0.9) - 1;
  const span = (s[hi] as number) - (s[lo] as number);
  return {
    overall: round((s.length / (last - startMs)) * 1000),
    sustained: span > 0 ? round(((hi - lo) / span) * 1000) : Number.NaN,
  };
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function spread(xs: readonly number[]): { min: number; max: number; mean: number; relRangePct: number } {
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { min: round(min), max: round(max), mean: round(mean), relRangePct: round(((max - min) / mean) * 100) };
}
