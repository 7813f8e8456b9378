// The real node's own images, built without Docker or a registry: the pod sandbox ("pause",
// compiled from the Kubernetes module's build/pause/linux/pause.c) and the test probe
// (hack/real-node/probe), each a one-layer OCI image-layout tar that `ctr images import` takes.
// Rebuilt only when their inputs change (a content hash in the tar's stamp file).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = path.dirname(fileURLToPath(import.meta.url));

export const PAUSE_IMAGE = "radflow.local/pause:3.10.1";
export const PROBE_IMAGE = "radflow.local/probe:dev";
/** The same probe without a user in its config: it runs as root unless the pod says otherwise. */
export const PROBE_ROOT_IMAGE = "radflow.local/probe-root:dev";

export function imagesDir(): string {
  const cache =
    process.env.RADFLOW_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "radflow");
  return path.join(cache, "images");
}

interface ImageConfig {
  Entrypoint: string[];
  Cmd?: string[];
  User?: string;
  Env?: string[];
  WorkingDir?: string;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/**
 * Packs a root filesystem folder as an OCI image layout tar at `out`: one gzip layer (entries
 * sorted, owned by root, mtime 0, so equal inputs give equal digests), the config, the manifest,
 * and index.json whose manifest names the image (`io.containerd.image.name`).
 */
export function writeOciImage(rootfs: string, name: string, config: ImageConfig, out: string): void {
  const layerTar = execFileSync(
    "tar",
    ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-C", rootfs, "-cf", "-", "."],
    { maxBuffer: 1 << 30 },
  );
  const layer = gzipSync(layerTar, { level: 9 });
  const cfg = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: config,
      rootfs: { type: "layers", diff_ids: [`sha256:${sha256(layerTar)}`] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "hack/real-node/images.ts" }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {
        mediaType: "application/vnd.oci.image.config.v1+json",
        digest: `sha256:${sha256(cfg)}`,
        size: cfg.length,
      },
      layers: [
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: `sha256:${sha256(layer)}`,
          size: layer.length,
        },
      ],
    }),
  );
  const index = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: `sha256:${sha256(manifest)}`,
        size: manifest.length,
        annotations: { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":").pop() },
      },
    ],
  };
  const stage = mkdtempSync(path.join(tmpdir(), "radflow-oci-"));
  try {
    const blobs = path.join(stage, "blobs", "sha256");
    mkdirSync(blobs, { recursive: true });
    for (const b of [layer, cfg, manifest]) writeFileSync(path.join(blobs, sha256(b)), b);
    writeFileSync(path.join(stage, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(path.join(stage, "index.json"), JSON.stringify(index));
    mkdirSync(path.dirname(out), { recursive: true });
    execFileSync("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C", stage, "-cf", `${out}.tmp`, "."]);
    execFileSync("mv", [`${out}.tmp`, out]);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Runs `build` unless `out` exists with the stamp of these inputs. */
function cached(out: string, inputs: (string | Buffer)[], build: () => void): string {
  const h = createHash("sha256");
  for (const i of inputs) h.update(i).update("\0");
  const key = h.digest("hex").slice(0, 16);
  const stamp = `${out}.stamp`;
  if (existsSync(out) && existsSync(stamp) && readFileSync(stamp, "utf8") === key) return out;
  build();
  writeFileSync(stamp, key);
  return out;
}

/** The directory of a module in the Go module cache (downloaded through the proxy if missing). */
function goModuleDir(mod: string): string {
  const out = execFileSync("go", ["mod", "download", "-json", mod], { encoding: "utf8" });
  return (JSON.parse(out) as { Dir: string }).Dir;
}

/** The Kubernetes version the tools pin (hack/tools/kubelet/go.mod), for the pause sources. */
function kubernetesVersion(): string {
  const mod = readFileSync(path.join(here, "..", "tools", "kubelet", "go.mod"), "utf8");
  const m = /k8s\.io\/kubernetes (v[0-9.]+)/.exec(mod);
  if (!m) throw new Error("real node: no k8s.io/kubernetes version in hack/tools/kubelet/go.mod");
  return m[1] as string;
}

/** The pod sandbox image: Kubernetes' pause.c compiled statically (gcc, libc6-dev). */
export function buildPauseImage(): string {
  const version = kubernetesVersion();
  const src = path.join(goModuleDir(`k8s.io/kubernetes@${version}`), "build", "pause", "linux", "pause.c");
  const out = path.join(imagesDir(), "pause.oci.tar");
  return cached(out, [readFileSync(src), readFileSync(fileURLToPath(import.meta.url)), PAUSE_IMAGE], () => {
    const rootfs = mkdtempSync(path.join(tmpdir(), "radflow-pause-"));
    try {
      execFileSync("gcc", ["-Os", "-Wall", "-static", `-DVERSION=${version}`, "-o", path.join(rootfs, "pause"), src]);
      execFileSync("strip", [path.join(rootfs, "pause")]);
      writeOciImage(rootfs, PAUSE_IMAGE, { Entrypoint: ["/pause"], User: "65535:65535" }, out);
    } finally {
      rmSync(rootfs, { recursive: true, force: true });
    }
  });
}

/** The probe images (hack/real-node/probe): one as uid 1000, one without a user (root). */
export function buildProbeImages(): { probe: string; probeRoot: string } {
  const dir = path.join(here, "probe");
  const inputs = [
    readFileSync(path.join(dir, "main.go")),
    readFileSync(path.join(dir, "go.mod")),
    readFileSync(fileURLToPath(import.meta.url)),
    execFileSync("go", ["env", "GOVERSION"], { encoding: "utf8" }),
  ];
  const build = (name: string, out: string, user: string | undefined) =>
    cached(out, [...inputs, name, user ?? ""], () => {
      const rootfs = mkdtempSync(path.join(tmpdir(), "radflow-probe-"));
      try {
        const bin = path.join(rootfs, "probe");
        execFileSync("go", ["build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "."], {
          cwd: dir,
          env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=mod" },
        });
        chmodSync(bin, 0o755);
        // a mount point for the step's emptyDir /tmp; the root filesystem is read-only
        mkdirSync(path.join(rootfs, "tmp"));
        writeOciImage(rootfs, name, { Entrypoint: ["/probe"], User: user, WorkingDir: "/" }, out);
      } finally {
        rmSync(rootfs, { recursive: true, force: true });
      }
    });
  return {
    probe: build(PROBE_IMAGE, path.join(imagesDir(), "probe.oci.tar"), "1000:1000"),
    probeRoot: build(PROBE_ROOT_IMAGE, path.join(imagesDir(), "probe-root.oci.tar"), undefined),
  };
}
