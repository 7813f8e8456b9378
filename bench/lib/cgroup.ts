// A memory cgroup (v1) for the operator under test, limited to the chart's memory limit, so that
// the memory scenario measures the operator the way a pod runs it: Node sizes its heap from the
// cgroup's limit (not from the host's RAM), and the kernel's OOM killer acts at the limit.
//
// The cgroup is made inside the benchmark's own memory cgroup (read from /proc/self/cgroup), so
// the operator stays accounted where the benchmark is; it is removed afterwards. The process is
// put into it before Node starts (`sh -c 'echo $$ > cgroup.procs; exec node …'`), so that every
// page Node touches from its first instruction is charged to it, as in a container.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";

const ROOT = "/sys/fs/cgroup/memory";

/** The memory controller's path of a process, from the text of /proc/<pid>/cgroup (v1 only). */
export function memoryCgroupPath(procCgroup: string): string | undefined {
  for (const line of procCgroup.split("\n")) {
    const [, controllers, p] = line.split(":", 3) as [string, string | undefined, string | undefined];
    if (controllers?.split(",").includes("memory") && p !== undefined) return p;
  }
  return undefined;
}

/** `key value` lines (memory.stat, memory.oom_control) as numbers. */
export function parseKeyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

export interface CgroupMemory {
  limitBytes: number;
  usageBytes: number;
  /** the highest usage since the cgroup was made (includes page cache, as the limit does) */
  maxUsageBytes: number;
  /** times usage hit the limit (the kernel reclaimed, or failed to) */
  failcnt: number;
  /** usage less inactive file pages: what the kubelet calls the working set */
  workingSetBytes: number;
  rssBytes: number;
  cacheBytes: number;
  underOom: boolean;
  /** processes the OOM killer killed in this cgroup */
  oomKills: number;
}

/** The figures of a cgroup from its files' text (pure, for tests). */
export function readings(files: {
  limit: string;
  usage: string;
  maxUsage: string;
  failcnt: string;
  stat: string;
  oomControl: string;
}): CgroupMemory {
  const stat = parseKeyValues(files.stat);
  const oom = parseKeyValues(files.oomControl);
  const usage = Number(files.usage.trim());
  const inactiveFile = stat.total_inactive_file ?? stat.inactive_file ?? 0;
  return {
    limitBytes: Number(files.limit.trim()),
    usageBytes: usage,
    maxUsageBytes: Number(files.maxUsage.trim()),
    failcnt: Number(files.failcnt.trim()),
    workingSetBytes: Math.max(0, usage - inactiveFile),
    rssBytes: stat.total_rss ?? stat.rss ?? 0,
    cacheBytes: stat.total_cache ?? stat.cache ?? 0,
    underOom: (oom.under_oom ?? 0) !== 0,
    oomKills: oom.oom_kill ?? 0,
  };
}

export class MemoryCgroup {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Makes `<own memory cgroup>/<name>` with memory.limit_in_bytes = limitBytes, or says why it
   * cannot (no cgroup v1 memory controller, not root).
   */
  static create(name: string, limitBytes: number): MemoryCgroup | { unavailable: string } {
    if (!existsSync(path.join(ROOT, "cgroup.procs")))
      return { unavailable: `no cgroup v1 memory controller at ${ROOT}` };
    const own = memoryCgroupPath(readFileSync("/proc/self/cgroup", "utf8"));
    if (own === undefined) return { unavailable: "this process is in no memory cgroup" };
    const dir = path.join(ROOT, own, name);
    try {
      mkdirSync(dir);
      writeFileSync(path.join(dir, "memory.limit_in_bytes"), String(limitBytes));
      // no swap for it either (there is none here; where there is, a pod gets none by default)
      const swappiness = path.join(dir, "memory.swappiness");
      if (existsSync(swappiness)) writeFileSync(swappiness, "0");
    } catch (e) {
      try {
        rmdirSync(dir);
      } catch {}
      return { unavailable: `cannot make memory cgroup ${dir}: ${(e as Error).message}` };
    }
    return new MemoryCgroup(dir);
  }

  /** `cmd args` wrapped so that the process joins this cgroup before it starts. */
  wrap(cmd: string, args: string[]): { cmd: string; args: string[] } {
    const procs = path.join(this.dir, "cgroup.procs");
    return { cmd: "/bin/sh", args: ["-c", `echo $$ > '${procs}' && exec "$@"`, "sh", cmd, ...args] };
  }

  /** Pids in it now. */
  pids(): number[] {
    return readFileSync(path.join(this.dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
  }

  /** SIGKILL to every process still in it (only the benchmark's own child is ever put there). */
  killAll(): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
  }

  read(): CgroupMemory {
    const f = (x: string) => readFileSync(path.join(this.dir, x), "utf8");
    return readings({
      limit: f("memory.limit_in_bytes"),
      usage: f("memory.usage_in_bytes"),
      maxUsage: f("memory.max_usage_in_bytes"),
      failcnt: f("memory.failcnt"),
      stat: f("memory.stat"),
      oomControl: f("memory.oom_control"),
    });
  }

  /**
   * Removes the cgroup once its processes are gone (the caller stops them first); a cgroup
   * still holding only page cache is emptied by the kernel on rmdir.
   */
  async remove(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        if (this.pids().length === 0) {
          rmdirSync(this.dir);
          return;
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
        if (Date.now() > deadline) throw e;
      }
      if (Date.now() > deadline)
        throw new Error(`memory cgroup ${this.dir} still has processes ${this.pids().join(",")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
