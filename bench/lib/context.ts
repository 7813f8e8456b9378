// What every scenario gets: options, the cluster's clients, the study publisher, and a way to
// run the operator (one instance at a time, each watching only the scenario's namespaces).
import net from "node:net";
import { type CpuSnapshot, clusterPids, snapshot } from "./cpu.ts";
import { type ProfileSummary, summarizeProfile } from "./cpuprofile.ts";
import { Kube } from "./kube.ts";
import { Operator } from "./operator.ts";
import type { Options } from "./options.ts";
import { Publisher } from "./studies.ts";

export interface ClusterAccess {
  KUBECONFIG: string;
  RADFLOW_NATS_URL: string;
  own: boolean; // brought up by the benchmark (and torn down after)
  dir?: string; // hack/cluster.ts state directory, when known: its pid files name the components
}

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
  private instances = 0;

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
   * an earlier scenario reaches it) and waits for /readyz.
   */
  async operator(
    name: string,
    namespaces: string[],
    extra: { maxRunningJobs?: number; profile?: boolean; sourceRoot?: string } = {},
  ): Promise<Operator> {
    await this.pub.prepareConsumer(this.consumer);
    const op = new Operator(
      {
        name,
        namespaces,
        kubeconfig: this.cluster.KUBECONFIG,
        natsUrl: this.cluster.RADFLOW_NATS_URL,
        consumer: this.consumer,
        metricsPort: await freePort(),
        healthPort: await freePort(),
        workDir: this.workDir,
        profile: extra.profile ?? this.opts.profile,
        workers: this.opts.workers,
        maxRunningJobs: extra.maxRunningJobs,
        sourceRoot: extra.sourceRoot ?? this.sourceRoot,
      },
      ++this.instances,
    );
    op.start();
    await op.waitReady();
    return op;
  }

  /** Stops the operator and summarises its CPU profile when there is one. */
  async stopOperator(op: Operator): Promise<ProfileSummary | undefined> {
    const file = await op.stop();
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

  async close(): Promise<void> {
    await this.pub.deleteConsumer(this.consumer);
    await this.pub.close();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
