// The real operator as a child process: `node src/cmd/radflow.ts operator`, with the benchmark's
// request counter preloaded, optionally under `--cpu-prof`, its JSON logs in a file, and its
// resident memory read from /proc.
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { MemoryCgroup } from "./cgroup.ts";
import { BenchProcess } from "./process.ts";
import { type Scrape, scrape } from "./prom.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface OperatorOptions {
  name: string; // for file names: the scenario
  namespaces: string[];
  kubeconfig: string;
  natsUrl: string;
  consumer: string;
  metricsPort: number;
  healthPort: number;
  workDir: string; // logs and profiles go here
  /** where src/ and bench/lib/ are run from: a snapshot of the tree (see snapshot.ts), or the repository */
  sourceRoot?: string;
  profile: boolean;
  workers?: number;
  maxRunningJobs?: number;
  extraArgs?: string[];
  /** node flags before the script (e.g. --max-semi-space-size=…), as NODE_OPTIONS would give */
  nodeArgs?: string[];
  /** run inside this memory cgroup, joined before Node starts (bench/lib/cgroup.ts) */
  memoryCgroup?: MemoryCgroup;
}

export class Operator {
  readonly o: OperatorOptions;
  readonly logFile: string;
  readonly profileDir: string;
  private proc?: BenchProcess;
  spawnedAt = 0;
  /** ms from spawn to the first /readyz 200 */
  readyMs = 0;

  constructor(o: OperatorOptions, instance: number) {
    this.o = o;
    this.logFile = path.join(o.workDir, `operator-${o.name}-${instance}.log`);
    this.profileDir = path.join(o.workDir, `profile-${o.name}-${instance}`);
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  start(): void {
    mkdirSync(this.o.workDir, { recursive: true });
    const root = this.o.sourceRoot ?? repo;
    const entry = path.join(root, "src/cmd/radflow.ts");
    const nodeArgs = [...(this.o.nodeArgs ?? []), "--import", path.join(root, "bench/lib/api-counter.ts")];
    if (this.o.profile) {
      mkdirSync(this.profileDir, { recursive: true });
      nodeArgs.push("--cpu-prof", `--cpu-prof-dir=${this.profileDir}`);
    }
    const args = [
      entry,
      "operator",
      "--namespaces",
      this.o.namespaces.join(","),
      "--leader-elect=false",
      "--metrics-port",
      String(this.o.metricsPort),
      "--health-port",
      String(this.o.healthPort),
      ...(this.o.workers ? ["--workers", String(this.o.workers)] : []),
      ...(this.o.maxRunningJobs ? ["--max-running-jobs", String(this.o.maxRunningJobs)] : []),
      ...(this.o.extraArgs ?? []),
    ];
    this.spawnedAt = Date.now();
    // in a cgroup: sh joins it and execs node, so the pid stays the one /proc is read for
    const cmd = this.o.memoryCgroup?.wrap(process.execPath, [...nodeArgs, ...args]) ?? {
      cmd: process.execPath,
      args: [...nodeArgs, ...args],
    };
    // the child's ports are refused when another process holds them (an operator of an earlier run)
    this.proc = new BenchProcess({
      name: "operator",
      command: cmd.cmd,
      args: cmd.args,
      cwd: root,
      env: {
        ...process.env,
        KUBECONFIG: this.o.kubeconfig,
        RADFLOW_NATS_URL: this.o.natsUrl,
        RADFLOW_NATS_CONSUMER: this.o.consumer,
        RADFLOW_LOG_LEVEL: "info",
        // a fixed key keeps the warning about a random one out of the log
        RADFLOW_PHI_HMAC_KEY: "radflow-bench-study-ref-key-0123456789",
      },
      logFile: this.logFile,
      ports: [this.o.metricsPort, this.o.healthPort],
    });
    this.proc.start();
  }

  /**
   * Polls /readyz until 200; resolves with the ms since spawn. The default wait is long: over
   * 10,000 finished studies on a loaded machine the operator took more than 120 s to be ready;
   * one that exits is noticed at once.
   */
  async waitReady(timeoutMs = 900_000): Promise<number> {
    if (!this.proc) throw new Error("operator not started");
    await this.proc.waitReady(
      async () => (await fetch(`http://127.0.0.1:${this.o.healthPort}/readyz`)).status === 200,
      timeoutMs,
      20,
    );
    this.readyMs = Date.now() - this.spawnedAt;
    return this.readyMs;
  }

  /** Still running (not exited, not killed: the OOM killer's SIGKILL shows as signalCode). */
  alive(): boolean {
    return this.proc?.running ?? false;
  }

  exitText(): string {
    return this.proc?.exitText() ?? "not started";
  }

  metrics(): Promise<Scrape> {
    return scrape(this.o.metricsPort);
  }

  /** The first log line whose msg matches, with its time (ms since epoch). */
  findLog(msg: RegExp): { time: number; line: Record<string, unknown> } | undefined {
    if (!existsSync(this.logFile)) return undefined;
    for (const l of readFileSync(this.logFile, "utf8").split("\n")) {
      if (!l.startsWith("{")) continue;
      try {
        const j = JSON.parse(l) as Record<string, unknown>;
        if (typeof j.msg === "string" && msg.test(j.msg)) return { time: Date.parse(String(j.time)), line: j };
      } catch {}
    }
    return undefined;
  }

  /**
   * Resident set and its peak, in bytes, from /proc; and the resident set's anonymous part (heap,
   * stacks, buffers: what a container's memory limit is about) beside its file-backed part (the
   * node binary's mapped pages, shared with every other node process and reclaimable).
   */
  memory(): { rss: number; peak: number; anon: number; file: number } {
    return this.started().memory();
  }

  /** CPU seconds (user + system) the process has used, from /proc. */
  cpuSeconds(): number {
    return this.started().cpuSeconds();
  }

  private started(): BenchProcess {
    if (!this.proc) throw new Error("operator not started");
    return this.proc;
  }

  tail(lines = 20): string {
    if (!existsSync(this.logFile)) return "";
    return readFileSync(this.logFile, "utf8").trim().split("\n").slice(-lines).join("\n");
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the .cpuprofile written (if any). */
  async stop(graceMs = 30_000): Promise<string | undefined> {
    await this.proc?.stop(graceMs);
    return this.profileFile();
  }

  private profileFile(): string | undefined {
    if (!this.o.profile || !existsSync(this.profileDir)) return undefined;
    const f = readdirSync(this.profileDir).find((x) => x.endsWith(".cpuprofile"));
    return f ? path.join(this.profileDir, f) : undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
