// `radflow gateway` as a process, against peers nobody here wrote: dcmtk's echoscu/storescu as
// the modality, fetch as the STOW-RS client, a real nats-server (started here, so the test can
// read the stream without touching the shared cluster's), and the DICOM files pydicom ships.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { StudyReceivedEvent } from "../../src/api/v1alpha1/events.ts";
import { uidKey } from "../../src/gateway/storage.ts";
import {
  DEFAULT_GATEWAY_ARGS,
  GatewayProcess,
  type NatsServer,
  pydicomFiles,
  startNats,
  storescu as storescuTo,
  waitFor as waitForIt,
  writeFiles,
} from "../support/gateway-process.ts";
import { makeInstance, makeStudy } from "../unit/gateway/dicom-fixture.ts";
import { rawCStore } from "../unit/gateway/raw-scu.ts";

// the integration setup's tools (nats-server); run on its own, the bootstrap's cache
const BIN = (inject("toolsBin") as string | undefined) || path.join(homedir(), ".cache/radflow/bin");
// below the ephemeral range (32768+), away from the local clusters' port blocks
const BASE = Number(process.env.RADFLOW_GATEWAY_TEST_PORT_BASE ?? 23100);
const PORTS = {
  nats: BASE + 22,
  dicom: BASE + 4,
  http: BASE + 80,
  metrics: BASE + 90,
  dicom2: BASE + 6,
  metrics2: BASE + 92,
};
const RUN = `1.2.826.0.1.3680043.10.1099.${Date.now() % 1e9}`;

const work = mkdtempSync(path.join(tmpdir(), "rf-gw-it-"));
const storageDir = path.join(work, "store");
let nats: NatsServer | undefined;
let nc: NatsConnection;
const natsUrl = `nats://127.0.0.1:${PORTS.nats}`;
const gw = new GatewayProcess({
  storage: storageDir,
  ports: { dicom: PORTS.dicom, http: PORTS.http, metrics: PORTS.metrics },
  natsUrl,
  args: [...DEFAULT_GATEWAY_ARGS, "--max-wait-seconds", "60"],
});

function hasTool(t: string): boolean {
  return spawnSync(t, ["--version"], { stdio: "ignore" }).status === 0;
}

const waitFor = <T>(f: () => Promise<T | undefined> | T | undefined, ms = 20_000, what = "condition") =>
  waitForIt(f, ms, what, () => gw.log);

/** (Re)starts the gateway with a quiet window of `quiet` seconds. */
const startGateway = (extra: string[] = [], quiet = "1") => gw.start([...extra, "--quiet-seconds", quiet], {}, 90_000);
const stopGateway = (signal: NodeJS.Signals = "SIGTERM") => gw.stop(signal);

/** Every study event in the stream (by sequence), parsed. */
type Received = { msgId: string; event: StudyReceivedEvent & { radflowrevision?: number } };
async function studyEvents(): Promise<Received[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info("RADFLOW_STUDIES");
  const out: Received[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage("RADFLOW_STUDIES", { seq }).catch(() => undefined);
    if (!m) continue;
    out.push({ msgId: m.header?.get("Nats-Msg-Id") ?? "", event: m.json<Received["event"]>() });
  }
  return out;
}

const eventsOf = async (study: string) => (await studyEvents()).filter((e) => e.event.data.studyInstanceUID === study);

const storescu = (files: string[], calling = "CT_EAST", called = "RADFLOW", extra: string[] = []) =>
  storescuTo(PORTS.dicom, files, { calling, called, extra });

const tools = ["storescu", "echoscu", "dcmdump"].filter((t) => !hasTool(t));
const natsBin = path.join(BIN, "nats-server");

describe.skipIf(tools.length > 0 || !existsSync(natsBin))("radflow gateway (dcmtk, STOW-RS, JetStream)", () => {
  beforeAll(async () => {
    nats = await startNats(natsBin, PORTS.nats, path.join(work, "js"));
    nc = nats.nc;
    await startGateway();
  }, 180_000);
  afterAll(async () => {
    await stopGateway();
    await nats?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("answers C-ECHO, and refuses unknown calling and called AE titles with their reasons", () => {
    const ok = spawnSync("echoscu", ["-aet", "CT_EAST", "-aec", "RADFLOW", "127.0.0.1", String(PORTS.dicom)], {
      encoding: "utf8",
    });
    expect(ok.status, ok.stderr).toBe(0);
    const calling = spawnSync("echoscu", ["-aet", "INTRUDER", "-aec", "RADFLOW", "127.0.0.1", String(PORTS.dicom)], {
      encoding: "utf8",
    });
    expect(calling.status).not.toBe(0);
    expect(calling.stderr).toMatch(/Calling AE Title Not Recognized/i);
    const called = spawnSync("echoscu", ["-aet", "CT_EAST", "-aec", "ELSEWHERE", "127.0.0.1", String(PORTS.dicom)], {
      encoding: "utf8",
    });
    expect(called.status).not.toBe(0);
    expect(called.stderr).toMatch(/Called AE Title Not Recognized/i);
  });

  it("stores a two-series study sent by storescu and announces it once, with its series summary", async () => {
    const study = `${RUN}.1`;
    const files = writeFiles(path.join(work, "study1"), makeStudy(study, 2, 3, { pixelBytes: 40_000 }));
    const r = storescu(files);
    expect(r.status, r.stderr).toBe(0);
    const [ev] = await waitFor(async () => {
      const e = await eventsOf(study);
      return e.length ? e : undefined;
    });
    await new Promise((res) => setTimeout(res, 1500)); // a second event would come within the window
    const all = await eventsOf(study);
    expect(all).toHaveLength(1);
    expect(StudyReceivedEvent.safeParse(ev?.event).success).toBe(true);
    expect(ev?.msgId).toBe(`${uidKey("study", study)}-0`);
    expect(ev?.event.data.callingAETitle).toBe("CT_EAST");
    expect(ev?.event.data.calledAETitle).toBe("RADFLOW");
    expect(ev?.event.data.series.map((s) => [s.seriesInstanceUID, s.modality, s.numberOfInstances])).toEqual([
      [`${study}.1`, "CT", 3],
      [`${study}.2`, "OT", 3],
    ]);
    // the files are where a step reads them, whole (dcmdump parses them), under names without UIDs
    const dir = path.join(storageDir, ev?.event.data.location ?? "");
    const stored = readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith(".dcm"));
    expect(stored).toHaveLength(6);
    expect(stored.join(" ")).not.toContain(RUN);
    const dump = execFileSync("dcmdump", [path.join(dir, String(stored[0]))], { encoding: "utf8" });
    expect(dump).toContain(study);
  });

  it("C-STORE: a non-DICOM data set, a truncated one and one without a study get C000; only the whole one is announced", async () => {
    const study = `${RUN}.5`;
    const whole = makeInstance({ study, series: `${study}.1`, sop: `${study}.1.1`, pixelBytes: 40_000 });
    const dataset = whole.subarray(144 + whole.readUInt32LE(140)); // after preamble and meta group
    const send = (bytes: Buffer, sop: string) =>
      rawCStore({
        host: "127.0.0.1",
        port: PORTS.dicom,
        calling: "CT_EAST",
        called: "RADFLOW",
        sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
        sopInstanceUID: sop,
        transferSyntaxUID: "1.2.840.10008.1.2.1",
        dataset: bytes,
      });
    expect(await send(Buffer.from("this is not a DICOM data set, just text."), `${study}.1.9`)).toBe(0xc000);
    expect(await send(dataset.subarray(0, dataset.length - 1000), `${study}.1.1`)).toBe(0xc000);
    // the whole data set over the same path is stored: the checks, not the sender, decide
    expect(await send(dataset, `${study}.1.1`)).toBe(0x0000);
    // storescu sends a file without a StudyInstanceUID (it only needs the SOP class and instance)
    const [noStudy] = writeFiles(path.join(work, "nostudy"), [
      makeInstance({ study: "", series: `${study}.2`, sop: `${study}.2.1` }),
    ]);
    const r = storescu([noStudy as string], "CT_EAST", "RADFLOW", ["-v"]);
    expect(r.stderr).toMatch(/Store Response \(Error: CannotUnderstand/i);
    const evs = await waitFor(async () => {
      const e = await eventsOf(study);
      return e.length ? e : undefined;
    });
    expect(evs[0]?.event.data.series.map((x) => x.numberOfInstances)).toEqual([1]);
  });

  it("STOW-RS: stores the DICOM parts, and fails a non-DICOM part and a truncated one with reasons (202)", async () => {
    const study = `${RUN}.2`;
    const [a, b, c] = makeStudy(study, 1, 3, { pixelBytes: 4000 }) as [Buffer, Buffer, Buffer];
    const boundary = "radflow-boundary-7d1";
    const part = (data: Buffer, type = "application/dicom") =>
      Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`), data, Buffer.from("\r\n")]);
    const body = Buffer.concat([
      part(a),
      part(Buffer.from("this is not a DICOM file")),
      part(c.subarray(0, c.length - 100)),
      part(b),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    const res = await fetch(`http://127.0.0.1:${PORTS.http}/studies`, {
      method: "POST",
      headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
      body,
    });
    expect(res.status).toBe(202);
    const json = (await res.json()) as Record<string, { Value: Record<string, { Value: unknown[] }>[] }>;
    expect(json["00081199"]?.Value.map((i) => i["00081155"]?.Value[0])).toEqual([`${study}.1.1`, `${study}.1.2`]);
    expect(json["00081198"]?.Value.map((i) => i["00081197"]?.Value[0])).toEqual([0xc000, 0xc000]);

    const [ev] = await waitFor(async () => {
      const e = await eventsOf(study);
      return e.length ? e : undefined;
    });
    expect(ev?.event.data.series[0]?.numberOfInstances).toBe(2);
    expect(ev?.event.data.callingAETitle).toBeUndefined();

    // a request that is not multipart/related application/dicom is refused as a whole
    const wrong = await fetch(`http://127.0.0.1:${PORTS.http}/studies`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(wrong.status).toBe(415);
    // /studies/{uid}: an instance of another study fails (A900), the study's own is stored
    const other = makeInstance({ study: `${RUN}.9`, series: `${RUN}.9.1`, sop: `${RUN}.9.1.1` });
    const own = makeInstance({ study, series: `${study}.1`, sop: `${study}.1.4` });
    const res2 = await fetch(`http://127.0.0.1:${PORTS.http}/studies/${study}`, {
      method: "POST",
      headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
      body: Buffer.concat([part(other), part(own), Buffer.from(`--${boundary}--`)]),
    });
    expect(res2.status).toBe(202);
    const j2 = (await res2.json()) as Record<string, { Value: Record<string, { Value: unknown[] }>[] }>;
    expect(j2["00081198"]?.Value[0]?.["00081197"]?.Value[0]).toBe(0xa900);
    // the late instance of an announced study: a follow-up event, revision 1
    const follow = await waitFor(async () => {
      const e = await eventsOf(study);
      return e.length === 2 ? e : undefined;
    });
    expect(follow.map((e) => e.event.radflowrevision)).toEqual([0, 1]);
    expect(follow[1]?.event.data.series[0]?.numberOfInstances).toBe(3);
  });

  it("SIGKILL mid-assembly: every acknowledged instance reaches exactly one published study after the restart", async () => {
    await stopGateway();
    await startGateway([], "30"); // a window the kill lands inside
    const study = `${RUN}.3`;
    const files = writeFiles(path.join(work, "study3"), makeStudy(study, 2, 5));
    const r = storescu(files);
    expect(r.status, r.stderr).toBe(0);
    expect(await eventsOf(study)).toHaveLength(0);
    await stopGateway("SIGKILL");
    await startGateway([], "1");
    const evs = await waitFor(async () => {
      const e = await eventsOf(study);
      return e.length ? e : undefined;
    });
    await new Promise((res) => setTimeout(res, 2000));
    const all = await eventsOf(study);
    expect(all).toHaveLength(1);
    expect(evs[0]?.event.data.series.map((s) => s.numberOfInstances)).toEqual([5, 5]);
    // and a second restart publishes nothing again
    await stopGateway("SIGKILL");
    await startGateway([], "1");
    await new Promise((res) => setTimeout(res, 2500));
    expect(await eventsOf(study)).toHaveLength(1);
  });

  it("receives the real DICOM files pydicom ships (every acknowledged instance is announced)", async (ctx) => {
    const py = pydicomFiles();
    if ("skip" in py) return ctx.skip(py.skip);
    const dcm = py.files;
    expect(dcm.length).toBeGreaterThan(50);
    const journalDir = path.join(storageDir, ".radflow-gateway/journal");
    const instanceRecords = () =>
      readdirSync(journalDir).reduce(
        (n, f) =>
          n +
          readFileSync(path.join(journalDir, f), "utf8")
            .split("\n")
            .filter((l) => l.startsWith('{"t":"i"')).length,
        0,
      );
    const before = await studyEvents();
    const recordsBefore = instanceRecords();
    const r = storescu(dcm, "STORESCU", "RADFLOW", ["-v"]);
    // storescu itself skips files it cannot read or convert to the uncompressed syntaxes it proposes
    const acked = (r.stderr.match(/Received Store Response \(Success\)/g) ?? []).length;
    expect(acked).toBeGreaterThan(20);
    // every "success" the sender heard is in a journal…
    expect(instanceRecords() - recordsBefore).toBe(acked);
    // STOW-RS takes every file as it is (compressed ones too); odd ones fail with a reason
    const boundary = "pydicom-files";
    const body = Buffer.concat([
      ...dcm.map((f) =>
        Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
          readFileSync(f),
          Buffer.from("\r\n"),
        ]),
      ),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    const res = await fetch(`http://127.0.0.1:${PORTS.http}/studies`, {
      method: "POST",
      headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
      body,
    });
    expect(res.status).toBe(202);
    const json = (await res.json()) as Record<string, { Value: Record<string, { Value: unknown[] }>[] }>;
    const stowStored = json["00081199"]?.Value.length ?? 0;
    const stowFailed = json["00081198"]?.Value ?? [];
    expect(stowStored + stowFailed.length).toBe(dcm.length);
    // 19 of the 79 have no StudyInstanceUID, no meta, a cut or a broken element: refused, each with its reason
    expect(stowStored).toBeGreaterThanOrEqual(55);
    for (const f of stowFailed) expect([0xc000, 0xa900]).toContain(f["00081197"]?.Value[0]);
    expect(instanceRecords() - recordsBefore).toBe(acked + stowStored);
    // every study is announced once its quiet window has passed
    await waitFor(
      async () =>
        /radflow_gateway_studies_pending 0\b/.test(
          await (await fetch(`http://127.0.0.1:${PORTS.metrics}/metrics`)).text(),
        ) || undefined,
      20_000,
      "no pending study",
    );
    const after = (await studyEvents()).slice(before.length);
    expect(after.length, gw.log.slice(-4000)).toBeGreaterThan(20);
    // …and every distinct acknowledged instance is in its study's latest event
    const latest = new Map<string, (typeof after)[number]>();
    for (const e of after) latest.set(e.event.data.studyInstanceUID, e);
    for (const [uid, e] of latest) {
      const sops = new Set(
        readFileSync(path.join(journalDir, `${uidKey("study", uid)}.jsonl`), "utf8")
          .split("\n")
          .filter((l) => l.startsWith('{"t":"i"'))
          .map((l) => (JSON.parse(l) as { sop: string }).sop),
      );
      expect(e.event.data.series.reduce((n, s) => n + s.numberOfInstances, 0)).toBe(sops.size);
      expect(existsSync(path.join(storageDir, e.event.data.location ?? "nowhere"))).toBe(true);
    }
  });

  it("serves /metrics without identifiers, and /healthz", async () => {
    spawnSync("echoscu", ["-aet", "INTRUDER", "-aec", "RADFLOW", "127.0.0.1", String(PORTS.dicom)]);
    const text = await (await fetch(`http://127.0.0.1:${PORTS.metrics}/metrics`)).text();
    expect(text).toMatch(/radflow_gateway_associations_total\{outcome="rejected-calling-ae"\} [1-9]/);
    expect(text).toMatch(/radflow_gateway_instances_total\{protocol="stow",outcome="stored"\} [1-9]/);
    expect(text).toMatch(/radflow_gateway_assembly_wait_seconds_count [1-9]/);
    expect(text).not.toContain(RUN);
    expect(text).not.toContain("DOE");
    expect((await fetch(`http://127.0.0.1:${PORTS.metrics}/healthz`)).status).toBe(200);
    expect(gw.log).not.toContain(RUN);
    expect(gw.log).not.toContain("DOE^JANE");
  });
  it("a full disk: A700 (out of resources), nothing left half-written, no event", async (ctx) => {
    const tiny = path.join(work, "tiny");
    const full = new GatewayProcess({
      storage: tiny,
      ports: { dicom: PORTS.dicom2, http: 0, metrics: PORTS.metrics2 },
      natsUrl,
      args: DEFAULT_GATEWAY_ARGS,
    });
    mkdirSync(tiny, { recursive: true });
    const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", tiny], { encoding: "utf8" });
    if (m.status !== 0) return ctx.skip(`cannot mount a small tmpfs here (${m.stderr.trim()})`);
    try {
      await stopGateway();
      await full.start(["--quiet-seconds", "1"], {}, 90_000);
      const study = `${RUN}.4`;
      const files = writeFiles(path.join(work, "study4"), makeStudy(study, 1, 3, { pixelBytes: 120_000 }));
      const r = storescuTo(PORTS.dicom2, files, { extra: ["-v"] });
      const ok = (r.stderr.match(/Received Store Response \(Success\)/g) ?? []).length;
      expect(r.stderr).toMatch(/Store Response \(Refused: OutOfResources/i);
      expect(ok).toBeLessThan(3);
      const metrics = await (await fetch(`http://127.0.0.1:${PORTS.metrics2}/metrics`)).text();
      expect(metrics).toMatch(/radflow_gateway_storage_errors_total [1-9]/);
      // nothing half-written: no temporary file is left, and every file in the study tree is whole
      expect(readdirSync(path.join(tiny, ".radflow-gateway/incoming"))).toEqual([]);
      const tree = readdirSync(path.join(tiny, "studies"), { recursive: true })
        .map(String)
        .filter((f) => f.endsWith(".dcm"));
      expect(tree).toHaveLength(ok);
      for (const f of tree) execFileSync("dcmdump", ["-q", path.join(tiny, "studies", f)]);
      // refused instances are in no event (what was acknowledged is announced once space allows)
      await new Promise((res) => setTimeout(res, 2000));
      for (const e of await eventsOf(study)) {
        expect(e.event.data.series[0]?.numberOfInstances ?? 0).toBeLessThanOrEqual(ok);
      }
      if (ok === 0) expect(await eventsOf(study)).toEqual([]);
    } finally {
      await full.stop("SIGKILL");
      spawnSync("umount", [tiny]);
    }
  });
});
