// Export benchmark (issue 11, item 4), on its own: needs Orthanc with its DICOMweb plugin and
// dcmtk (hack/deps.sh), no cluster, no NATS. Printed, not asserted.
//
//   node bench/scenarios/export.ts [--instances 200] [--kib 512] [--port-base 24150]
//
// The same files go to a fresh Orthanc three ways: dcmtk's storescu (one association), radflow's
// C-STORE SCU (src/export/send.ts, one association, as an export sends a step's files) and
// radflow's STOW-RS client (one multipart request). Instances/s and MB/s for each, and radflow's
// C-STORE against storescu's.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { DICOMDestinationSpec } from "../../src/api/v1alpha1/dicomdestination.ts";
import { sendInstances } from "../../src/export/send.ts";
import { startOrthanc } from "../../test/support/orthanc.ts";
import { makeInstance } from "../../test/unit/gateway/dicom-fixture.ts";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "200" },
    kib: { type: "string", default: "512" },
    "port-base": { type: "string", default: "24150" },
  },
});
const N = Number(values.instances);
const KIB = Number(values.kib);
const BASE = Number(values["port-base"]);
const work = mkdtempSync(path.join(tmpdir(), "rf-export-bench-"));

function files(tag: string): string[] {
  const dir = path.join(work, tag);
  mkdirSync(dir);
  const root = `1.2.826.0.1.3680043.10.1099.8${Date.now() % 1e8}.${tag.length}`;
  return Array.from({ length: N }, (_, i) => {
    const p = path.join(dir, `${i}.dcm`);
    writeFileSync(
      p,
      makeInstance({ study: root, series: `${root}.1`, sop: `${root}.1.${i + 1}`, pixelBytes: KIB * 1024 }),
    );
    return p;
  });
}

const rate = (label: string, ms: number) =>
  `${label.padEnd(26)} ${(N / (ms / 1000)).toFixed(1).padStart(7)} inst/s ${((N * KIB) / 1024 / (ms / 1000)).toFixed(1).padStart(6)} MB/s (${(ms / 1000).toFixed(1)} s)`;

const orthanc = await startOrthanc({ httpPort: BASE + 1, dicomPort: BASE });
try {
  const dimse: DICOMDestinationSpec = {
    dimse: { host: "127.0.0.1", port: BASE, calledAETitle: "ORTHANC", callingAETitle: "RADFLOW" },
    timeoutSeconds: 600,
    checkIntervalSeconds: 0,
  };
  const web: DICOMDestinationSpec = {
    dicomweb: { url: orthanc.dicomweb },
    timeoutSeconds: 600,
    checkIntervalSeconds: 0,
  };

  const a = files("storescu");
  let t = performance.now();
  const r = spawnSync("storescu", ["-aet", "RADFLOW", "-aec", "ORTHANC", "127.0.0.1", String(BASE), ...a]);
  if (r.status !== 0) throw new Error(`storescu failed: ${r.stderr}`);
  const storescuMs = performance.now() - t;

  const b = files("radflow-dimse");
  t = performance.now();
  const rd = await sendInstances(
    dimse,
    b.map((p) => ({ kind: "file" as const, path: p })),
  );
  const dimseMs = performance.now() - t;

  const c = files("radflow-stow-rs");
  t = performance.now();
  const rs = await sendInstances(
    web,
    c.map((p) => ({ kind: "file" as const, path: p })),
  );
  const stowMs = performance.now() - t;

  const stats = await orthanc.get<{ CountInstances: number }>("/statistics");
  console.log(`export to Orthanc: ${N} instances of ${KIB} KiB each`);
  console.log(rate("storescu → Orthanc", storescuMs));
  console.log(`${rate("radflow C-STORE → Orthanc", dimseMs)}  sent ${rd.sent}, failed ${rd.failed}`);
  console.log(`${rate("radflow STOW-RS → Orthanc", stowMs)}  sent ${rs.sent}, failed ${rs.failed}`);
  console.log(
    `radflow C-STORE / storescu: ${(storescuMs / dimseMs).toFixed(2)}; Orthanc holds ${stats.CountInstances}`,
  );
} finally {
  await orthanc.stop();
  rmSync(work, { recursive: true, force: true });
}
