// A real local control plane on loopback, for tests, the demo and the benchmarks:
// etcd, kube-apiserver (RBAC, service-account signing), kube-controller-manager (Job controller,
// garbage collector, namespace controller, …), kube-scheduler, KWOK with three fake nodes (two
// GPU nodes with distinct products, one CPU-only) and nats-server with JetStream.
// Every binary is built from the Go module proxy by hack/tools/build.sh.
//
//   hack/cluster up [--nats-cluster] [--real-node] | down | status | env | images load <tar…>
//
// Environment: RADFLOW_CLUSTER_DIR (state, default /tmp/radflow-cluster), RADFLOW_PORT_BASE
// (default 21400; PORT_SPAN consecutive ports are used), RADFLOW_NATS_NODES (1, or 3 for a
// JetStream cluster; `up --nats-cluster` is the same as 3), RADFLOW_CACHE (the tools cache).
// `up --real-node` (or RADFLOW_REAL_NODE=1) adds a real node (containerd, runc, CNI, kubelet:
// hack/real-node/node.ts) where pods really run; `images load` imports OCI tars into it.
//
// Ports sit below the kernel's ephemeral range (32768–60999 on Linux): a port in that range can
// be held at any moment by any outgoing connection, and a component that cannot bind must not
// leave a cluster that looks up. `up` checks every component's own health endpoint and fails
// naming the component and the end of its log; `status` exits non-zero when one is dead.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  cleanRealNode,
  loadImages,
  type RealNodeComponent,
  realNodeComponents,
  realNodeHealth,
  startRealNode,
} from "./real-node/node.ts";

const hackDir = path.dirname(fileURLToPath(import.meta.url));

export interface ClusterOptions {
  dir: string;
  portBase: number;
  quiet?: boolean;
  /** nats-server nodes: 1 (default) or 3 (a JetStream cluster, for R3 streams) */
  natsNodes?: number;
  /** only NATS runs in this directory (upNats), no Kubernetes */
  natsOnly?: boolean;
  /** a real node (containerd + kubelet) next to the KWOK nodes */
  realNode?: boolean;
}

export interface ClusterEnv {
  KUBECONFIG: string;
  RADFLOW_NATS_URL: string;
}

export const components = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kwok",
  "nats-server",
] as const;
/** The extra nats-server nodes of a three-node JetStream cluster. */
export const extraNatsNodes = ["nats-server-2", "nats-server-3"] as const;
export type Component = (typeof components)[number] | (typeof extraNatsNodes)[number] | RealNodeComponent;

/** Ports used from the base: the first eight are the single-node layout, then the NATS cluster's. */
export const PORT_SPAN = 16;
/** First port of the kernel's ephemeral range on Linux (net.ipv4.ip_local_port_range). */
const EPHEMERAL_FIRST = 32768;

export const DEFAULT_PORT_BASE = 21400;
export const DEFAULT_TEST_PORT_BASE = 21500;

export function defaultOptions(env: NodeJS.ProcessEnv = process.env): ClusterOptions {
  return {
    dir: env.RADFLOW_CLUSTER_DIR ?? "/tmp/radflow-cluster",
    portBase: Number(env.RADFLOW_PORT_BASE ?? DEFAULT_PORT_BASE),
    natsNodes: env.RADFLOW_NATS_NODES ? Number(env.RADFLOW_NATS_NODES) : undefined,
    realNode: env.RADFLOW_REAL_NODE === "1" || env.RADFLOW_REAL_NODE === "true" || undefined,
  };
}

export function ports(base: number) {
  return {
    etcd: base,
    etcdPeer: base + 1,
    apiserver: base + 2,
    controllerManager: base + 3,
    scheduler: base + 4,
    nats: base + 5,
    natsMonitor: base + 6,
    kwok: base + 7,
    // a NATS cluster: node 1 uses nats/natsMonitor above plus a route port; nodes 2 and 3 three each
    natsRoute: base + 8,
    nats2: base + 9,
    natsMonitor2: base + 10,
    natsRoute2: base + 11,
    nats3: base + 12,
    natsMonitor3: base + 13,
    natsRoute3: base + 14,
  };
}

/** One nats-server node's ports (node 1, 2 or 3). */
export function natsNodePorts(base: number, node: number): { client: number; monitor: number; route: number } {
  const p = ports(base);
  if (node === 2) return { client: p.nats2, monitor: p.natsMonitor2, route: p.natsRoute2 };
  if (node === 3) return { client: p.nats3, monitor: p.natsMonitor3, route: p.natsRoute3 };
  return { client: p.nats, monitor: p.natsMonitor, route: p.natsRoute };
}

const natsComponent = (node: number): Component => (node === 1 ? "nats-server" : (`nats-server-${node}` as Component));

/** The ports a cluster of these options listens on, by what listens (for the free-port check). */
function usedPorts(o: ClusterOptions): Record<string, number> {
  const { natsRoute, nats2, natsMonitor2, natsRoute2, nats3, natsMonitor3, natsRoute3, ...single } = ports(o.portBase);
  return natsNodes(o) === 1
    ? single
    : { ...single, natsRoute, nats2, natsMonitor2, natsRoute2, nats3, natsMonitor3, natsRoute3 };
}

function natsNodes(o: ClusterOptions): number {
  const n = o.natsNodes ?? 1;
  if (n !== 1 && n !== 3) throw new Error(`cluster: RADFLOW_NATS_NODES must be 1 or 3, not ${n}`);
  return n;
}

/** The components of a cluster of these options, in start order. */
export function componentsOf(o: ClusterOptions): Component[] {
  const all: Component[] = natsNodes(o) === 1 ? [...components] : [...components, ...extraNatsNodes];
  if (o.realNode && !o.natsOnly) all.push(...realNodeComponents);
  return o.natsOnly ? all.filter((c) => c.startsWith("nats-server")) : all;
}

export function clusterEnv(o: ClusterOptions): ClusterEnv {
  const urls = Array.from(
    { length: natsNodes(o) },
    (_, i) => `nats://127.0.0.1:${natsNodePorts(o.portBase, i + 1).client}`,
  );
  return {
    KUBECONFIG: path.join(o.dir, "kubeconfig"),
    RADFLOW_NATS_URL: urls.join(","),
  };
}

/**
 * The options a running cluster was made with (its NATS node count is recorded at `up`), so that
 * `status`, `down` and `env` see a three-node NATS without the variable being set again.
 */
export function recordedOptions(o: ClusterOptions): ClusterOptions {
  try {
    const rec = JSON.parse(readFileSync(path.join(o.dir, "options.json"), "utf8")) as ClusterOptions;
    return {
      ...o,
      natsNodes: rec.natsNodes ?? o.natsNodes,
      natsOnly: rec.natsOnly === true,
      realNode: rec.realNode === true,
    };
  } catch {
    return o;
  }
}

function log(o: ClusterOptions, msg: string) {
  if (!o.quiet) process.stderr.write(`cluster: ${msg}\n`);
}

function pidFile(o: ClusterOptions, c: string) {
  return path.join(o.dir, "pids", `${c}.pid`);
}

function readPid(o: ClusterOptions, c: string): number | undefined {
  try {
    return Number(readFileSync(pidFile(o, c), "utf8").trim()) || undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** The real node's binaries, built on top of the cluster's (buildTools(quiet, [...clusterTools, ...realNodeTools])). */
export const realNodeTools = ["runc", "containerd", "cni-plugins", "kubelet"];

/** The cluster's binaries (and the tests' promtool, when asked), built once and cached. */
export function buildTools(quiet = false, tools = ["nats-server", "etcd", "kwok", "kubernetes", "helm"]): string {
  // One build at a time per cache (flock, where the machine has it): test runs started together
  // would otherwise compile the same tool into the same directory at once. The second waits and
  // then finds the first one's stamp.
  const build = path.join(hackDir, "tools", "build.sh");
  const cache =
    process.env.RADFLOW_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "radflow");
  mkdirSync(cache, { recursive: true });
  const locked = spawnSync("sh", ["-c", "command -v flock"]).status === 0;
  // build.sh prints progress on stderr and the bin directory on its last stdout line.
  const out = execFileSync(
    locked ? "flock" : build,
    locked ? [path.join(cache, "build.lock"), build, ...tools] : tools,
    {
      stdio: ["ignore", "pipe", quiet ? "pipe" : "inherit"],
      encoding: "utf8",
      maxBuffer: 64 << 20,
    },
  );
  return out.trim().split("\n").pop() as string;
}

function openssl(args: string[], cwd: string) {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** CA, serving and client certificates, and the service-account key pair. */
function makePki(dir: string) {
  mkdirSync(dir, { recursive: true });
  const days = "3650";
  openssl(["genrsa", "-out", "ca.key", "2048"], dir);
  openssl(
    ["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=radflow-local-ca", "-days", days, "-out", "ca.crt"],
    dir,
  );
  writeFileSync(
    path.join(dir, "server.ext"),
    "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n" +
      "extendedKeyUsage=serverAuth\n",
  );
  writeFileSync(path.join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  const sign = (name: string, subj: string, ext: string) => {
    openssl(["genrsa", "-out", `${name}.key`, "2048"], dir);
    openssl(["req", "-new", "-key", `${name}.key`, "-subj", subj, "-out", `${name}.csr`], dir);
    openssl(
      [
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        days,
        "-extfile",
        ext,
        "-out",
        `${name}.crt`,
      ],
      dir,
    );
  };
  sign("apiserver", "/CN=kube-apiserver", "server.ext");
  sign("admin", "/O=system:masters/CN=radflow-admin", "client.ext");
  openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

function writeKubeconfig(o: ClusterOptions) {
  const pki = path.join(o.dir, "pki");
  const b64 = (f: string) => readFileSync(path.join(pki, f)).toString("base64");
  const server = `https://127.0.0.1:${ports(o.portBase).apiserver}`;
  writeFileSync(
    clusterEnv(o).KUBECONFIG,
    `apiVersion: v1
kind: Config
clusters:
- name: radflow-local
  cluster:
    server: ${server}
    certificate-authority-data: ${b64("ca.crt")}
users:
- name: radflow-admin
  user:
    client-certificate-data: ${b64("admin.crt")}
    client-key-data: ${b64("admin.key")}
contexts:
- name: radflow-local
  context:
    cluster: radflow-local
    user: radflow-admin
current-context: radflow-local
`,
    { mode: 0o600 },
  );
}

/** The executable of a component (the extra NATS nodes run nats-server). */
const binaryOf = (c: Component) => (c.startsWith("nats-server") ? "nats-server" : c);

function logFileOf(o: ClusterOptions, c: Component) {
  return path.join(o.dir, "logs", `${c}.log`);
}

function start(o: ClusterOptions, bin: string, c: Component, args: string[]) {
  const logFile = logFileOf(o, c);
  const fd = openSync(logFile, "a");
  // detached: the components outlive `hack/cluster up` and form their own process group
  // the real node's service-proxy is a Node script (its first argument), the others binaries
  const exe = c === "service-proxy" ? process.execPath : path.join(bin, binaryOf(c));
  const child = spawn(exe, args, { detached: true, stdio: ["ignore", fd, fd] });
  child.unref();
  writeFileSync(pidFile(o, c), String(child.pid));
  writeFileSync(path.join(o.dir, "pids", `${c}.args.json`), JSON.stringify({ bin, args }));
  log(o, `started ${c} (pid ${child.pid}, log ${logFile})`);
}

/** The last lines of a component's log, for error messages that must say why it is not healthy. */
export function logTail(o: ClusterOptions, c: Component, lines = 8): string {
  try {
    const text = readFileSync(logFileOf(o, c), "utf8").trimEnd();
    return text
      .split("\n")
      .slice(-lines)
      .map((l) => `    ${l.length > 300 ? `${l.slice(0, 300)}…` : l}`)
      .join("\n");
  } catch {
    return "    (no log)";
  }
}

function httpsGet(
  o: ClusterOptions,
  urlPath: string,
  port = ports(o.portBase).apiserver,
): Promise<{ status: number; body: string }> {
  const pki = path.join(o.dir, "pki");
  const apiserver = port === ports(o.portBase).apiserver;
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port,
        path: urlPath,
        // the controller-manager and the scheduler serve a self-signed certificate of their own
        // (made in their --cert-dir): check who answers only on the API server
        ca: apiserver ? readFileSync(path.join(pki, "ca.crt")) : undefined,
        rejectUnauthorized: apiserver,
        cert: readFileSync(path.join(pki, "admin.crt")),
        key: readFileSync(path.join(pki, "admin.key")),
        timeout: 2000,
      },
      (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

/**
 * Asks a component's own health endpoint: etcd /health, the API server /readyz, the
 * controller-manager and scheduler /healthz on their secure ports (allowed without authorization
 * by their default --authorization-always-allow-paths), KWOK /healthz, nats-server /healthz (with
 * JetStream). Resolves with "" when healthy, or what was wrong.
 */
export async function health(o: ClusterOptions, c: Component): Promise<string> {
  const p = ports(o.portBase);
  const plain = async (url: string) => {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return r.ok ? "" : `${url} answered ${r.status}: ${(await r.text()).slice(0, 200)}`;
  };
  const secure = async (port: number, urlPath: string) => {
    const r = await httpsGet(o, urlPath, port);
    return r.status === 200 ? "" : `https://127.0.0.1:${port}${urlPath} answered ${r.status}: ${r.body.slice(0, 200)}`;
  };
  try {
    switch (c) {
      case "etcd":
        return await plain(`http://127.0.0.1:${p.etcd}/health`);
      case "kube-apiserver":
        return await secure(p.apiserver, "/readyz");
      case "kube-controller-manager":
        return await secure(p.controllerManager, "/healthz");
      case "kube-scheduler":
        return await secure(p.scheduler, "/healthz");
      case "kwok":
        return await plain(`http://127.0.0.1:${p.kwok}/healthz`);
      case "service-proxy":
      case "containerd":
      case "kubelet":
        return await realNodeHealth(o.dir, c);
      default: {
        const node = c === "nats-server" ? 1 : Number(c.slice("nats-server-".length));
        const monitor = `http://127.0.0.1:${natsNodePorts(o.portBase, node).monitor}`;
        const why = await plain(`${monitor}/healthz?js-enabled-only=true`);
        if (why || natsNodes(o) === 1) return why;
        // in a cluster, JetStream answers API requests only once the nodes have elected a meta leader
        const jsz = (await (await fetch(`${monitor}/jsz`, { signal: AbortSignal.timeout(2000) })).json()) as {
          meta_cluster?: { leader?: string };
        };
        return jsz.meta_cluster?.leader ? "" : "no JetStream meta leader yet";
      }
    }
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return `not answering (${err.cause?.code ?? err.message})`;
  }
}

/**
 * Waits until a component is healthy. Fails at once when its process has exited, and on timeout,
 * naming the component, what its health endpoint said and the last lines of its log.
 */
async function waitHealthy(o: ClusterOptions, c: Component, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    if (!alive(readPid(o, c))) {
      throw new Error(`cluster: ${c} exited at start; the end of ${logFileOf(o, c)}:\n${logTail(o, c)}`);
    }
    last = await health(o, c);
    if (!last) return;
    if (Date.now() > deadline) {
      throw new Error(
        `cluster: ${c} is not healthy after ${timeoutMs / 1000} s (${last}); the end of ${logFileOf(o, c)}:\n${logTail(o, c)}`,
      );
    }
    await sleep(250);
  }
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, o: ClusterOptions) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = "";
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    await sleep(200);
  }
  throw new Error(
    `cluster: timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr})` : ""}; logs in ${path.join(o.dir, "logs")}`,
  );
}

function kubectl(o: ClusterOptions, bin: string, args: string[], input?: string): string {
  return execFileSync(path.join(bin, "kubectl"), ["--kubeconfig", clusterEnv(o).KUBECONFIG, ...args], {
    input,
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  });
}

const nodesYaml = () => {
  const gpuNode = (name: string, product: string, memoryMiB: number) => `apiVersion: v1
kind: Node
metadata:
  name: ${name}
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: ${name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    nvidia.com/gpu.present: "true"
    nvidia.com/gpu.product: ${product}
    nvidia.com/gpu.count: "4"
    nvidia.com/gpu.memory: "${memoryMiB}"
spec:
  # GPU clusters taint GPU nodes so that only pods asking for a GPU land there.
  taints:
  - key: nvidia.com/gpu
    value: present
    effect: NoSchedule
status:
  capacity: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "4"}
  allocatable: {cpu: "64", memory: 512Gi, pods: "110", nvidia.com/gpu: "4"}
`;
  return [
    gpuNode("gpu-a100-0", "NVIDIA-A100-SXM4-80GB", 81920),
    gpuNode("gpu-h100-0", "NVIDIA-H100-80GB-HBM3", 81559),
    `apiVersion: v1
kind: Node
metadata:
  name: cpu-0
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: cpu-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
`,
  ].join("---\n");
};

export interface ComponentProblem {
  component: Component;
  running: boolean;
  /** what is wrong, with the end of the component's log */
  problem: string;
}

/** Every component of the cluster that is not running or not healthy, and why (none: all well). */
export async function problems(o: ClusterOptions): Promise<ComponentProblem[]> {
  const rec = recordedOptions(o);
  const out: ComponentProblem[] = [];
  for (const c of componentsOf(rec)) {
    const pid = readPid(rec, c);
    if (!alive(pid)) {
      out.push({
        component: c,
        running: false,
        problem: `${c} is not running; the end of its log:\n${logTail(rec, c)}`,
      });
      continue;
    }
    const why = await health(rec, c);
    if (why) out.push({ component: c, running: true, problem: `${c} (pid ${pid}) is not healthy: ${why}` });
  }
  return out;
}

export async function isUp(o: ClusterOptions): Promise<boolean> {
  if (!existsSync(path.join(o.dir, "pids"))) return false;
  return (await problems(o)).length === 0;
}

function anyAlive(o: ClusterOptions): boolean {
  return existsSync(path.join(o.dir, "pids")) && componentsOf(recordedOptions(o)).some((c) => alive(readPid(o, c)));
}

/**
 * Starts again the components of a running cluster that have died (`up` on a cluster that lost
 * its scheduler), with the arguments they were started with, and checks each one's health.
 */
async function repair(o: ClusterOptions, dead: ComponentProblem[]): Promise<void> {
  for (const d of dead) {
    log(o, `${d.problem}\ncluster: starting ${d.component} again`);
    const { bin, args } = JSON.parse(readFileSync(path.join(o.dir, "pids", `${d.component}.args.json`), "utf8")) as {
      bin: string;
      args: string[];
    };
    start(o, bin, d.component, args);
    await waitHealthy(o, d.component, 90_000);
  }
}

export async function up(o: ClusterOptions): Promise<ClusterEnv> {
  if (anyAlive(o)) {
    const rec = recordedOptions(o);
    if (o.realNode && !rec.realNode) {
      throw new Error(`cluster: ${o.dir} runs without a real node; run hack/cluster down first`);
    }
    if (rec.natsOnly || (o.natsNodes !== undefined && natsNodes(rec) !== natsNodes(o))) {
      throw new Error(
        `cluster: ${o.dir} runs ${rec.natsOnly ? "only NATS" : `${natsNodes(rec)} NATS node(s), not ${natsNodes(o)}`}; run hack/cluster down first`,
      );
    }
    const found = await problems(rec);
    if (found.length === 0) {
      log(rec, `already up (${o.dir})`);
      return clusterEnv(rec);
    }
    // A component that died is started again; one that runs but is unhealthy gets a while to recover.
    await repair(
      rec,
      found.filter((f) => !f.running),
    );
    for (const f of found.filter((x) => x.running)) await waitHealthy(rec, f.component, 60_000);
    log(rec, `up again (${o.dir})`);
    return clusterEnv(rec);
  }
  if (existsSync(o.dir)) {
    log(o, `found a stale earlier run in ${o.dir}; cleaning it up`);
    await down(o);
  }
  const used = usedPorts(o);
  for (const [name, port] of Object.entries(used)) {
    if (port >= EPHEMERAL_FIRST) {
      log(o, `warning: port ${port} (${name}) is in the kernel's ephemeral range; any outgoing connection may hold it`);
    }
    if (!(await portFree(port))) {
      throw new Error(
        `cluster: port ${port} (${name}) is in use by another program; set RADFLOW_PORT_BASE to another base (${PORT_SPAN} ports are used)`,
      );
    }
  }
  const clusterTools = ["nats-server", "etcd", "kwok", "kubernetes", "helm"];
  const bin = buildTools(o.quiet, o.realNode ? [...clusterTools, ...realNodeTools] : clusterTools);
  try {
    await startAll(o, bin);
  } catch (e) {
    // leave nothing running behind a failed start; keep the logs for the message's reader
    await stopAll(o);
    throw new Error(
      `${(e as Error).message}\ncluster: stopped what had started; logs stay in ${path.join(o.dir, "logs")}`,
    );
  }
  return clusterEnv(o);
}

function startNats(o: ClusterOptions, bin: string) {
  const n = natsNodes(o);
  for (let node = 1; node <= n; node++) {
    const me = natsNodePorts(o.portBase, node);
    const store = path.join(o.dir, node === 1 ? "nats" : `nats-${node}`);
    mkdirSync(store, { recursive: true });
    const cluster =
      n === 1
        ? ["--server_name=radflow-local"]
        : [
            `--server_name=radflow-nats-${node}`,
            "--cluster_name=radflow",
            `--cluster=nats://127.0.0.1:${me.route}`,
            `--routes=${Array.from({ length: n }, (_, i) => i + 1)
              .filter((k) => k !== node)
              .map((k) => `nats://127.0.0.1:${natsNodePorts(o.portBase, k).route}`)
              .join(",")}`,
          ];
    start(o, bin, natsComponent(node), [
      "--jetstream",
      `--store_dir=${store}`,
      "--addr=127.0.0.1",
      `--port=${me.client}`,
      `--http_port=${me.monitor}`,
      ...cluster,
    ]);
  }
}

/**
 * Only NATS, in a directory of its own: a JetStream cluster of `natsNodes` nodes next to a
 * Kubernetes cluster that runs elsewhere (the NATS storm test). `down(o)` stops it.
 */
export async function upNats(o: ClusterOptions): Promise<string> {
  if (existsSync(o.dir)) await down(o);
  const { etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok, ...natsPorts } = usedPorts(o);
  for (const [name, port] of Object.entries(natsPorts)) {
    if (!(await portFree(port))) throw new Error(`cluster: port ${port} (${name}) is in use by another program`);
  }
  const bin = buildTools(o.quiet, ["nats-server"]);
  for (const d of ["pids", "logs"]) mkdirSync(path.join(o.dir, d), { recursive: true });
  writeFileSync(path.join(o.dir, "options.json"), JSON.stringify({ natsNodes: natsNodes(o), natsOnly: true }));
  try {
    startNats(o, bin);
    for (let node = 1; node <= natsNodes(o); node++) await waitHealthy(o, natsComponent(node), 60_000);
  } catch (e) {
    await stopAll(o);
    throw e;
  }
  return clusterEnv(o).RADFLOW_NATS_URL;
}

async function startAll(o: ClusterOptions, bin: string) {
  const p = ports(o.portBase);
  const t0 = Date.now();
  for (const d of ["pids", "logs", "pki", "nats", "scheduler", "kcm"])
    mkdirSync(path.join(o.dir, d), { recursive: true });
  writeFileSync(
    path.join(o.dir, "options.json"),
    JSON.stringify({ natsNodes: natsNodes(o), realNode: o.realNode === true }),
  );
  // etcd's data lives on tmpfs where there is one: tests want speed, not durability.
  const etcdData = existsSync("/dev/shm")
    ? path.join("/dev/shm", `radflow-etcd-${o.portBase}`)
    : path.join(o.dir, "etcd");
  writeFileSync(path.join(o.dir, "etcd-data-dir"), etcdData);
  rmSync(etcdData, { recursive: true, force: true });
  makePki(path.join(o.dir, "pki"));
  writeKubeconfig(o);
  const pki = (f: string) => path.join(o.dir, "pki", f);
  const kubeconfig = clusterEnv(o).KUBECONFIG;

  start(o, bin, "etcd", [
    "--name=radflow",
    `--data-dir=${etcdData}`,
    `--listen-client-urls=http://127.0.0.1:${p.etcd}`,
    `--advertise-client-urls=http://127.0.0.1:${p.etcd}`,
    `--listen-peer-urls=http://127.0.0.1:${p.etcdPeer}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${p.etcdPeer}`,
    `--initial-cluster=radflow=http://127.0.0.1:${p.etcdPeer}`,
    "--unsafe-no-fsync",
    "--quota-backend-bytes=4294967296",
    "--log-level=warn",
  ]);
  startNats(o, bin);
  await waitHealthy(o, "etcd", 30_000);
  start(o, bin, "kube-apiserver", [
    `--etcd-servers=http://127.0.0.1:${p.etcd}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${p.apiserver}`,
    `--tls-cert-file=${pki("apiserver.crt")}`,
    `--tls-private-key-file=${pki("apiserver.key")}`,
    `--client-ca-file=${pki("ca.crt")}`,
    "--authorization-mode=RBAC",
    "--service-account-issuer=https://kubernetes.default.svc",
    `--service-account-key-file=${pki("sa.pub")}`,
    `--service-account-signing-key-file=${pki("sa.key")}`,
    "--service-cluster-ip-range=10.96.0.0/16",
    "--allow-privileged=true",
    // A test cluster serves bursts from tests and benchmarks; lift the default in-flight caps.
    "--max-requests-inflight=2000",
    "--max-mutating-requests-inflight=1000",
    "--enable-priority-and-fairness=false",
    // /debug/pprof: the benchmark reads where the API server's CPU goes (idle handlers otherwise)
    "--profiling=true",
    "--v=0",
  ]);
  await waitHealthy(o, "kube-apiserver", 90_000);
  start(o, bin, "kube-controller-manager", [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${p.controllerManager}`,
    `--cert-dir=${path.join(o.dir, "kcm")}`,
    "--leader-elect=false",
    "--controllers=*",
    `--service-account-private-key-file=${pki("sa.key")}`,
    `--root-ca-file=${pki("ca.crt")}`,
    "--use-service-account-credentials=false",
    "--kube-api-qps=200",
    "--kube-api-burst=400",
    "--concurrent-job-syncs=10",
    "--concurrent-gc-syncs=20",
    // the memory benchmark keeps 20,000 finished studies, pods included: the default (12,500)
    // would have pod GC delete the oldest while they are being counted
    "--terminated-pod-gc-threshold=50000",
    "--v=0",
  ]);
  start(o, bin, "kube-scheduler", [
    `--kubeconfig=${kubeconfig}`,
    `--authentication-kubeconfig=${kubeconfig}`,
    `--authorization-kubeconfig=${kubeconfig}`,
    "--bind-address=127.0.0.1",
    `--secure-port=${p.scheduler}`,
    `--cert-dir=${path.join(o.dir, "scheduler")}`,
    "--leader-elect=false",
    "--kube-api-qps=200",
    "--kube-api-burst=400",
    "--v=0",
  ]);
  writeFileSync(
    path.join(o.dir, "kwok.yaml"),
    `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  nodeLeaseDurationSeconds: 40
  # a config file skips KWOK's defaulting: set every parallelism explicitly
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 4
  cidr: 10.0.0.1/16
  nodeIP: 10.0.0.1
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
  serverAddress: 127.0.0.1:${p.kwok}
---
${readFileSync(path.join(hackDir, "kwok-stages.yaml"), "utf8")}`,
  );
  start(o, bin, "kwok", [`--kubeconfig=${kubeconfig}`, `--config=${path.join(o.dir, "kwok.yaml")}`]);
  // each component's own health, so that one that could not start (a port taken, a bad flag) is
  // named with its log rather than found later as pods that stay Pending
  for (const c of ["kube-controller-manager", "kube-scheduler", "kwok"] as const) await waitHealthy(o, c, 60_000);
  await waitFor(
    "the default ServiceAccount (controller-manager is up)",
    60_000,
    async () => (await httpsGet(o, "/api/v1/namespaces/default/serviceaccounts/default")).status === 200,
    o,
  );
  kubectl(o, bin, ["apply", "-f", "-"], nodesYaml());
  await waitFor(
    "the three KWOK nodes to be Ready",
    60_000,
    async () => {
      const nodes = JSON.parse((await httpsGet(o, "/api/v1/nodes")).body) as {
        items: { status?: { conditions?: { type: string; status: string }[] } }[];
      };
      const ready = nodes.items.filter((n) =>
        n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
      );
      return ready.length === 3;
    },
    o,
  );
  if (o.realNode) {
    await startRealNode(
      o.dir,
      bin,
      kubeconfig,
      { apiserver: p.apiserver, nats: p.nats },
      {
        start: (c, args) => start(o, bin, c, args),
        waitHealthy: (c, ms) => waitHealthy(o, c, ms),
        get: async (urlPath) => {
          const r = await httpsGet(o, urlPath);
          if (r.status !== 200) throw new Error(`${urlPath}: ${r.status}`);
          return JSON.parse(r.body);
        },
        log: (msg) => log(o, msg),
      },
    );
  }
  for (let node = 1; node <= natsNodes(o); node++) await waitHealthy(o, natsComponent(node), 60_000);
  // a last look at all of them: one may have died after it was found healthy
  const late = await problems(o);
  if (late.length > 0) throw new Error(`cluster: ${late.map((x) => x.problem).join("\n")}`);
  log(o, `up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** Stops every component that has a pid file (whatever options it was started with). */
async function stopAll(o: ClusterOptions): Promise<void> {
  const pidDir = path.join(o.dir, "pids");
  const started = existsSync(pidDir)
    ? readdirSync(pidDir)
        .filter((f) => f.endsWith(".pid"))
        .map((f) => f.slice(0, -".pid".length))
    : [];
  // reverse start order: clients before the API server, the API server before etcd; anything
  // else with a pid file here (the demo's operator) first of all
  // (the kubelet before containerd, so that it does not restart containers containerd is leaving)
  const order = [...components, ...extraNatsNodes, ...realNodeComponents] as string[];
  const rank = (c: string) => (order.includes(c) ? order.indexOf(c) : order.length);
  started.sort((a, b) => rank(b) - rank(a));
  for (const c of started) {
    const pid = readPid(o, c);
    if (!alive(pid)) continue;
    try {
      process.kill(-(pid as number), "SIGTERM");
    } catch {
      process.kill(pid as number, "SIGTERM");
    }
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await sleep(100);
    if (alive(pid)) process.kill(pid as number, "SIGKILL");
    log(o, `stopped ${c}`);
  }
}

export async function down(o: ClusterOptions): Promise<void> {
  await stopAll(o);
  // the real node's pods, mounts, network and cgroups, before the folder goes: never remove a
  // folder that still has something mounted in it
  const left = await cleanRealNode(o.dir);
  if (left.some((l) => l.startsWith("mount "))) {
    throw new Error(
      `cluster: could not unmount everything the real node mounted; kept ${o.dir}:\n  ${left.join("\n  ")}`,
    );
  }
  if (left.length > 0) log(o, `left behind (busy): ${left.join(", ")}`);
  const dataDirFile = path.join(o.dir, "etcd-data-dir");
  if (existsSync(dataDirFile)) rmSync(readFileSync(dataDirFile, "utf8").trim(), { recursive: true, force: true });
  rmSync(o.dir, { recursive: true, force: true });
}

/** Kills one component at once (SIGKILL: a crash, or a node lost), without starting it again. */
export async function kill(o: ClusterOptions, c: Component): Promise<void> {
  const pid = readPid(o, c);
  if (!alive(pid)) throw new Error(`cluster: ${c} is not running`);
  process.kill(pid as number, "SIGKILL");
  const deadline = Date.now() + 10_000;
  while (alive(pid) && Date.now() < deadline) await sleep(50);
}

/**
 * Stops one component and starts it again with the same arguments (tests: "nats-server
 * restarted mid-stream"). Resolves once the new process is listening again.
 */
export async function restart(o: ClusterOptions, c: Component, downMs = 0): Promise<void> {
  const pid = readPid(o, c);
  if (alive(pid)) {
    process.kill(pid as number, "SIGTERM");
    const deadline = Date.now() + 15_000;
    while (alive(pid) && Date.now() < deadline) await sleep(50);
    if (alive(pid)) process.kill(pid as number, "SIGKILL");
  }
  await sleep(downMs);
  const { bin, args } = JSON.parse(readFileSync(path.join(o.dir, "pids", `${c}.args.json`), "utf8")) as {
    bin: string;
    args: string[];
  };
  start(o, bin, c, args);
  await waitHealthy(o, c, 90_000);
}

/** Freezes a component (SIGSTOP) for `ms`, then lets it run on: an unreachable peer, not a dead one. */
export async function pause(o: ClusterOptions, c: Component, ms: number): Promise<void> {
  const pid = readPid(o, c);
  if (!alive(pid)) throw new Error(`cluster: ${c} is not running`);
  process.kill(pid as number, "SIGSTOP");
  try {
    await sleep(ms);
  } finally {
    process.kill(pid as number, "SIGCONT");
  }
}

export interface ClusterStatus {
  /** a line per component and node, then the environment */
  text: string;
  /** every component running and healthy */
  ok: boolean;
}

/** Each component (running and healthy, or what is wrong with the end of its log) and the nodes. */
export async function status(o: ClusterOptions): Promise<ClusterStatus> {
  const rec = recordedOptions(o);
  const found = await problems(rec);
  const lines = componentsOf(rec).map((c) => {
    const f = found.find((x) => x.component === c);
    if (!f) return `${c.padEnd(24)} running (pid ${readPid(rec, c)}), healthy`;
    const detail = f.problem.split("\n");
    return [`${c.padEnd(24)} ${f.running ? "UNHEALTHY" : "NOT RUNNING"}: ${detail[0]}`, ...detail.slice(1)].join("\n");
  });
  if (!existsSync(path.join(rec.dir, "pids")) || readdirSync(path.join(rec.dir, "pids")).length === 0) {
    return { text: `no cluster in ${rec.dir} (hack/cluster up starts one)`, ok: false };
  }
  if (!found.some((f) => f.component === "kube-apiserver") && existsSync(path.join(rec.dir, "pki"))) {
    try {
      const nodes = JSON.parse((await httpsGet(rec, "/api/v1/nodes")).body) as {
        items: {
          metadata: { name: string; labels?: Record<string, string> };
          status?: { allocatable?: Record<string, string> };
        }[];
      };
      for (const n of nodes.items) {
        const gpu = n.status?.allocatable?.["nvidia.com/gpu"];
        const product = n.metadata.labels?.["nvidia.com/gpu.product"];
        lines.push(`node ${n.metadata.name.padEnd(19)} ${gpu ? `${gpu} GPU (${product})` : "CPU only"}`);
      }
    } catch (e) {
      lines.push(`nodes: could not list them (${(e as Error).message})`);
    }
  }
  const env = clusterEnv(rec);
  lines.push(`KUBECONFIG=${env.KUBECONFIG}`, `RADFLOW_NATS_URL=${env.RADFLOW_NATS_URL}`);
  if (found.length > 0)
    lines.push(`cluster: ${found.length} component(s) not well; \`hack/cluster up\` starts dead ones again`);
  return { text: lines.join("\n"), ok: found.length === 0 };
}

async function main(argv: string[]) {
  const o = defaultOptions();
  switch (argv[0]) {
    case "up": {
      if (argv.includes("--nats-cluster")) o.natsNodes = 3;
      if (argv.includes("--real-node")) o.realNode = true;
      await up(o);
      const s = await status(o);
      console.log(s.text);
      process.exitCode = s.ok ? 0 : 1;
      break;
    }
    case "down":
      await down(o);
      break;
    case "status": {
      const s = await status(o);
      console.log(s.text);
      process.exitCode = s.ok ? 0 : 1;
      break;
    }
    case "env": {
      const env = clusterEnv(recordedOptions(o));
      console.log(`export KUBECONFIG=${env.KUBECONFIG}\nexport RADFLOW_NATS_URL=${env.RADFLOW_NATS_URL}`);
      break;
    }
    case "images": {
      // hack/cluster images load <oci tar…>: into the real node's containerd (imagePullPolicy Never)
      const rec = recordedOptions(o);
      if (argv[1] !== "load" || argv.length < 3 || !rec.realNode) {
        console.error("usage: hack/cluster images load <image.oci.tar…>  (a cluster up with --real-node)");
        process.exitCode = 2;
        break;
      }
      loadImages(rec.dir, buildTools(true, realNodeTools), argv.slice(2));
      break;
    }
    default:
      console.error("usage: hack/cluster up [--nats-cluster] [--real-node] | down | status | env | images load <tar…>");
      process.exitCode = 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
