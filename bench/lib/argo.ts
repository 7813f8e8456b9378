// Argo Workflows' workflow-controller as the benchmark's peer: built from the Go module proxy by
// hack/tools/argo/build.sh (pinned, cached, only when this scenario runs), its CRDs applied from
// the same release in the module cache, run as a child process on the benchmark's cluster,
// namespaced to one namespace, with its own request counter (argo_workflows_k8s_request_total)
// served on a fixed port.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { IMAGE } from "../scenarios/common.ts";
import type { Kube } from "./kube.ts";
import { BenchProcess, sleep } from "./process.ts";
import { type Scrape, scrape } from "./prom.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BUILD = path.join(repo, "hack/tools/argo/build.sh");

/** Pids of running hack/tools/argo/build.sh processes (another build of the same tool). */
function buildsRunning(): number[] {
  const out: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(BUILD)) out.push(Number(pid));
    } catch {}
  }
  return out;
}

/**
 * The workflow-controller binary (built on first use, minutes; cached afterwards). A build that
 * is already running (started by hand, or by another run) is waited for rather than duplicated:
 * two compilers of the same packages on a small machine take twice as long.
 */
export async function argoBinary(): Promise<string> {
  const deadline = Date.now() + 60 * 60_000;
  while (buildsRunning().length && Date.now() < deadline) await sleep(10_000);
  const out = execFileSync(BUILD, [], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return out.trim().split("\n").pop() as string;
}

/** The pinned release's CRDs (manifests/base/crds/minimal), read from the Go module cache. */
export function argoCrdDir(): string {
  const out = execFileSync(BUILD, ["crds"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return out.trim().split("\n").pop() as string;
}

/** The pinned release (hack/tools/argo/go.mod). */
export function argoVersion(): string {
  const mod = readFileSync(path.join(repo, "hack/tools/argo/go.mod"), "utf8");
  return /github\.com\/argoproj\/argo-workflows\/v4 (v\S+)/.exec(mod)?.[1] ?? "unknown";
}

/**
 * Applies the release's CRDs with kubectl (server-side, from their kustomization) and waits until
 * they are Established. Not through client-node's typed CRD model: it drops the schemas'
 * `x-kubernetes-preserve-unknown-fields`, and the API server then prunes every Workflow's spec.
 */
export function applyArgoCrds(kubeconfig: string, dir: string): void {
  // hack/tools/build.sh prints the cached bin directory on its last line (kubectl is built already)
  const bin = execFileSync(path.join(repo, "hack/tools/build.sh"), ["kubernetes"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const kubectl = path.join(bin.trim().split("\n").pop() as string, "kubectl");
  const run = (args: string[]) =>
    execFileSync(kubectl, ["--kubeconfig", kubeconfig, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  run(["apply", "--server-side", "--force-conflicts", "-k", dir]);
  const crds = readdirSync(dir).flatMap((f) => {
    const m = /^argoproj\.io_(.+)\.yaml$/.exec(f);
    return m ? [`crd/${m[1]}.argoproj.io`] : [];
  });
  run(["wait", "--for=condition=Established", "--timeout=60s", ...crds]);
}

export const CONFIGMAP = "workflow-controller-configmap";

export interface ArgoOptions {
  binary: string;
  kubeconfig: string;
  namespace: string;
  metricsPort: number;
  logFile: string;
  /** client-go rate limit: Argo's default (20/s, burst 30) would measure the flag, not the controller */
  qps: number;
  burst: number;
  workers: number;
}

/**
 * The controller's configuration: metrics on a port of the benchmark's range over plain HTTP
 * (its default 9090 may be anybody's on a shared machine; the default is TLS), nothing archived.
 */
export async function writeConfig(kube: Kube, namespace: string, metricsPort: number): Promise<void> {
  const metrics = `enabled: true\nsecure: false\nport: ${metricsPort}\npath: /metrics\n`;
  await kube.core.createNamespacedConfigMap({
    namespace,
    body: {
      metadata: { name: CONFIGMAP, namespace },
      // Argo's emissary must know a container's command; with no registry to ask (the image does
      // not exist: KWOK runs nothing), the image index names it, so the Workflow stays the Job's
      data: { metricsConfig: metrics, images: `${IMAGE}:\n  cmd: [/model]\n` },
    },
  });
}

export class ArgoController {
  readonly o: ArgoOptions;
  private readonly proc: BenchProcess;

  constructor(o: ArgoOptions) {
    this.o = o;
    this.proc = new BenchProcess({
      name: "workflow-controller",
      command: o.binary,
      args: this.args(),
      env: { ...process.env, LEADER_ELECTION_DISABLE: "true", KUBECONFIG: o.kubeconfig },
      logFile: o.logFile,
      // its health endpoint is hard-wired to :6060 (cmd/workflow-controller/main.go) and only
      // logs a failure to bind, so it is not ours to check; the metrics port is
      ports: [o.metricsPort],
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Argo's flags as run, for the results file. */
  args(): string[] {
    return [
      `--kubeconfig=${this.o.kubeconfig}`,
      `--namespace=${this.o.namespace}`,
      "--namespaced",
      `--managed-namespace=${this.o.namespace}`,
      `--configmap=${CONFIGMAP}`,
      `--qps=${this.o.qps}`,
      `--burst=${this.o.burst}`,
      `--workflow-workers=${this.o.workers}`,
      "--loglevel=warn",
      "--log-format=json",
    ];
  }

  /** Refuses to start when another process (a controller left by an earlier run) holds the metrics port. */
  start(): void {
    this.proc.start();
  }

  /** Waits until this controller (not a stale one) serves its metrics. */
  async waitReady(timeoutMs = 120_000): Promise<void> {
    await this.proc.waitReady(
      async () => {
        await this.metrics();
        return true;
      },
      timeoutMs,
      250,
    );
  }

  metrics(): Promise<Scrape> {
    return scrape(this.o.metricsPort);
  }

  /** CPU seconds (user + system) the controller has used, from /proc. */
  cpuSeconds(): number {
    return this.proc.cpuSeconds();
  }

  /** Resident set in bytes. */
  rss(): number {
    return this.proc.memory().rss;
  }

  tail(lines = 20): string {
    return this.proc.tail(lines);
  }

  stop(graceMs = 15_000): Promise<void> {
    return this.proc.stop(graceMs);
  }
}
