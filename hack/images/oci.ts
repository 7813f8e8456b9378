// Writes an OCI image layout as one tar (what `ctr images import` reads): gzip layers, the image
// config, the manifest, and index.json whose manifest carries the image's name in the
// io.containerd.image.name annotation. Only node:crypto and node:zlib: no Docker, no registry.
// Everything is deterministic (mtime 0, sorted JSON keys, fixed gzip settings), so the same
// layers and config give the same digests.
import { createHash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { type TarInput, writeTar } from "./tar.ts";

export const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

export interface ImageConfig {
  User: string;
  WorkingDir: string;
  Entrypoint: string[];
  Cmd?: string[];
  Env: string[];
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

export interface Layer {
  /** an uncompressed tar */
  tar: string;
  /** what made it, for the config's history */
  createdBy: string;
}

interface Blob {
  digest: string;
  size: number;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash("sha256");
  await pipeline(createReadStream(file), h);
  return `sha256:${h.digest("hex")}`;
}

/** Gzips a layer into the blob cache once per content (keyed by its uncompressed digest). */
async function gzipLayer(tar: string, cache: string): Promise<{ diffId: string; blob: Blob; file: string }> {
  const diffId = await sha256File(tar);
  const hex = diffId.slice("sha256:".length);
  const file = path.join(cache, `${hex}.tar.gz`);
  const meta = path.join(cache, `${hex}.json`);
  if (existsSync(file) && existsSync(meta)) {
    return { diffId, blob: JSON.parse(readFileSync(meta, "utf8")) as Blob, file };
  }
  mkdirSync(cache, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const h = createHash("sha256");
  // level 6 and Node's zlib header (mtime 0, no name): the same tar always gives the same bytes
  const gz = createGzip({ level: 6 });
  gz.on("data", (c: Buffer) => h.update(c));
  await pipeline(createReadStream(tar), gz, createWriteStream(tmp));
  const blob = { digest: `sha256:${h.digest("hex")}`, size: statSync(tmp).size };
  renameSync(tmp, file);
  writeFileSync(meta, JSON.stringify(blob));
  return { diffId, blob, file };
}

/** JSON with object keys sorted, so a digest does not depend on insertion order. */
export function canonicalJSON(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    val && typeof val === "object" && !Array.isArray(val)
      ? Object.fromEntries(Object.entries(val as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : val,
  );
}

function jsonBlob(v: unknown): { data: Buffer; blob: Blob } {
  const data = Buffer.from(canonicalJSON(v));
  return { data, blob: { digest: `sha256:${createHash("sha256").update(data).digest("hex")}`, size: data.length } };
}

export interface WriteImageOptions {
  out: string;
  /** e.g. radflow.local/radflow:dev */
  ref: string;
  config: ImageConfig;
  layers: Layer[];
  /** where gzipped layers are kept between builds */
  blobCache: string;
}

/** Writes the layout tar to `out` (atomically) and returns the manifest digest. */
export async function writeImage(o: WriteImageOptions): Promise<{ manifest: Blob; layers: Blob[]; diffIds: string[] }> {
  const layers = [];
  for (const l of o.layers) layers.push(await gzipLayer(l.tar, o.blobCache));
  const config = jsonBlob({
    created: "1970-01-01T00:00:00Z",
    architecture: "amd64",
    os: "linux",
    config: o.config,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: o.layers.map((l) => ({ created: "1970-01-01T00:00:00Z", created_by: l.createdBy })),
  });
  const manifest = jsonBlob({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, ...config.blob },
    layers: layers.map((l) => ({ mediaType: MEDIA.layer, ...l.blob })),
  });
  const tag = o.ref.slice(o.ref.lastIndexOf(":") + 1);
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [
      {
        mediaType: MEDIA.manifest,
        ...manifest.blob,
        platform: { architecture: "amd64", os: "linux" },
        annotations: { "io.containerd.image.name": o.ref, "org.opencontainers.image.ref.name": tag },
      },
    ],
  };
  const blobName = (b: Blob) => `blobs/sha256/${b.digest.slice("sha256:".length)}`;
  const seen = new Set<string>();
  const entries: TarInput[] = [
    { name: "oci-layout", data: Buffer.from(canonicalJSON({ imageLayoutVersion: "1.0.0" })) },
    { name: "index.json", data: Buffer.from(canonicalJSON(index)) },
    { name: "blobs", dir: true },
    { name: "blobs/sha256", dir: true },
    { name: blobName(config.blob), data: config.data },
    { name: blobName(manifest.blob), data: manifest.data },
  ];
  for (const l of layers) {
    // two identical layers are one blob
    if (seen.has(l.blob.digest)) continue;
    seen.add(l.blob.digest);
    entries.push({ name: blobName(l.blob), file: l.file, size: l.blob.size });
  }
  mkdirSync(path.dirname(o.out), { recursive: true });
  const tmp = `${o.out}.tmp-${process.pid}`;
  writeTar(tmp, entries);
  renameSync(tmp, o.out);
  return { manifest: manifest.blob, layers: layers.map((l) => l.blob), diffIds: layers.map((l) => l.diffId) };
}
