// Reads an OCI image-layout tar and checks it the way containerd's import does before trusting
// it: every blob the index names is present with the size and sha256 it is named by, the layers'
// uncompressed digests are the config's diff_ids, and the index names the image. Shared by the
// unit tests (synthetic images) and test/integration/images.test.ts (the real builds).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { MEDIA } from "../../../hack/images/oci.ts";
import { readTar, type TarEntry } from "../../../hack/images/tar.ts";

export interface LayerView {
  digest: string;
  size: number;
  diffId: string;
  uncompressedSize: number;
  entries: TarEntry[];
  data: Buffer;
}

export interface Layout {
  ref: string;
  manifestDigest: string;
  config: {
    architecture: string;
    os: string;
    config: {
      User?: string;
      WorkingDir?: string;
      Entrypoint?: string[];
      Cmd?: string[];
      Env?: string[];
      ExposedPorts?: Record<string, unknown>;
    };
    rootfs: { type: string; diff_ids: string[] };
  };
  layers: LayerView[];
  /** the image's files after applying the layers in order (whiteouts are not used here) */
  files: Map<string, { entry: TarEntry; layer: LayerView }>;
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

function fail(why: string): never {
  throw new Error(`OCI layout: ${why}`);
}

export function readLayout(file: string): Layout {
  const tar = readFileSync(file);
  const entries = readTar(tar);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const content = (name: string): Buffer => {
    const e = byName.get(name);
    if (e?.type !== "file") fail(`${name} is missing`);
    return tar.subarray(e.offset, e.offset + e.size);
  };
  const blob = (d: { digest: string; size: number }, what: string): Buffer => {
    if (!/^sha256:[a-f0-9]{64}$/.test(d.digest)) fail(`${what}: digest ${d.digest} is not a sha256`);
    const b = content(`blobs/sha256/${d.digest.slice(7)}`);
    if (b.length !== d.size) fail(`${what}: ${b.length} bytes, the descriptor says ${d.size}`);
    if (sha256(b) !== d.digest) fail(`${what}: content does not match ${d.digest}`);
    return b;
  };
  const layoutVersion = (JSON.parse(content("oci-layout").toString()) as { imageLayoutVersion: string })
    .imageLayoutVersion;
  if (layoutVersion !== "1.0.0") fail(`oci-layout version ${layoutVersion}`);
  const index = JSON.parse(content("index.json").toString()) as {
    schemaVersion: number;
    manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
  };
  if (index.schemaVersion !== 2 || index.manifests.length !== 1) fail("index.json must list exactly one manifest");
  const m = index.manifests[0] as (typeof index.manifests)[number];
  if (m.mediaType !== MEDIA.manifest) fail(`index.json: manifest media type ${m.mediaType}`);
  const ref = m.annotations?.["io.containerd.image.name"];
  if (!ref) fail("index.json: the manifest has no io.containerd.image.name annotation");
  const manifest = JSON.parse(blob(m, "manifest").toString()) as {
    schemaVersion: number;
    mediaType: string;
    config: { mediaType: string; digest: string; size: number };
    layers: { mediaType: string; digest: string; size: number }[];
  };
  if (manifest.schemaVersion !== 2 || manifest.mediaType !== MEDIA.manifest)
    fail("manifest: not an OCI image manifest");
  if (manifest.config.mediaType !== MEDIA.config) fail(`config media type ${manifest.config.mediaType}`);
  const config = JSON.parse(blob(manifest.config, "config").toString()) as Layout["config"];
  if (config.rootfs.type !== "layers") fail("config: rootfs.type is not layers");
  if (config.rootfs.diff_ids.length !== manifest.layers.length) fail("config: diff_ids and layers differ in number");
  const layers = manifest.layers.map((l, i) => {
    if (l.mediaType !== MEDIA.layer) fail(`layer ${i}: media type ${l.mediaType}`);
    const data = gunzipSync(blob(l, `layer ${i}`));
    const diffId = sha256(data);
    if (diffId !== config.rootfs.diff_ids[i]) fail(`layer ${i}: uncompressed digest ${diffId} is not diff_ids[${i}]`);
    return { digest: l.digest, size: l.size, diffId, uncompressedSize: data.length, entries: readTar(data), data };
  });
  const files = new Map<string, { entry: TarEntry; layer: LayerView }>();
  for (const layer of layers)
    for (const entry of layer.entries) if (entry.name) files.set(`/${entry.name}`, { entry, layer });
  return { ref, manifestDigest: m.digest, config, layers, files };
}

/** A file's content in the image, following symbolic links within it. */
export function fileContent(l: Layout, p: string, depth = 0): Buffer {
  const f = l.files.get(p);
  if (!f) throw new Error(`${p} is not in the image`);
  if (f.entry.type === "symlink" && depth < 8) {
    const target = f.entry.linkname.startsWith("/")
      ? f.entry.linkname
      : `${p.slice(0, p.lastIndexOf("/"))}/${f.entry.linkname}`;
    return fileContent(l, target, depth + 1);
  }
  return f.layer.data.subarray(f.entry.offset, f.entry.offset + f.entry.size);
}
