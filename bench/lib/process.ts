// One child process of the benchmark (the operator, Argo's workflow-controller): spawned with its
// output in a log file, an exit promise, a readiness poll that fails fast when the child dies,
// its CPU and memory from /proc, and a stop that escalates to SIGKILL. Every process started
// here is registered, so a benchmark interrupted by SIGINT/SIGTERM can stop them all
// (stopAllProcesses) instead of leaving them holding ports and watching the cluster.
//
// The ports a child is meant to serve are checked twice: before the spawn (a port another
// process still listens on, e.g. a controller left by an earlier run, is refused with that
// process's pid and command line) and once it is ready (the listener must be the child itself,
// or the readiness probe may have been answered by somebody else).
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface BenchProcessOptions {
  /** for messages: "operator", "workflow-controller" */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  logFile: string;
  /** TCP ports the child listens on (fixed or chosen by the benchmark) */
  ports?: number[];
}

const live = new Set<BenchProcess>();

export class BenchProcess {
  readonly o: BenchProcessOptions;
  private proc?: ChildProcess;
  private exited?: Promise<number | null>;
  private logFd?: number;
  spawnedAt = 0;
  /** ms from spawn to the first successful readiness probe */
  readyMs = 0;

  constructor(o: BenchProcessOptions) {
    this.o = o;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The exit code once the child has ended (null while it runs or when it died by a signal). */
  get exitCode(): number | null {
    return this.proc?.exitCode ?? null;
  }

  /** How it ended, for messages: "code 3", "signal SIGKILL" (the OOM killer's shows as a signal). */
  exitText(): string {
    return this.proc?.signalCode ? `signal ${this.proc.signalCode}` : `code ${this.proc?.exitCode}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  start(): void {
    for (const port of this.o.ports ?? []) {
      const holder = portHolder(port);
      if (holder)
        throw new Error(
          `${this.o.name}: port ${port} is already served by pid ${holder.pid} (${holder.command || "unknown"}); a process of an earlier run? stop it first`,
        );
    }
    this.logFd = openSync(this.o.logFile, "a");
    const proc = spawn(this.o.command, this.o.args, {
      cwd: this.o.cwd,
      env: this.o.env ?? process.env,
      stdio: ["ignore", this.logFd, this.logFd],
    });
    this.spawnedAt = Date.now();
    this.proc = proc;
    live.add(this);
    this.exited = new Promise((resolve) =>
      proc.on("exit", (code) => {
        live.delete(this);
        resolve(code);
      }),
    );
  }

  /**
   * Polls `probe` until it resolves true; resolves with the ms since spawn. Fails at once when the
   * child exits (with its log's tail), and when a port it should serve is held by another process.
   */
  async waitReady(probe: () => Promise<boolean>, timeoutMs = 120_000, intervalMs = 50): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.proc && !this.running)
        throw new Error(`${this.o.name} exited with ${this.exitText()}; log ${this.o.logFile}:\n${this.tail()}`);
      let ok = false;
      try {
        ok = await probe();
      } catch {}
      if (ok) {
        this.readyMs = Date.now() - this.spawnedAt;
        for (const port of this.o.ports ?? []) {
          const holder = portHolder(port);
          if (holder && holder.pid !== this.pid)
            throw new Error(
              `${this.o.name}: port ${port} is answered by pid ${holder.pid} (${holder.command}), not by this ${this.o.name} (pid ${this.pid})`,
            );
        }
        return this.readyMs;
      }
      if (Date.now() > deadline)
        throw new Error(`${this.o.name} not ready after ${timeoutMs} ms; log ${this.o.logFile}:\n${this.tail()}`);
      await sleep(intervalMs);
    }
  }

  /** CPU seconds (user + system) the child has used, from /proc. */
  cpuSeconds(): number {
    const f = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const after = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(after[11]) + Number(after[12])) / 100; // utime, stime in clock ticks (USER_HZ=100)
  }

  /** Resident set, its peak, and its anonymous and file-backed parts, in bytes, from /proc. */
  memory(): { rss: number; peak: number; anon: number; file: number } {
    const s = readFileSync(`/proc/${this.pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb("VmRSS"), peak: kb("VmHWM"), anon: kb("RssAnon"), file: kb("RssFile") };
  }

  tail(lines = 20): string {
    if (!existsSync(this.o.logFile)) return "";
    return readFileSync(this.o.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
  async stop(graceMs = 15_000): Promise<void> {
    const p = this.proc;
    if (p && this.running) {
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    if (this.logFd !== undefined) closeSync(this.logFd);
    this.logFd = undefined;
  }

  /** Last resort on the way out (process 'exit'): no waiting possible there. */
  kill(): void {
    if (this.running) this.proc?.kill("SIGKILL");
  }
}

/** Stops every child still running (SIGTERM, SIGKILL after `graceMs`), all at once. */
export async function stopAllProcesses(graceMs = 10_000): Promise<string[]> {
  const stopping = [...live];
  await Promise.all(stopping.map((p) => p.stop(graceMs).catch(() => undefined)));
  return stopping.map((p) => `${p.o.name} (pid ${p.pid})`);
}

/** SIGKILLs every child still running, synchronously (for process.on('exit')). */
export function killAllProcesses(): void {
  for (const p of live) p.kill();
}

/**
 * The process listening on a TCP port on this machine (any address), from /proc/net/tcp{,6}
 * and the socket inodes in /proc/<pid>/fd; undefined when nothing listens. A listener whose
 * owner cannot be read (another user's process) comes back as pid 0.
 */
export function portHolder(port: number): { pid: number; command: string } | undefined {
  const inodes = listeningInodes(port);
  if (!inodes.size) return undefined;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${d}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${d}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1] as string)) return { pid: Number(d), command: commandLine(Number(d)) };
    }
  }
  return { pid: 0, command: "" };
}

/** Socket inodes in LISTEN state on `port`, parsed from /proc/net/tcp and tcp6. */
export function listeningInodes(port: number, tables = ["/proc/net/tcp", "/proc/net/tcp6"]): Set<string> {
  const out = new Set<string>();
  for (const file of tables) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const local = f[1];
      if (!local || f[3] !== "0A") continue; // 0A = TCP_LISTEN
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port && f[9] && f[9] !== "0") out.add(f[9]);
    }
  }
  return out;
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ").slice(0, 200);
  } catch {
    return "";
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
