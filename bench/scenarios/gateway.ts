// Gateway benchmark (issue 11, item 4), on its own: needs nats-server (~/.cache/radflow/bin) and
// dcmtk, no cluster. Printed, not asserted.
//
//   node bench/scenarios/gateway.ts [--instances 500] [--kib 512] [--quiet-seconds 1]
//
// - C-STORE ingest: the same files sent by storescu (one association) to dcmtk's storescp and to
//   `radflow gateway`: instances/s and MB/s, and the ratio (goal ≥ 0.5 of storescp). storescp
//   writes without fsync; the gateway fsyncs each file and its journal before answering.
// - STOW-RS: the same files in one multipart request, instances/s.
// - last instance → study event: from the end of the study's quiet window to JetStream's ack of
//   its study event, on the gateway's own clock (radflow_gateway_publish_lag_seconds; goal < 100 ms).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { makeInstance } from "../../test/unit/gateway/dicom-fixture.ts";
import { parseMetrics, sum } from "../lib/prom.ts";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "500" },
    kib: { type: "string", default: "512" },
    "quiet-seconds": { type: "string", default: "1" },
    "port-base": { type: "string", default: "23200" },
  },
});
const N = Number(values.instances);
const KIB = Number(values.kib);
const QUIET = Number(values["quiet-seconds"]);
const BASE = Number(values["port-base"]);
const P = { nats: BASE + 22, gw: BASE + 4, scp: BASE + 5, http: BASE + 80, metrics: BASE + 90 };
const ROOT = path.resolve(import.meta.dirname, "../..");
const work = mkdtempSync(path.join(tmpdir(), "rf-gw-bench-"));
const procs: ChildProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(f: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

function files(dir: string, study: string): string[] {
  mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (let i = 1; i <= N; i++) {
    const f = path.join(dir, `${i}.dcm`);
    const series = (i % 4) + 1;
    writeFileSync(
      f,
      makeInstance({ study, series: `${study}.${series}`, sop: `${study}.${series}.${i}`, pixelBytes: KIB * 1024 }),
    );
    out.push(f);
  }
  return out;
}

function storescu(port: number, list: string[]): number {
  const t0 = performance.now();
  const r = spawnSync("storescu", ["-aet", "BENCH", "-aec", "RADFLOW", "127.0.0.1", String(port), ...list], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`storescu failed: ${r.stderr.slice(0, 500)}`);
  return (performance.now() - t0) / 1000;
}

async function main() {
  const bytes = (f: string[]) => f.reduce((n, x) => n + readFileSync(x).length, 0);
  const root = `1.2.826.0.1.3680043.10.1099.7.${Date.now() % 1e9}`;
  const setA = files(path.join(work, "a"), `${root}.1`);
  const setB = files(path.join(work, "b"), `${root}.2`);
  const setC = files(path.join(work, "c"), `${root}.3`);
  const mb = bytes(setA) / 1e6;

  // storescp: the reference receiver
  const scpDir = path.join(work, "scp");
  mkdirSync(scpDir);
  procs.push(spawn("storescp", ["-od", scpDir, "-aet", "RADFLOW", String(P.scp)], { stdio: "ignore" }));
  await sleep(500);
  const scpSeconds = storescu(P.scp, setA);

  // the gateway, on the same disk
  procs.push(
    spawn(
      path.join(homedir(), ".cache/radflow/bin/nats-server"),
      ["-js", "-a", "127.0.0.1", "-p", String(P.nats), "-sd", path.join(work, "js")],
      {
        stdio: "ignore",
      },
    ),
  );
  await sleep(500);
  const gw = spawn(
    process.execPath,
    [
      path.join(ROOT, "src/cmd/radflow.ts"),
      "gateway",
      "--storage-dir",
      path.join(work, "store"),
      "--dicom-port",
      String(P.gw),
      "--http-port",
      String(P.http),
      "--metrics-port",
      String(P.metrics),
      "--quiet-seconds",
      String(QUIET),
      "--nats-url",
      `nats://127.0.0.1:${P.nats}`,
    ],
    { stdio: "ignore", env: { ...process.env, RADFLOW_LOG_LEVEL: "warn" } },
  );
  procs.push(gw);
  await until(
    async () => (await fetch(`http://127.0.0.1:${P.metrics}/readyz`).catch(() => undefined))?.ok === true,
    120_000, // a loaded machine takes its time to start Node
    "gateway ready",
  );
  const nc = await connect({ servers: `127.0.0.1:${P.nats}` });
  const jsm = await jetstreamManager(nc);
  const eventFor = async (study: string) => {
    const m = await jsm.streams
      .getMessage("RADFLOW_STUDIES", { last_by_subj: "radflow.study.received" })
      .catch(() => undefined);
    return m?.json<{ data: { studyInstanceUID: string } }>().data.studyInstanceUID === study;
  };

  // the gateway's own clock: its publish-lag histogram runs from the end of the study's quiet
  // window to JetStream's ack of the study event (storescu's exit, a second after its last
  // response, cannot time this)
  const scrape = async () => parseMetrics(await (await fetch(`http://127.0.0.1:${P.metrics}/metrics`)).text());
  const lag0 = await scrape();
  const gwSeconds = storescu(P.gw, setB);
  await until(() => eventFor(`${root}.2`), 60_000 + QUIET * 1000, "study event");
  // the gateway observes the lag right after JetStream's ack, a moment after the event is readable
  let lag1 = await scrape();
  await until(
    async () => {
      lag1 = await scrape();
      return (
        sum(lag1, "radflow_gateway_publish_lag_seconds_count") > sum(lag0, "radflow_gateway_publish_lag_seconds_count")
      );
    },
    10_000,
    "the gateway's publish-lag observation",
  );
  const lagCount =
    sum(lag1, "radflow_gateway_publish_lag_seconds_count") - sum(lag0, "radflow_gateway_publish_lag_seconds_count");
  const beyondWindow =
    lagCount > 0
      ? ((sum(lag1, "radflow_gateway_publish_lag_seconds_sum") - sum(lag0, "radflow_gateway_publish_lag_seconds_sum")) *
          1000) /
        lagCount
      : Number.NaN;

  const boundary = "bench-boundary";
  const body = Buffer.concat([
    ...setC.map((f) =>
      Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
        readFileSync(f),
        Buffer.from("\r\n"),
      ]),
    ),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${P.http}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
    body,
  });
  if (res.status !== 200) throw new Error(`STOW-RS answered ${res.status}`);
  const stowSeconds = (performance.now() - t0) / 1000;
  await nc.close();
  const metrics = await (await fetch(`http://127.0.0.1:${P.metrics}/metrics`)).text();
  const rss = Number(/^radflow_process_resident_memory_bytes (\S+)/m.exec(metrics)?.[1] ?? Number.NaN) / 2 ** 20;

  const row = (k: string, v: string) => process.stdout.write(`${k.padEnd(48)} ${v}\n`);
  process.stdout.write(
    `\ngateway benchmark: ${N} instances of ${KIB} KiB (${mb.toFixed(1)} MB), quiet window ${QUIET} s\n`,
  );
  row("storescu → storescp (no fsync)", `${(N / scpSeconds).toFixed(0)} inst/s, ${(mb / scpSeconds).toFixed(1)} MB/s`);
  row(
    "storescu → radflow gateway (fsync + journal)",
    `${(N / gwSeconds).toFixed(0)} inst/s, ${(mb / gwSeconds).toFixed(1)} MB/s`,
  );
  row("gateway / storescp", `${(scpSeconds / gwSeconds).toFixed(2)} (goal ≥ 0.5)`);
  row("STOW-RS (one request)", `${(N / stowSeconds).toFixed(0)} inst/s, ${(mb / stowSeconds).toFixed(1)} MB/s`);
  row("gateway RSS after both studies", `${rss.toFixed(0)} MB (each study ${N} instances)`);
  row("quiet window's end → study event acked (gateway's clock)", `${beyondWindow.toFixed(1)} ms (goal < 100 ms)`);
  // kept beside the operator's runs; the load average says how busy the machine was
  const out = path.join(ROOT, "bench/results", `gateway-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        scenario: "gateway",
        instances: N,
        kib: KIB,
        megabytes: Number(mb.toFixed(1)),
        quietSeconds: QUIET,
        loadAverage: loadavg().map((l) => Number(l.toFixed(1))),
        storescp: { instancesPerSecond: N / scpSeconds, megabytesPerSecond: mb / scpSeconds },
        gateway: { instancesPerSecond: N / gwSeconds, megabytesPerSecond: mb / gwSeconds },
        gatewayToStorescp: scpSeconds / gwSeconds,
        stowRs: { instancesPerSecond: N / stowSeconds, megabytesPerSecond: mb / stowSeconds },
        windowEndToEventAckedMs: beyondWindow,
        gatewayRssMb: rss,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`written to ${path.relative(ROOT, out)}\n`);
}

main()
  .catch((e: Error) => {
    process.stderr.write(`gateway benchmark: ${e.message}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const p of procs) p.kill("SIGTERM");
    setTimeout(() => rmSync(work, { recursive: true, force: true }), 500);
  });
