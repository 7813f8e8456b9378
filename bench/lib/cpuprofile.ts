// Summary of a V8 .cpuprofile (node --cpu-prof): where the operator's CPU time went — by
// category (radflow's own modules, each npm package, Node internals, GC, idle), the frames with
// the most self time, and radflow's functions with the most inclusive time.
import { readFileSync } from "node:fs";
import { round } from "./stats.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Frame {
  frame: string;
  ms: number;
  pct: number; // of the busy (non-idle) time
}

export interface ProfileSummary {
  file: string;
  wallMs: number;
  busyMs: number;
  idlePct: number;
  gcPct: number; // of busy
  byCategory: Frame[];
  topSelf: Frame[];
  topInclusiveRadflow: Frame[];
}

function category(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native/V8)";
  if (url.startsWith("node:")) {
    // node:internal/tls/wrap → "node: tls"; node:events → "node: events"
    const m = /^node:(?:internal\/)?([^/]+)/.exec(url);
    return `node: ${m?.[1] ?? url}`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  const src = /\/(src|bench)\/([^/]+)\//.exec(url);
  if (src) return `radflow ${src[1]}/${src[2]}`;
  return url;
}

function shortUrl(url: string): string {
  const nm = /node_modules\/(.*)$/.exec(url);
  if (nm) return nm[1] as string;
  const m = /\/((?:src|bench|test|hack)\/.*)$/.exec(url);
  return m ? (m[1] as string) : url.replace(/^file:\/\//, "");
}

function frameName(f: CallFrame): string {
  if (!f.url) return f.functionName || "(anonymous)";
  return `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>(); // node id → µs
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0; // the time until the next sample belongs to this one
    const id = p.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + Math.max(0, dt));
  }
  let total = 0;
  let idle = 0;
  let gc = 0;
  const cats = new Map<string, number>();
  const selfByFrame = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id) as ProfileNode;
    total += us;
    const fn = n.callFrame.functionName;
    if (fn === "(idle)") {
      idle += us;
      continue;
    }
    if (fn === "(garbage collector)") gc += us;
    const c = category(n.callFrame.url, fn);
    cats.set(c, (cats.get(c) ?? 0) + us);
    const k = frameName(n.callFrame);
    selfByFrame.set(k, (selfByFrame.get(k) ?? 0) + us);
  }
  const busy = total - idle;

  // inclusive time of radflow's own functions: each sample counts once per distinct frame on its stack
  const incl = new Map<string, number>();
  const onStack = new Map<string, number>();
  const rootId = p.nodes[0]?.id as number;
  const visit = (id: number) => {
    const n = byId.get(id) as ProfileNode;
    const isOurs = /\/src\//.test(n.callFrame.url) && !n.callFrame.url.includes("node_modules");
    const k = frameName(n.callFrame);
    if (isOurs) onStack.set(k, (onStack.get(k) ?? 0) + 1);
    const s = self.get(id) ?? 0;
    if (s) for (const key of onStack.keys()) incl.set(key, (incl.get(key) ?? 0) + s);
    for (const c of n.children ?? []) visit(c);
    if (isOurs) {
      const left = (onStack.get(k) ?? 1) - 1;
      if (left) onStack.set(k, left);
      else onStack.delete(k);
    }
  };
  visit(rootId);

  const frames = (m: Map<string, number>, n: number): Frame[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([frame, us]) => ({ frame, ms: round(us / 1000, 0), pct: round((us / (busy || 1)) * 100) }));
  return {
    file,
    wallMs: round((p.endTime - p.startTime) / 1000, 0),
    busyMs: round(busy / 1000, 0),
    idlePct: round((idle / (total || 1)) * 100),
    gcPct: round((gc / (busy || 1)) * 100),
    byCategory: frames(cats, 12),
    topSelf: frames(selfByFrame, top),
    topInclusiveRadflow: frames(incl, top),
  };
}

export function formatProfile(s: ProfileSummary): string {
  const lines = [
    `profile ${s.file}`,
    `  wall ${s.wallMs} ms, busy ${s.busyMs} ms (idle ${s.idlePct} %), GC ${s.gcPct} % of busy`,
    "  by category (% of busy):",
    ...s.byCategory.map((f) => `    ${f.pct.toFixed(1).padStart(5)} %  ${f.frame}`),
    "  top self frames:",
    ...s.topSelf.map((f) => `    ${f.pct.toFixed(1).padStart(5)} %  ${f.frame}`),
    "  radflow functions, inclusive:",
    ...s.topInclusiveRadflow.map((f) => `    ${f.pct.toFixed(1).padStart(5)} %  ${f.frame}`),
  ];
  return lines.join("\n");
}
