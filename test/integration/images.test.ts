// The local images as hack/images/build.sh really builds them (mmdebstrap from Debian's archive,
// Node from the npm registry): layouts containerd can import, lean and root-owned, running as
// uid 1000; a rebuild with unchanged inputs does nothing; and umoci (Debian's OCI image tool)
// unpacks them into runtime bundles whose root filesystem runs the example model and the
// operator's CLI read-only as uid 1000 (chroot in a private mount namespace: no container runtime
// needed to show the files are complete).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imagePath } from "../../hack/images/build.ts";
import { fileContent, type Layout, readLayout } from "../unit/images/layout.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BUILD = path.join(ROOT, "hack/images/build.sh");
const has = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;
const isRoot = process.getuid?.() === 0;
const missing = ["mmdebstrap", "dump2dcm", "umoci"].filter((c) => !has(c));

const work = mkdtempSync(path.join(tmpdir(), "radflow-images-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function build(...names: string[]) {
  const started = Date.now();
  const r = spawnSync(BUILD, names, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`hack/images/build.sh ${names.join(" ")} failed:\n${r.stderr.slice(-4000)}`);
  return { stderr: r.stderr, seconds: (Date.now() - started) / 1000 };
}

/** The image unpacked by umoci (an OCI tool nobody here wrote: it checks every digest and applies
 * the layers as a runtime would) into a runtime bundle: rootfs/ and the OCI runtime config. */
function umociUnpack(name: string): {
  rootfs: string;
  process: { user: { uid: number; gid: number }; args: string[]; cwd: string; env: string[] };
} {
  const layout = path.join(work, `${name}-layout`);
  const bundle = path.join(work, `${name}-bundle`);
  mkdirSync(layout);
  const x = spawnSync("tar", ["-xf", imagePath(name), "-C", layout], { encoding: "utf8" });
  expect(x.status, x.stderr).toBe(0);
  const u = spawnSync("umoci", ["unpack", "--image", `${layout}:dev`, bundle], { encoding: "utf8" });
  expect(u.status, u.stderr).toBe(0);
  rmSync(layout, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(bundle, "config.json"), "utf8"));
  return { rootfs: path.join(bundle, "rootfs"), process: config.process };
}

/** Runs a command in the root filesystem, mounted read-only, as uid 1000, with /tmp writable. */
function inImage(rootfs: string, env: Record<string, string>, cmd: string[], binds: Record<string, string> = {}) {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  // mount points first, as a runtime makes them, before the root goes read-only
  for (const inside of Object.keys(binds)) mkdirSync(rootfs + inside, { recursive: true });
  const script = [
    `mount --bind ${q(rootfs)} ${q(rootfs)}`,
    `mount -o remount,bind,ro ${q(rootfs)}`,
    `mount -t tmpfs tmpfs ${q(`${rootfs}/tmp`)}`,
    ...Object.entries(binds).map(([inside, outside]) => `mount --bind ${q(outside)} ${q(rootfs + inside)}`),
    `exec env -i ${Object.entries(env)
      .map(([k, v]) => q(`${k}=${v}`))
      .join(" ")} /usr/sbin/chroot --userspec=1000:1000 ${q(rootfs)} ${cmd.map(q).join(" ")}`,
  ].join(" && ");
  return spawnSync("unshare", ["-m", "sh", "-c", script], { encoding: "utf8" });
}

describe.skipIf(missing.length > 0)("local OCI images (hack/images/build.sh)", () => {
  let radflow: Layout;
  let model: Layout;
  let first: { stderr: string; seconds: number };

  beforeAll(() => {
    first = build("radflow", "example-model");
    radflow = readLayout(imagePath("radflow"));
    model = readLayout(imagePath("example-model"));
  }, 1_200_000);

  it("are OCI layouts containerd imports under their names, running as uid 1000", () => {
    for (const [l, ref, entry] of [
      [radflow, "radflow.local/radflow:dev", "/app/dist/cmd/radflow.js"],
      [model, "radflow.local/example-model:dev", "/model/model.ts"],
    ] as const) {
      expect(l.ref).toBe(ref);
      expect(l.config).toMatchObject({ architecture: "amd64", os: "linux" });
      expect(l.config.config.User).toBe("1000:1000");
      expect(l.config.config.Entrypoint).toEqual(["node", entry]);
      expect(l.files.get(entry)?.entry.type).toBe("file");
      const node = l.files.get("/usr/local/bin/node")?.entry;
      expect(node?.type).toBe("file");
      expect((node?.mode ?? 0) & 0o111).toBe(0o111);
      expect(fileContent(l, "/etc/passwd").toString()).toMatch(/^node:x:1000:1000:/m);
      // the step's and the chart's emptyDir mounts here; the image leaves it open to every user
      expect(l.files.get("/tmp")?.entry).toMatchObject({ type: "dir", mode: 0o1777 });
    }
  });

  it("are lean and root-owned: no shell, package manager, docs or dev dependencies; no world-writable file", () => {
    for (const l of [radflow, model]) {
      const names = [...l.files.keys()];
      expect(names.filter((n) => /^\/usr\/share\/(doc|man|info|locale)\/./.test(n))).toEqual([]);
      expect(
        names.filter((n) => /^\/(etc\/apt|var\/lib\/dpkg|usr\/bin\/(dpkg|apt|sh|bash|dash))(\/|$)/.test(n)),
      ).toEqual([]);
      const entries = [...l.files.values()].map((f) => f.entry);
      expect(entries.filter((e) => e.uid !== 0 || e.gid !== 0).map((e) => e.name)).toEqual([]);
      // world-writable only as sticky directories (/tmp, /var/tmp, /var/lock), and the root is read-only anyway
      const writable = entries.filter(
        (e) => e.type !== "symlink" && e.mode & 0o002 && !(e.type === "dir" && e.mode & 0o1000),
      );
      expect(writable.map((e) => e.name)).toEqual([]);
    }
    // radflow: what the Dockerfile copies into /app, production dependencies only
    const app = new Set([...radflow.files.keys()].filter((n) => n.startsWith("/app/")).map((n) => n.split("/")[2]));
    expect([...app].sort()).toEqual(["dist", "node_modules", "package.json"]);
    for (const dev of ["typescript", "vitest", "@biomejs"])
      expect(radflow.files.has(`/app/node_modules/${dev}`), dev).toBe(false);
    expect(radflow.files.has("/app/node_modules/@kubernetes/client-node/package.json")).toBe(true);
    // the example model: dcmjs and what it needs, nothing of the operator's
    expect(model.files.has("/model/node_modules/dcmjs/package.json")).toBe(true);
    expect(model.files.has("/model/node_modules/@kubernetes")).toBe(false);
  });

  it("share their base and Node layers (stored once on a node)", () => {
    expect(radflow.layers.slice(0, 2).map((l) => l.digest)).toEqual(model.layers.slice(0, 2).map((l) => l.digest));
    const mb = (n: number) => Math.round(n / 1e5) / 10;
    const sizes = (l: Layout) => l.layers.map((x) => `${mb(x.size)}/${mb(x.uncompressedSize)}`).join(" + ");
    process.stderr.write(
      `images: first build ${first.seconds.toFixed(1)} s; layers (MB gzip/uncompressed) radflow ${sizes(radflow)}, example-model ${sizes(model)}\n`,
    );
  });

  // the example model's inputs are its own folder and the lock file; radflow's include src/,
  // which a shared working tree may change between two builds
  it("a rebuild with unchanged inputs does nothing", () => {
    const before = statSync(imagePath("example-model")).mtimeMs;
    const again = build("example-model");
    expect(again.stderr).toMatch(/example-model up to date/);
    expect(again.stderr).not.toMatch(/building/);
    expect(statSync(imagePath("example-model")).mtimeMs).toBe(before);
    process.stderr.write(`images: unchanged rebuild ${again.seconds.toFixed(1)} s\n`);
  });

  // umoci unpacks a layer at a time, a minute or more on a loaded machine
  describe.skipIf(!isRoot || !has("unshare"))(
    "their root filesystems run read-only as uid 1000",
    { timeout: 600_000 },
    () => {
      it("the example model reads a CT study and writes its outputs and result file", () => {
        const { rootfs, process: p } = umociUnpack("example-model");
        expect(p).toMatchObject({ user: { uid: 1000, gid: 1000 }, args: ["node", "/model/model.ts"], cwd: "/model" });
        expect(p.env).toContain("HOME=/nonexistent"); // umoci read the image's /etc/passwd
        const study = path.join(work, "study");
        const out = path.join(work, "out");
        mkdirSync(study);
        mkdirSync(out, { mode: 0o777 });
        spawnSync("chmod", ["777", out]);
        // a 32×32 CT: a quarter of the slice at 60 HU, the rest at 30 HU
        const px = Buffer.alloc(32 * 32 * 2);
        for (let i = 0; i < 32 * 32; i++) px.writeUInt16LE((i < 256 ? 60 : 30) + 1024, i * 2);
        writeFileSync(path.join(work, "px.raw"), px);
        const dump = [
          "(0008,0016) UI =CTImageStorage",
          "(0008,0018) UI [1.2.826.0.1.3680043.2.1143.99]",
          "(0008,0060) CS [CT]",
          "(0028,0002) US 1",
          "(0028,0004) CS [MONOCHROME2]",
          "(0028,0010) US 32",
          "(0028,0011) US 32",
          "(0028,0100) US 16",
          "(0028,0101) US 16",
          "(0028,0102) US 15",
          "(0028,0103) US 0",
          "(0028,1052) DS [-1024]",
          "(0028,1053) DS [1]",
          `(7fe0,0010) OW =${path.join(work, "px.raw")}`,
        ].join("\n");
        writeFileSync(path.join(work, "ct.dump"), `${dump}\n`);
        expect(spawnSync("dump2dcm", ["+te", path.join(work, "ct.dump"), path.join(study, "1.dcm")]).status).toBe(0);
        const r = inImage(
          rootfs,
          {
            PATH: "/usr/local/bin:/usr/bin",
            RADFLOW_STUDY_DIR: "/data/study",
            RADFLOW_OUTPUT_DIR: "/data/out/results/t/triage",
            MODEL_TERMINATION_LOG: "/tmp/termination-log",
          },
          ["node", "/model/model.ts"],
          { "/data/study": study, "/data/out": out },
        );
        expect(r.status, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout)).toEqual({
          modality: "CT",
          instances: 1,
          skipped: 0,
          meanIntensity: 37.5,
          unit: "HU",
          hyperdenseFraction: 0.25,
          suspectedHemorrhage: true,
          result: "hyperdensity.json",
        });
        expect(existsSync(path.join(out, "results/t/triage/hyperdensity.json"))).toBe(true);
        // and nothing else is writable: the root filesystem refuses the user
        const w = inImage(rootfs, { PATH: "/usr/local/bin" }, [
          "node",
          "-e",
          "require('fs').writeFileSync('/model/x', '1')",
        ]);
        expect(w.status).not.toBe(0);
        expect(w.stderr).toMatch(/EROFS|EACCES/);
      });

      it("the radflow image starts its CLI from the compiled code (production dependencies suffice)", () => {
        const { rootfs, process: p } = umociUnpack("radflow");
        expect(p).toMatchObject({
          user: { uid: 1000, gid: 1000 },
          args: ["node", "/app/dist/cmd/radflow.js", "operator"],
          cwd: "/app",
        });
        const r = inImage(rootfs, { PATH: "/usr/local/bin", NODE_ENV: "production" }, [
          "node",
          "/app/dist/cmd/radflow.js",
          "operator",
          "--help",
        ]);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout + r.stderr).toMatch(/radflow operator — run the radflow controllers/);
      });
    },
  );
});
