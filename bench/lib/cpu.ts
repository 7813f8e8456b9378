// Where the machine's CPU went during a run: the whole machine (/proc/stat), the operator, the
// benchmark itself, and each component of the local cluster (from its pid files), in cores.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { round } from "./stats.ts";

const TICK = 100; // USER_HZ

function procCpu(pid: number): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const after = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(after[11]) + Number(after[12])) / TICK;
  } catch {
    return undefined;
  }
}

function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] as string;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / TICK, total: total / TICK };
}

export interface CpuSnapshot {
  at: number;
  machine: { busy: number; total: number };
  procs: Record<string, number>;
}

/** Cluster components' pids from a hack/cluster.ts state directory (none when it is not ours). */
export function clusterPids(dir: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (!dir) return out;
  const pids = path.join(dir, "pids");
  if (!existsSync(pids)) return out;
  for (const f of readdirSync(pids).filter((x) => x.endsWith(".pid"))) {
    const pid = Number(readFileSync(path.join(pids, f), "utf8").trim());
    if (pid) out[f.replace(/\.pid$/, "")] = pid;
  }
  return out;
}

export function snapshot(pids: Record<string, number>): CpuSnapshot {
  const procs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const c = procCpu(pid);
    if (c !== undefined) procs[name] = c;
  }
  procs.bench = (process.cpuUsage().user + process.cpuUsage().system) / 1e6;
  return { at: performance.now(), machine: machineCpu(), procs };
}

/** Average cores used between two snapshots, per process and for the machine ("other" = the rest). */
export function coresUsed(a: CpuSnapshot, b: CpuSnapshot): Record<string, number> {
  const secs = (b.at - a.at) / 1000;
  const out: Record<string, number> = {};
  let known = 0;
  for (const [k, v] of Object.entries(b.procs)) {
    const d = v - (a.procs[k] ?? 0);
    known += d;
    out[k] = round(d / secs, 2);
  }
  const busy = b.machine.busy - a.machine.busy;
  out.machine = round(busy / secs, 2);
  out.other = round(Math.max(0, busy - known) / secs, 2);
  return out;
}

/** CPU milliseconds per study between two snapshots, per process (the cost of one study to each). */
export function cpuMsPerStudy(a: CpuSnapshot, b: CpuSnapshot, studies: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.procs)) out[k] = round(((v - (a.procs[k] ?? 0)) * 1000) / studies, 1);
  return out;
}

/** "machine 1.9: operator 0.4, kube-apiserver 0.8, …" (largest first). */
export function coresLine(c: Record<string, number>): string {
  const parts = Object.entries(c)
    .filter(([k, v]) => k !== "machine" && v >= 0.01)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`);
  return `${(c.machine ?? 0).toFixed(2)} of ${os.cpus().length}: ${parts.join(", ")}`;
}
