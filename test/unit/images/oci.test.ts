// The OCI layout writer (hack/images/oci.ts) and its tar writer and reader, on small layers made
// by GNU tar the way hack/images/build.ts makes them. The real images are checked by
// test/integration/images.test.ts.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { canonicalJSON, writeImage } from "../../../hack/images/oci.ts";
import { header, readTar, writeTar } from "../../../hack/images/tar.ts";
import { fileContent, readLayout } from "./layout.ts";

const work = mkdtempSync(path.join(tmpdir(), "radflow-oci-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A layer tar from a folder, with build.ts's reproducibility flags. */
function layer(name: string, files: Record<string, string>): string {
  const dir = path.join(work, `${name}-root`);
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), data);
  }
  const out = path.join(work, `${name}.tar`);
  const r = spawnSync("tar", [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    "--format=posix",
    "-C",
    dir,
    "-cf",
    out,
    ".",
  ]);
  expect(r.status, String(r.stderr)).toBe(0);
  return out;
}

const longName = `app/node_modules/${"deeply-nested-package/".repeat(8)}index.js`;
const base = layer("base", {
  "etc/passwd": "root:x:0:0::/root:/bin/false\nnode:x:1000:1000::/nonexistent:/bin/false\n",
});
const app = layer("app", { "app/main.js": "console.log('hi')\n", [longName]: "module.exports = 1;\n" });
const config = {
  User: "1000:1000",
  WorkingDir: "/app",
  Entrypoint: ["node", "/app/main.js"],
  Env: ["PATH=/usr/bin"],
};

async function image(out: string, layers = [base, app]) {
  return writeImage({
    out,
    ref: "radflow.local/test:dev",
    config,
    layers: layers.map((tar) => ({ tar, createdBy: path.basename(tar) })),
    blobCache: path.join(work, "blobs"),
  });
}

describe("OCI image layout (hack/images/oci.ts)", () => {
  it("writes a layout containerd can import: named index, manifest, config and gzip layers, all digests right", async () => {
    const out = path.join(work, "a.oci.tar");
    const res = await image(out);
    const l = readLayout(out);
    expect(l.ref).toBe("radflow.local/test:dev");
    expect(l.manifestDigest).toBe(res.manifest.digest);
    expect(l.config).toMatchObject({ architecture: "amd64", os: "linux", config });
    expect(l.layers).toHaveLength(2);
    expect(fileContent(l, "/app/main.js").toString()).toContain("hi");
    // a name longer than ustar's 100 bytes survives (GNU tar's PAX header, read back)
    expect(fileContent(l, `/${longName}`).toString()).toBe("module.exports = 1;\n");
    // what ctr reads to name the image, and the tag alone for OCI tools
    const tar = readFileSync(out);
    const entry = readTar(tar).find((e) => e.name === "index.json");
    const index = JSON.parse(tar.toString("utf8", entry?.offset, (entry?.offset ?? 0) + (entry?.size ?? 0)));
    expect(index.manifests[0].annotations).toEqual({
      "io.containerd.image.name": "radflow.local/test:dev",
      "org.opencontainers.image.ref.name": "dev",
    });
    expect(index.manifests[0].platform).toEqual({ architecture: "amd64", os: "linux" });
  });

  it("is reproducible: the same layers and config give the same bytes", async () => {
    const a = path.join(work, "r1.oci.tar");
    const b = path.join(work, "r2.oci.tar");
    await image(a);
    rmSync(path.join(work, "blobs"), { recursive: true, force: true }); // not from the cache either
    await image(b);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });

  it("stores a layer used twice once", async () => {
    const out = path.join(work, "dup.oci.tar");
    await image(out, [base, base]);
    const names = readTar(readFileSync(out)).map((e) => e.name);
    expect(names.filter((n) => n.startsWith("blobs/sha256/") && n !== "blobs/sha256")).toHaveLength(3);
    expect(readLayout(out).layers).toHaveLength(2);
  });

  it("the checker refuses a layout whose blob does not match its digest", async () => {
    const out = path.join(work, "bad.oci.tar");
    await image(out);
    const buf = readFileSync(out);
    const entries = readTar(buf);
    const manifestDigest = readLayout(out).manifestDigest.slice(7);
    const manifest = entries.find((e) => e.name === `blobs/sha256/${manifestDigest}`);
    expect(manifest).toBeDefined();
    const m = JSON.parse(buf.toString("utf8", manifest?.offset, (manifest?.offset ?? 0) + (manifest?.size ?? 0)));
    const layerEntry = entries.find((e) => e.name === `blobs/sha256/${m.layers[1].digest.slice(7)}`);
    const at = (layerEntry?.offset ?? 0) + 20;
    buf[at] = (buf[at] ?? 0) ^ 0xff;
    writeFileSync(out, buf);
    expect(() => readLayout(out)).toThrow(/layer 1: content does not match/);
  });

  it("tar: ustar headers GNU tar reads back (names, sizes, directories)", () => {
    const out = path.join(work, "own.tar");
    const big = path.join(work, "big.bin");
    writeFileSync(big, Buffer.alloc(1_500_000, 7));
    writeTar(out, [
      { name: "d", dir: true },
      { name: "d/x.json", data: Buffer.from("{}") },
      { name: "d/big.bin", file: big, size: 1_500_000 },
    ]);
    const listed = spawnSync("tar", ["-tvf", out], { encoding: "utf8" });
    expect(listed.status, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/^drwxr-xr-x root\/root +0 1970-01-01 00:00 d\/$/m);
    expect(listed.stdout).toMatch(/^-rw-r--r-- root\/root +1500000 1970-01-01 00:00 d\/big\.bin$/m);
    expect(readTar(readFileSync(out)).map((e) => [e.name, e.type, e.size])).toEqual([
      ["d", "dir", 0],
      ["d/x.json", "file", 2],
      ["d/big.bin", "file", 1_500_000],
    ]);
    expect(() => header("x".repeat(101), "file", 0, 0o644)).toThrow(/does not fit/);
  });

  it("tar reader: symbolic links as GNU tar writes them", () => {
    const dir = path.join(work, "links");
    mkdirSync(path.join(dir, "usr/bin"), { recursive: true });
    writeFileSync(path.join(dir, "usr/bin/tool"), "x");
    symlinkSync("usr/bin", path.join(dir, "bin"));
    const out = path.join(work, "links.tar");
    spawnSync("tar", ["--sort=name", "-C", dir, "-cf", out, "."]);
    const e = readTar(readFileSync(out)).find((x) => x.name === "bin");
    expect(e).toMatchObject({ type: "symlink", linkname: "usr/bin" });
  });

  it("canonical JSON sorts keys at every depth (digests do not depend on insertion order)", () => {
    expect(canonicalJSON({ b: 1, a: { d: [{ z: 1, y: 2 }], c: 2 } })).toBe('{"a":{"c":2,"d":[{"y":2,"z":1}]},"b":1}');
  });
});
