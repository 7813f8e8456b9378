// A real local control plane on loopback, for tests, the demo and the benchmarks:
// etcd, kube-apiserver (RBAC, service-account signing), kube-controller-manager (Job controller,
// garbage collector, namespace controller, …), kube-scheduler, KWOK with three fake nodes (two
// GPU nodes with distinct products, one CPU-only) and nats-server with JetStream.
// Every binary is built from the Go module proxy by hack/tools/build.sh.
//
//   hack/cluster up | down | status | env
//
// Environment: RADFLOW_CLUSTER_DIR (state, default /tmp/radflow-cluster), RADFLOW_PORT_BASE
// (default 36400; eight consecutive ports are used), RADFLOW_CACHE (the tools cache).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import net from "node:net";
import { homedir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const hackDir = path.dirname(fileURLToPath(import.meta.url));

export interface ClusterOptions {
  dir: string;
  portBase: number;
  quiet?: boolean;
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
export type Component = (typeof components)[number];

export function defaultOptions(env: NodeJS.ProcessEnv = process.env): ClusterOptions {
  return {
    dir: env.RADFLOW_CLUSTER_DIR ?? "/tmp/radflow-cluster",
    portBase: Number(env.RADFLOW_PORT_BASE ?? 36400),
  };
}

function ports(base: number) {
  return {
    etcd: base,
    etcdPeer: base + 1,
    apiserver: base + 2,
    controllerManager: base + 3,
    scheduler: base + 4,
    nats: base + 5,
    natsMonitor: base + 6,
    kwok: base + 7,
  };
}

export function clusterEnv(o: ClusterOptions): ClusterEnv {
  return {
    KUBECONFIG: path.join(o.dir, "kubeconfig"),
    RADFLOW_NATS_URL: `nats://127.0.0.1:${ports(o.portBase).nats}`,
  };
}

function log(o: ClusterOptions, msg: string) {
  if (!o.quiet) process.stderr.write(`cluster: ${msg}\n`);
}

function pidFile(o: ClusterOptions, c: Component) {
  return path.join(o.dir, "pids", `${c}.pid`);
}

function readPid(o: ClusterOptions, c: Component): number | undefined {
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

function start(o: ClusterOptions, bin: string, c: Component, args: string[]) {
  const logFile = path.join(o.dir, "logs", `${c}.log`);
  const fd = openSync(logFile, "a");
  // detached: the components outlive `hack/cluster up` and form their own process group
  const child = spawn(path.join(bin, c), args, { detached: true, stdio: ["ignore", fd, fd] });
  child.unref();
  writeFileSync(pidFile(o, c), String(child.pid));
  writeFileSync(path.join(o.dir, "pids", `${c}.args.json`), JSON.stringify({ bin, args }));
  log(o, `started ${c} (pid ${child.pid}, log ${logFile})`);
}

function httpsGet(o: ClusterOptions, urlPath: string): Promise<{ status: number; body: string }> {
  const pki = path.join(o.dir, "pki");
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: ports(o.portBase).apiserver,
        path: urlPath,
        ca: readFileSync(path.join(pki, "ca.crt")),
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

export async function isUp(o: ClusterOptions): Promise<boolean> {
  if (!components.every((c) => alive(readPid(o, c)))) return false;
  try {
    return (await httpsGet(o, "/readyz")).status === 200;
  } catch {
    return false;
  }
}

export async function up(o: ClusterOptions): Promise<ClusterEnv> {
  if (await isUp(o)) {
    log(o, `already up (${o.dir})`);
    return clusterEnv(o);
  }
  if (existsSync(o.dir)) {
    log(o, `found a stale earlier run in ${o.dir}; cleaning it up`);
    await down(o);
  }
  const p = ports(o.portBase);
  for (const [name, port] of Object.entries(p)) {
    if (!(await portFree(port))) {
      throw new Error(
        `cluster: port ${port} (${name}) is in use by another program; set RADFLOW_PORT_BASE to another base (8 ports are used)`,
      );
    }
  }
  const bin = buildTools(o.quiet);
  const t0 = Date.now();
  for (const d of ["pids", "logs", "pki", "nats", "scheduler", "kcm"])
    mkdirSync(path.join(o.dir, d), { recursive: true });
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
  start(o, bin, "nats-server", [
    "--jetstream",
    `--store_dir=${path.join(o.dir, "nats")}`,
    "--addr=127.0.0.1",
    `--port=${p.nats}`,
    `--http_port=${p.natsMonitor}`,
    "--server_name=radflow-local",
  ]);
  await waitFor("etcd to answer /health", 30_000, async () => (await fetch(`http://127.0.0.1:${p.etcd}/health`)).ok, o);
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
    "--profiling=false",
    "--v=0",
  ]);
  await waitFor("kube-apiserver /readyz", 90_000, async () => (await httpsGet(o, "/readyz")).status === 200, o);
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
  await waitFor(
    "nats-server JetStream",
    30_000,
    async () => (await fetch(`http://127.0.0.1:${p.natsMonitor}/healthz?js-enabled-only=true`)).ok,
    o,
  );
  log(o, `up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return clusterEnv(o);
}

export async function down(o: ClusterOptions): Promise<void> {
  // reverse order: clients before the API server, the API server before etcd
  for (const c of [...components].reverse()) {
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
  const dataDirFile = path.join(o.dir, "etcd-data-dir");
  if (existsSync(dataDirFile)) rmSync(readFileSync(dataDirFile, "utf8").trim(), { recursive: true, force: true });
  rmSync(o.dir, { recursive: true, force: true });
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
  const p = ports(o.portBase);
  if (c === "nats-server") {
    await waitFor(
      "nats-server to answer again",
      30_000,
      async () => (await fetch(`http://127.0.0.1:${p.natsMonitor}/healthz`)).ok,
      o,
    );
  } else if (c === "kube-apiserver") {
    await waitFor("kube-apiserver /readyz again", 90_000, async () => (await httpsGet(o, "/readyz")).status === 200, o);
  }
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

export async function status(o: ClusterOptions): Promise<string> {
  const lines = components.map((c) => {
    const pid = readPid(o, c);
    return `${c.padEnd(24)} ${alive(pid) ? `running (pid ${pid})` : "stopped"}`;
  });
  let ready = "unreachable";
  try {
    const r = await httpsGet(o, "/readyz");
    ready = r.status === 200 ? "ready" : `not ready (${r.status})`;
  } catch {}
  lines.push(`${"api server".padEnd(24)} ${ready}`);
  if (ready === "ready") {
    const nodes = JSON.parse((await httpsGet(o, "/api/v1/nodes")).body) as {
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
  }
  const env = clusterEnv(o);
  lines.push(`KUBECONFIG=${env.KUBECONFIG}`, `RADFLOW_NATS_URL=${env.RADFLOW_NATS_URL}`);
  return lines.join("\n");
}

async function main(argv: string[]) {
  const o = defaultOptions();
  switch (argv[0]) {
    case "up":
      await up(o);
      console.log(await status(o));
      break;
    case "down":
      await down(o);
      break;
    case "status":
      console.log(await status(o));
      process.exitCode = (await isUp(o)) ? 0 : 1;
      break;
    case "env": {
      const env = clusterEnv(o);
      console.log(`export KUBECONFIG=${env.KUBECONFIG}\nexport RADFLOW_NATS_URL=${env.RADFLOW_NATS_URL}`);
      break;
    }
    default:
      console.error("usage: hack/cluster up | down | status | env");
      process.exitCode = 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
