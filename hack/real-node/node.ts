// A real node for the local cluster (hack/cluster up --real-node): containerd + runc + CNI bridge
// and a kubelet registered with the cluster's API server, next to KWOK's fake GPU nodes. Pods
// really run here: images, security contexts, volumes and termination messages are enforced by
// the same parts as on a hospital's cluster.
//
// Written for the machine the tests run on: Linux with cgroup v1 hierarchies we may write, root
// without CAP_SYS_RESOURCE, no systemd, no iptables, nothing but loopback reachable. Everything
// lives in the cluster's folder except what containerd, the kubelet and CNI put elsewhere
// regardless (shim sockets in /run/containerd/s, the device manager's socket in
// /var/lib/kubelet/device-plugins, libcni's cache in /var/lib/cni/results, the bridge, the
// cgroups); `hack/cluster down` removes those too.
//
// One real node per machine: its ports are fixed (24600–24602 unless RADFLOW_REAL_NODE_PORT_BASE)
// and an owner file in /run says which cluster folder holds it.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { hostname } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildPauseImage, buildProbeImages, imagesDir, PAUSE_IMAGE } from "./images.ts";

const here = path.dirname(fileURLToPath(import.meta.url));

export const realNodeComponents = ["service-proxy", "containerd", "kubelet"] as const;
export type RealNodeComponent = (typeof realNodeComponents)[number];

/** The label the real node carries; a step targets it with resources.nodeSelector. */
export const REAL_NODE_LABEL = "radflow.io/real-node";
const CGROUP_ROOT = "/radflow-node";
const BRIDGE = "radflow0";
const SUBNET = "10.89.0.0/24";
/** The bridge's own address: pods reach the machine's loopback services here (service-proxy.ts). */
export const NODE_GATEWAY = "10.89.0.1";
/** The `kubernetes` Service's address (first of the API server's service range, in its certificate). */
const API_SERVICE_IP = "10.96.0.1";
const CNI_NETWORK = "radflow-node";
const OWNER_FILE = "/run/radflow-real-node.owner";
/** containerd 2 always puts shim sockets here, whatever its state directory. */
const SHIM_SOCKET_DIR = "/run/containerd/s";

export function realNodePorts(env: NodeJS.ProcessEnv = process.env) {
  const base = Number(env.RADFLOW_REAL_NODE_PORT_BASE ?? 24600);
  return { kubelet: base, healthz: base + 1, stream: base + 2 };
}

/** The node's name: the machine's hostname, which the API server resolves to reach the kubelet (logs). */
export function realNodeName(): string {
  return hostname().toLowerCase();
}

const paths = (dir: string) => ({
  containerd: path.join(dir, "containerd"),
  socket: path.join(dir, "containerd", "containerd.sock"),
  config: path.join(dir, "containerd", "config.toml"),
  kubelet: path.join(dir, "kubelet"),
  kubeletRoot: path.join(dir, "kubelet", "root"),
  kubeletConfig: path.join(dir, "kubelet", "config.yaml"),
  cni: path.join(dir, "cni"),
});

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (m, k: string) => values[k] ?? m);
}

/** The cgroup v1 hierarchies of this machine (and the v2 one of a hybrid setup). */
function cgroupMounts(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => {
      const sep = f.indexOf("-");
      return sep > 0 && (f[sep + 1] === "cgroup" || f[sep + 1] === "cgroup2");
    })
    .map((f) => f[4] as string);
}

/**
 * What the machine must offer, checked before anything starts, each as one line that says what
 * is missing. Empty: a real node can run here.
 */
export function realNodeRequirements(bin: string): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (the kubelet mounts volumes, runc makes namespaces)");
  if (process.platform !== "linux") missing.push("Linux");
  for (const b of [
    "containerd",
    "ctr",
    "containerd-shim-runc-v2",
    "runc",
    "kubelet",
    "bridge",
    "host-local",
    "loopback",
  ]) {
    if (!existsSync(path.join(bin, b))) missing.push(`${b} in ${bin} (hack/tools/build.sh)`);
  }
  for (const cmd of ["gcc", "ip", "mount", "umount", "tar"]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0) missing.push(`the ${cmd} command`);
  }
  if (cgroupMounts().length === 0) missing.push("mounted cgroup hierarchies");
  return missing;
}

/** The owner of the machine's real node (a cluster folder), if one runs. */
function owner(): string | undefined {
  try {
    return readFileSync(OWNER_FILE, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether overlayfs mounts in this folder (some sandboxes refuse it; containerd then copies layers). */
function overlayWorks(dir: string): boolean {
  const t = path.join(dir, "overlay-check");
  for (const d of ["lower", "upper", "work", "merged"]) mkdirSync(path.join(t, d), { recursive: true });
  const r = spawnSync("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `lowerdir=${t}/lower,upperdir=${t}/upper,workdir=${t}/work`,
    `${t}/merged`,
  ]);
  if (r.status === 0) spawnSync("umount", [`${t}/merged`]);
  rmSync(t, { recursive: true, force: true });
  return r.status === 0;
}

/** A cgroup of the node's own in every hierarchy: the kubelet's cgroupRoot must exist in all. */
function makeCgroupRoot(): void {
  for (const m of cgroupMounts()) {
    const d = path.join(m, CGROUP_ROOT);
    mkdirSync(d, { recursive: true });
    // a new cpuset cgroup starts with no CPUs and no memory nodes: give it its parent's
    if (existsSync(path.join(m, "cpuset.cpus"))) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        const cur = readFileSync(path.join(d, f), "utf8").trim();
        if (!cur) writeFileSync(path.join(d, f), readFileSync(path.join(m, f), "utf8"));
      }
    }
  }
}

export interface NodeHooks {
  /** starts a component as the cluster starts its others (pid file, log, detached) */
  start(c: RealNodeComponent, args: string[]): void;
  waitHealthy(c: RealNodeComponent, timeoutMs: number): Promise<void>;
  /** GET on the API server, parsed JSON */
  get(urlPath: string): Promise<unknown>;
  log(msg: string): void;
}

/** Images imported at every start: the sandbox, the test probes, and the project's own when built. */
export function defaultImageTars(): string[] {
  const own = ["radflow", "example-model"].map((n) => path.join(imagesDir(), `${n}.oci.tar`)).filter(existsSync);
  const probes = buildProbeImages();
  return [buildPauseImage(), probes.probe, probes.probeRoot, ...own];
}

/** Imports OCI image-layout tars into the node's containerd (the namespace the CRI reads). */
export function loadImages(dir: string, bin: string, tars: string[]): void {
  const p = paths(dir);
  const snapshotter = readFileSync(path.join(p.containerd, "snapshotter"), "utf8").trim();
  for (const tar of tars) {
    execFileSync(
      path.join(bin, "ctr"),
      ["--address", p.socket, "-n", "k8s.io", "images", "import", "--snapshotter", snapshotter, tar],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
  }
}

/** The node's containerd config, KubeletConfiguration and CNI conflist, from the templates here. */
export function nodeConfigs(
  dir: string,
  bin: string,
  snapshotter: "overlayfs" | "native",
): { containerd: string; kubelet: string; cni: string } {
  const ports = realNodePorts();
  const values = {
    DIR: dir,
    BIN: bin,
    SNAPSHOTTER: snapshotter,
    PAUSE_IMAGE,
    STREAM_PORT: String(ports.stream),
    KUBELET_PORT: String(ports.kubelet),
    HEALTHZ_PORT: String(ports.healthz),
    CGROUP_ROOT,
    BRIDGE,
    SUBNET,
  };
  const tpl = (f: string) => fill(readFileSync(path.join(here, f), "utf8"), values);
  return { containerd: tpl("containerd.toml"), kubelet: tpl("kubelet.yaml.in"), cni: tpl("cni.conflist") };
}

/** Starts containerd and the kubelet and waits until the node is Ready. */
export async function startRealNode(
  dir: string,
  bin: string,
  kubeconfig: string,
  loopback: { apiserver: number; nats: number },
  hooks: NodeHooks,
): Promise<void> {
  const t0 = Date.now();
  const missing = realNodeRequirements(bin);
  if (missing.length > 0) throw new Error(`cluster: a real node needs ${missing.join("; ")}`);
  const held = owner();
  if (held && held !== dir && existsSync(held)) {
    throw new Error(
      `cluster: this machine's real node belongs to the cluster in ${held}; hack/cluster down that one first`,
    );
  }
  writeFileSync(OWNER_FILE, dir);
  const p = paths(dir);
  for (const d of [p.containerd, p.kubeletRoot, path.join(p.kubelet, "pod-logs"), path.join(p.cni, "net.d")]) {
    mkdirSync(d, { recursive: true });
  }
  const snapshotter = overlayWorks(dir) ? "overlayfs" : "native";
  if (snapshotter === "native") hooks.log("overlayfs refused here: containerd uses the native snapshotter (copies)");
  writeFileSync(path.join(p.containerd, "snapshotter"), snapshotter);
  const configs = nodeConfigs(dir, bin, snapshotter);
  writeFileSync(p.config, configs.containerd);
  writeFileSync(p.kubeletConfig, configs.kubelet);
  writeFileSync(path.join(p.cni, "net.d", "10-radflow.conflist"), configs.cni);
  makeCgroupRoot();
  // the bridge before the first pod (the bridge plugin takes it as it is), with the API server's
  // Service address, so that pods reach the API server and NATS through service-proxy.ts
  if (spawnSync("ip", ["link", "show", BRIDGE], { stdio: "ignore" }).status !== 0) {
    execFileSync("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  }
  spawnSync("ip", ["addr", "add", `${NODE_GATEWAY}/24`, "dev", BRIDGE], { stdio: "ignore" });
  spawnSync("ip", ["addr", "add", `${API_SERVICE_IP}/32`, "dev", BRIDGE], { stdio: "ignore" });
  execFileSync("ip", ["link", "set", BRIDGE, "up"]);
  hooks.start("service-proxy", [
    path.join(here, "service-proxy.ts"),
    `${API_SERVICE_IP}:443=${loopback.apiserver}`,
    `${NODE_GATEWAY}:${loopback.nats}=${loopback.nats}`,
  ]);
  await hooks.waitHealthy("service-proxy", 30_000);

  hooks.start("containerd", [`--config=${p.config}`]);
  await hooks.waitHealthy("containerd", 60_000);
  const tars = defaultImageTars();
  loadImages(dir, bin, tars);
  hooks.log(`imported ${tars.length} image(s) into the real node's containerd`);

  hooks.start("kubelet", [
    `--config=${p.kubeletConfig}`,
    `--kubeconfig=${kubeconfig}`,
    `--root-dir=${p.kubeletRoot}`,
    `--cert-dir=${path.join(p.kubelet, "pki")}`,
    `--hostname-override=${realNodeName()}`,
    `--node-labels=${REAL_NODE_LABEL}=true`,
    "--v=1",
  ]);
  await hooks.waitHealthy("kubelet", 90_000);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const node = (await hooks.get(`/api/v1/nodes/${realNodeName()}`).catch(() => undefined)) as
      | { status?: { conditions?: { type: string; status: string; message?: string }[] } }
      | undefined;
    const ready = node?.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "True") break;
    if (Date.now() > deadline) {
      throw new Error(
        `cluster: the real node ${realNodeName()} is not Ready after 120 s (${ready?.message ?? "not registered"}); logs in ${path.join(dir, "logs")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  hooks.log(
    `real node ${realNodeName()} Ready ${((Date.now() - t0) / 1000).toFixed(1)} s after start (${snapshotter})`,
  );
}

/** containerd accepts connections on its socket; the kubelet's /healthz says ok. "" when healthy. */
export async function realNodeHealth(dir: string, c: RealNodeComponent): Promise<string> {
  if (c === "containerd" || c === "service-proxy") {
    const sock = paths(dir).socket;
    return new Promise((resolve) => {
      const s = c === "containerd" ? net.connect(sock) : net.connect(443, API_SERVICE_IP);
      const done = (why: string) => {
        s.destroy();
        resolve(why);
      };
      const what = c === "containerd" ? sock : `${API_SERVICE_IP}:443`;
      s.setTimeout(2000, () => done(`${what}: no answer`));
      s.once("connect", () => done(""));
      s.once("error", (e: Error & { code?: string }) => done(`${what}: ${e.code ?? e.message}`));
    });
  }
  const url = `http://127.0.0.1:${realNodePorts().healthz}/healthz`;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return r.ok ? "" : `${url} answered ${r.status}`;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return `${url} not answering (${err.cause?.code ?? err.message})`;
  }
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Processes in the node's cgroups: the pods' containers and sandboxes. */
function cgroupPids(): number[] {
  const out = new Set<number>();
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    try {
      for (const l of readFileSync(path.join(d, "cgroup.procs"), "utf8").split("\n")) if (l) out.add(Number(l));
    } catch {
      // not a cgroup directory
    }
    for (const e of entries) {
      const sub = path.join(d, e);
      try {
        if (statSync(sub).isDirectory()) walk(sub);
      } catch {
        // removed meanwhile
      }
    }
  };
  for (const m of cgroupMounts()) walk(path.join(m, CGROUP_ROOT));
  return [...out];
}

/** containerd-shim-runc-v2 processes started by this node's containerd (their -address is its socket). */
function shimPids(dir: string): number[] {
  const sock = paths(dir).socket;
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (path.basename(argv[0] ?? "") === "containerd-shim-runc-v2" && argv.includes(sock)) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Mount points under these prefixes, deepest first. */
function mountsUnder(prefixes: string[]): string[] {
  const octal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => octal(l.split(" ")[4] ?? ""))
    .filter((m) => m && prefixes.some((p) => m === p || m.startsWith(`${p}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Removes a folder tree's empty folders, deepest first (files, and so their folders, stay). */
function removeEmptyDirs(d: string): void {
  let entries: string[];
  try {
    entries = readdirSync(d);
  } catch {
    return;
  }
  for (const e of entries) {
    try {
      if (statSync(path.join(d, e)).isDirectory()) removeEmptyDirs(path.join(d, e));
    } catch {
      // gone meanwhile
    }
  }
  try {
    rmdirSync(d);
  } catch {
    // not empty
  }
}

function removeCgroups(): void {
  const rmTree = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const sub = path.join(d, e);
      try {
        if (statSync(sub).isDirectory()) rmTree(sub);
      } catch {
        // gone
      }
    }
    try {
      rmdirSync(d);
    } catch {
      // still busy: reported by the caller's check
    }
  };
  for (const m of cgroupMounts()) rmTree(path.join(m, CGROUP_ROOT));
}

/**
 * Removes what the real node made outside its processes, after `stopAll` stopped the kubelet and
 * containerd: the pods' processes and shims, their mounts, network namespaces, the bridge, CNI
 * state, shim sockets and cgroups. Only this cluster's: the owner file names the folder.
 */
export async function cleanRealNode(dir: string): Promise<string[]> {
  if (!existsSync(paths(dir).containerd) && owner() !== dir) return [];
  const mine = owner() === dir || owner() === undefined;
  // containers first (their shims would report their deaths), then the shims
  for (let i = 0; i < 3; i++) {
    const pids = cgroupPids();
    if (pids.length === 0) break;
    killPids(pids);
    await new Promise((r) => setTimeout(r, 300));
  }
  killPids(shimPids(dir));
  await new Promise((r) => setTimeout(r, 200));
  const netns = mine
    ? readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith("/run/netns/cni-") || m.startsWith("/var/run/netns/cni-"))
    : [];
  const leftovers: string[] = [];
  for (const m of [...mountsUnder([dir]), ...netns]) {
    const r = spawnSync("umount", ["--lazy", m], { encoding: "utf8" });
    if (r.status !== 0) leftovers.push(`mount ${m}: ${r.stderr.trim()}`);
  }
  if (mine) {
    for (const d of ["/run/netns", "/var/run/netns"]) {
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d)) if (f.startsWith("cni-")) rmSync(path.join(d, f), { force: true });
    }
    const results = "/var/lib/cni/results";
    if (existsSync(results)) {
      for (const f of readdirSync(results))
        if (f.startsWith(`${CNI_NETWORK}-`)) rmSync(path.join(results, f), { force: true });
    }
    spawnSync("ip", ["link", "delete", BRIDGE], { stdio: "ignore" });
    // shim sockets nobody listens on any more (their names are hashes; a live shim's is in /proc/net/unix)
    if (existsSync(SHIM_SOCKET_DIR)) {
      const bound = readFileSync("/proc/net/unix", "utf8");
      for (const f of readdirSync(SHIM_SOCKET_DIR)) {
        const sock = path.join(SHIM_SOCKET_DIR, f);
        if (!bound.includes(sock)) rmSync(sock, { force: true });
      }
    }
    // the folders the tools made on their own, where empty now (what holds a file is not ours to remove)
    // the kubelet's device manager keeps its socket and checkpoint in /var/lib/kubelet whatever --root-dir says
    for (const f of ["kubelet.sock", "kubelet_internal_checkpoint"]) {
      rmSync(path.join("/var/lib/kubelet/device-plugins", f), { force: true });
    }
    for (const d of ["/run/containerd", "/run/netns", "/var/lib/cni", "/var/lib/kubelet"]) removeEmptyDirs(d);
    removeCgroups();
    rmSync(OWNER_FILE, { force: true });
  }
  for (const m of cgroupMounts())
    if (existsSync(path.join(m, CGROUP_ROOT))) leftovers.push(`cgroup ${path.join(m, CGROUP_ROOT)}`);
  return leftovers;
}
