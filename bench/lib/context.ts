// What every scenario gets: options, the cluster's clients, the study publisher, and a way to
// run the operator (one instance at a time, each watching only the scenario's namespaces).
import path from "node:path";
import { type ApiserverProfile, profileApiserver } from "./apiserver-profile.ts";
import { type CpuSnapshot, clusterPids, snapshot } from "./cpu.ts";
import { type ProfileSummary, summarizeProfile } from "./cpuprofile.ts";
import { Kube } from "./kube.ts";
import { Operator, type OperatorOptions } from "./operator.ts";
import type { Options } from "./options.ts";
import { Publisher } from "./studies.ts";

export interface ClusterAccess {
  KUBECONFIG: string;
  RADFLOW_NATS_URL: string;
  own: boolean; // brought up by the benchmark (and torn down after)
  dir?: string; // hack/cluster.ts state directory, when known: its pid files name the components
}

/** The benchmark's port range starts here (its cluster uses base…base+14). */
export function benchPortBase(env: NodeJS.ProcessEnv = process.env): number {
  return Number(env.RADFLOW_BENCH_PORT_BASE ?? 21300);
}

/**
 * Fixed ports of the benchmark's own processes, inside its range and below the ephemeral one:
 * Argo's controller at base+100…, the operator at base+120… (two per instance, cycling over 40
 * instances; one operator runs at a time).
 */
export const PORTS = {
  argoMetrics: (base: number) => base + 101,
  operator: (base: number, instance: number) => {
    const p = base + 120 + 2 * (instance % 40);
    return { metrics: p, health: p + 1 };
  },
};

export class Context {
  readonly opts: Options;
  readonly cluster: ClusterAccess;
  readonly kube: Kube;
  readonly pub = new Publisher();
  readonly runId: string;
  readonly workDir: string;
  readonly consumer: string;
  /** the operator's sources, copied at the start of the run */
  sourceRoot?: string;
  /** --compare: the other revision's sources, for a side-by-side measurement */
  compareRoot?: string;
  readonly namespaces: string[] = [];
  readonly portBase = benchPortBase();
  private instances = 0;
  /** operators started and not stopped yet: an interrupted run stops them (run.ts) */
  private readonly running = new Set<Operator>();

  constructor(opts: Options, cluster: ClusterAccess, runId: string, workDir: string) {
    this.opts = opts;
    this.cluster = cluster;
    this.kube = new Kube(cluster.KUBECONFIG);
    this.runId = runId;
    this.workDir = workDir;
    this.consumer = `radflow-bench-${runId}`;
  }

  async init(): Promise<void> {
    await this.pub.connect(this.cluster.RADFLOW_NATS_URL);
  }

  /** A fresh namespace for a scenario: bench-<run>-<name>. */
  async namespace(name: string): Promise<string> {
    const ns = `bench-${this.runId}-${name}`;
    await this.kube.createNamespace(ns);
    this.namespaces.push(ns);
    return ns;
  }

  /**
   * Starts the operator on these namespaces with a fresh durable consumer (so no study event of
   * an earlier scenario reaches it; `keepConsumer` keeps the one there is) and waits for /readyz.
   */
  async operator(
    name: string,
    namespaces: string[],
    extra: {
      maxRunningJobs?: number;
      profile?: boolean;
      sourceRoot?: string;
      /** take over the durable consumer as it is, with the events queued for it (no fresh one) */
      keepConsumer?: boolean;
      /** the rss scenario: node flags, and a memory cgroup at the chart's limit */
      nodeArgs?: string[];
      memoryCgroup?: OperatorOptions["memoryCgroup"];
    } = {},
  ): Promise<Operator> {
    if (!extra.keepConsumer) await this.pub.prepareConsumer(this.consumer);
    const instance = ++this.instances;
    const ports = PORTS.operator(this.portBase, instance);
    const op = new Operator(
      {
        name,
        namespaces,
        kubeconfig: this.cluster.KUBECONFIG,
        natsUrl: this.cluster.RADFLOW_NATS_URL,
        consumer: this.consumer,
        metricsPort: ports.metrics,
        healthPort: ports.health,
        workDir: this.workDir,
        profile: extra.profile ?? this.opts.profile,
        workers: this.opts.workers,
        maxRunningJobs: extra.maxRunningJobs,
        sourceRoot: extra.sourceRoot ?? this.sourceRoot,
        nodeArgs: extra.nodeArgs,
        memoryCgroup: extra.memoryCgroup,
      },
      instance,
    );
    op.start();
    this.running.add(op);
    await op.waitReady();
    return op;
  }

  /**
   * Starts the API server's CPU profile for the first --apiserver-profile seconds of a burst;
   * await the promise after the burst (undefined when off or not to be had).
   */
  apiserverProfile(label: string): Promise<ApiserverProfile | undefined> {
    const s = this.opts.apiserverProfileSeconds;
    if (!s) return Promise.resolve(undefined);
    return profileApiserver(this.kube.kc, s, path.join(this.workDir, `apiserver-${label}.pprof`));
  }

  /** Stops the operator and summarises its CPU profile when there is one. */
  async stopOperator(op: Operator): Promise<ProfileSummary | undefined> {
    const file = await op.stop();
    this.running.delete(op);
    if (!file) return undefined;
    try {
      return summarizeProfile(file);
    } catch (e) {
      process.stderr.write(`bench: cannot read profile ${file}: ${(e as Error).message}\n`);
      return undefined;
    }
  }

  /** CPU counters of the machine, the cluster's components, the benchmark, this operator (when
   * there is one) and any other process named in `extra` (a peer's controller). */
  cpu(op?: { pid?: number }, extra: Record<string, number> = {}): CpuSnapshot {
    const pids = { ...clusterPids(this.cluster.dir), ...extra };
    if (op?.pid) pids.operator = op.pid;
    return snapshot(pids);
  }

  /** Stops every operator still running (an interrupted run); names what it stopped. */
  async stopOperators(graceMs = 10_000): Promise<string[]> {
    const ops = [...this.running];
    this.running.clear();
    await Promise.all(ops.map((op) => op.stop(graceMs).catch(() => undefined)));
    return ops.map((op) => `operator (pid ${op.pid})`);
  }

  async close(): Promise<void> {
    await this.pub.deleteConsumer(this.consumer);
    await this.pub.close();
  }
}

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
