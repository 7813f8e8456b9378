// Reading the operator's /metrics: the text exposition format, parsed into samples, and deltas
// between two scrapes.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export type Scrape = Sample[];

export function parseMetrics(text: string): Scrape {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, "$1");
    }
    out.push({ name: m[1] as string, labels, value: Number(m[4]) });
  }
  return out;
}

export async function scrape(port: number): Promise<Scrape> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!r.ok) throw new Error(`/metrics on port ${port}: HTTP ${r.status}`);
  return parseMetrics(await r.text());
}

/** Sum of a metric's samples whose labels include `match`. */
export function sum(s: Scrape, name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const x of s) {
    if (x.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => x.labels[k] === v)) total += x.value;
  }
  return total;
}

/** Per label combination (of `by`), after − before, for a counter; zero deltas left out. */
export function deltaBy(before: Scrape, after: Scrape, name: string, by: string[]): Map<string, number> {
  const group = (s: Scrape) => {
    const m = new Map<string, number>();
    for (const x of s) {
      if (x.name !== name) continue;
      const k = by.map((l) => x.labels[l] ?? "").join(" ");
      m.set(k, (m.get(k) ?? 0) + x.value);
    }
    return m;
  };
  const a = group(before);
  const b = group(after);
  const out = new Map<string, number>();
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d !== 0) out.set(k, d);
  }
  return out;
}
