// The API server's own CPU profile during a burst (its /debug/pprof/profile, on by default), so
// that a throughput figure limited by the API server comes with where that server spent its CPU:
// the share of its samples under each area of work (a sample counts in every area its stack
// passes through) and the functions with the most self time. Read with `go tool pprof`, which
// the machine has (Go builds the cluster's tools); without it only the file is kept.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import type { KubeConfig } from "@kubernetes/client-node";
import { apiserverGet } from "./kube.ts";
import type { Row } from "./result.ts";
import { round } from "./stats.ts";

/** Areas of an API server's work, by the frames a sample's stack holds (first match wins per area). */
export const AREAS: readonly { area: string; frame: RegExp }[] = [
  // the kinds of request (the work of a write runs in finishRequest's goroutine, below its handler)
  { area: "creates", frame: /createHandler/ },
  { area: "updates and patches", frame: /handlers\.UpdateResource|\(\*patcher\)\.patchResource/ },
  { area: "gets and lists", frame: /handlers\.(ListResource|GetResource|getResourceHandler)/ },
  {
    area: "watches (etcd → cache → encode → send)",
    frame:
      /WatchServer\)\.HandleHTTP|watchEncoder|watchEmbeddedEncoder|\(\*Cacher\)\.dispatchEvent|cacheWatcher|\(\*watchChan\)/,
  },
  // what a request is of and what it costs
  { area: "custom resources (any request)", frame: /crdHandler/ },
  { area: "managed fields (field manager)", frame: /managedfields|structured-merge-diff/ },
  {
    area: "CRD schema: decode, coerce, validate",
    frame:
      /apiextensions-apiserver\/pkg\/apiserver\/validation|kube-openapi\/pkg\/validation|schemaCoercingDecoder|unstructuredSchemaCoercer/,
  },
  { area: "CEL rules", frame: /apiserver\/schema\/cel|apiserver\/pkg\/cel|google\/cel-go/ },
  { area: "admission", frame: /apiserver\/pkg\/admission/ },
  {
    area: "JSON decode",
    frame:
      /json\.(Unmarshal|\(\*decodeState\))|sigs\.k8s\.io\/json|json-iterator|UnstructuredJSONScheme\)\.(Decode|decode)/,
  },
  {
    area: "JSON/protobuf encode",
    frame: /json\.(Marshal|\(\*encodeState\)|\(\*Encoder\))|protobuf\.\(\*Serializer\)\.(Encode|doEncode)/,
  },
  { area: "etcd client", frame: /go\.etcd\.io\/etcd\/client/ },
  { area: "TLS", frame: /^crypto\/tls\./ },
  { area: "garbage collection", frame: /^runtime\.(gcBgMarkWorker|gcDrain|markroot|scanobject|bgsweep)/ },
];

export interface PprofFrame {
  frame: string;
  pct: number;
}

export interface ApiserverProfile {
  file: string;
  seconds: number;
  /** CPU seconds the profile sampled (≈ cores × seconds). */
  cpuSeconds: number;
  areas: PprofFrame[];
  topSelf: PprofFrame[];
}

/** Starts a CPU profile of `seconds`; resolves with its summary (undefined when it cannot be had). */
export async function profileApiserver(
  kc: KubeConfig,
  seconds: number,
  file: string,
): Promise<ApiserverProfile | undefined> {
  try {
    const body = await apiserverGet(kc, `/debug/pprof/profile?seconds=${Math.max(1, Math.round(seconds))}`);
    writeFileSync(file, body);
  } catch (e) {
    process.stderr.write(`bench: no API server profile: ${(e as Error).message}\n`);
    return undefined;
  }
  try {
    const traces = execFileSync("go", ["tool", "pprof", "-traces", file], { encoding: "utf8", maxBuffer: 1 << 28 });
    return { file, seconds, ...summarizeTraces(traces) };
  } catch (e) {
    process.stderr.write(
      `bench: cannot read the API server profile ${file} (go tool pprof): ${(e as Error).message}\n`,
    );
    return { file, seconds, cpuSeconds: Number.NaN, areas: [], topSelf: [] };
  }
}

/** A value of pprof's trace output ("10ms", "1.20s", "500us") in seconds. */
function seconds(v: string): number {
  const m = /^([\d.]+)(ns|us|µs|ms|s|m)$/.exec(v);
  if (!m) return 0;
  const x = Number(m[1]);
  const unit = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60 }[m[2] as string] as number;
  return x * unit;
}

/**
 * `go tool pprof -traces` output → the shares of the areas and the top self frames. Each sample
 * block is "-----------+-------" then "  <value>  <leaf frame>" and one frame a line up the stack.
 */
export function summarizeTraces(text: string, top = 15): Omit<ApiserverProfile, "file" | "seconds"> {
  let total = 0;
  const area = new Map<string, number>();
  const self = new Map<string, number>();
  for (const block of text.split(/^-+\+-+$/m).slice(1)) {
    const lines = block.split("\n").filter((l) => l.trim());
    const first = /^\s*(\S+)\s+(\S.*)$/.exec(lines[0] ?? "");
    if (!first) continue;
    const v = seconds(first[1] as string);
    const frames = [first[2] as string, ...lines.slice(1).map((l) => l.trim())].map((f) =>
      f.replace(/\s+\(inline\)$/, ""),
    );
    total += v;
    self.set(frames[0] as string, (self.get(frames[0] as string) ?? 0) + v);
    for (const a of AREAS) if (frames.some((f) => a.frame.test(f))) area.set(a.area, (area.get(a.area) ?? 0) + v);
  }
  const pct = (x: number) => (total > 0 ? round((x / total) * 100, 1) : 0);
  return {
    cpuSeconds: round(total, 2),
    areas: AREAS.map((a) => ({ frame: a.area, pct: pct(area.get(a.area) ?? 0) })),
    topSelf: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([frame, v]) => ({ frame, pct: pct(v) })),
  };
}

/** One result row: the areas that took at least 3 % of the API server's sampled CPU, largest first. */
export function profileRow(p: ApiserverProfile | undefined): Row | undefined {
  if (!p?.areas.length) return undefined;
  const parts = p.areas
    .filter((a) => a.pct >= 3)
    .sort((a, b) => b.pct - a.pct)
    .map((a) => `${a.frame} ${a.pct} %`);
  return {
    metric: `  … API server CPU by area (pprof, first ${p.seconds} s, ${p.cpuSeconds} CPU-s sampled)`,
    value: parts.join(", "),
  };
}

/** "kube-apiserver 58, operator 12, etcd 7, …" (ms per study, largest first, the machine left out). */
export function perStudyLine(ms: Record<string, number>): string {
  return Object.entries(ms)
    .filter(([k, v]) => k !== "bench" && v >= 0.5)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}
