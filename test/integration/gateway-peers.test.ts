// `radflow gateway` judged by peers nobody here wrote: dcmtk's storescu/echoscu as senders,
// dcmtk's storescp (bit-preserving) as the reference receiver, dcmdump as the reader, xmllint and
// HL7's R4 checker for the PS3.15 records, and a real nats-server. Ports 24200-24299 (the other
// gateway test uses 23100+).
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir, hostname, tmpdir } from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { StudyReceivedEvent } from "../../src/api/v1alpha1/events.ts";
import type { FhirAuditEvent } from "../../src/audit/fhir-audit-event.ts";
import { AUDIT_STREAM, SPOOL_STREAM } from "../../src/audit/pipeline.ts";
import { uidKey } from "../../src/gateway/storage.ts";
import {
  DEFAULT_GATEWAY_ARGS,
  type GatewayPorts,
  GatewayProcess,
  type NatsServer,
  pydicomFiles,
  startNats,
  storescuAsync,
  storescu as storescuTo,
  waitFor as waitForIt,
  writeFiles,
} from "../support/gateway-process.ts";
import { withoutShared } from "../support/shared.ts";
import { TestPki } from "../support/test-pki.ts";
import { convertedSchema, validate } from "../unit/audit/tools.ts";
import { makeInstance, makeStudy } from "../unit/gateway/dicom-fixture.ts";

const BIN = (inject("toolsBin") as string | undefined) || path.join(homedir(), ".cache/radflow/bin");
const BASE = Number(process.env.RADFLOW_GATEWAY_PEERS_PORT_BASE ?? 24200);
const PORTS = {
  nats: BASE + 22,
  dicom: BASE + 4,
  http: BASE + 80,
  metrics: BASE + 90,
  storescp: BASE + 10,
  tlsDicom: BASE + 30,
  tlsHttp: BASE + 32,
  tlsMetrics: BASE + 34,
  rep1Dicom: BASE + 40,
  rep1Http: BASE + 42,
  rep1Metrics: BASE + 44,
  rep2Dicom: BASE + 46,
  rep2Http: BASE + 48,
  rep2Metrics: BASE + 50,
};
const RUN = `1.2.826.0.1.3680043.10.1099.${(Date.now() % 1e9) + 7}`;
const work = mkdtempSync(path.join(tmpdir(), "rf-gw-peers-"));
let nats: NatsServer | undefined;
let nc: NatsConnection;

const waitFor = <T>(f: () => Promise<T | undefined> | T | undefined, ms = 30_000, what = "condition") =>
  waitForIt(f, ms, what);

/** A gateway process with its own storage and ports, auditing to the syslog spool too. */
class GatewayProc extends GatewayProcess {
  constructor(name: string, ports: GatewayPorts, storage?: string) {
    super({
      storage: storage ?? path.join(work, name),
      ports,
      natsUrl: `nats://127.0.0.1:${PORTS.nats}`,
      args: [...DEFAULT_GATEWAY_ARGS, "--quiet-seconds", "1", "--audit", "syslog"],
      env: { RADFLOW_PHI_HMAC_KEY: "gateway-peers-key-0123456789" },
    });
  }
}

/** Every message of a stream (optionally one subject), parsed as JSON or kept as text. */
async function streamMessages(stream: string, subject?: string): Promise<{ subject: string; data: string }[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(stream).catch(() => undefined);
  if (!info) return [];
  const out: { subject: string; data: string }[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (m && (!subject || m.subject === subject)) out.push({ subject: m.subject, data: m.string() });
  }
  return out;
}

type StudyEvent = StudyReceivedEvent & { radflowrevision?: number };
async function studyEvents(): Promise<StudyEvent[]> {
  return (await streamMessages("RADFLOW_STUDIES")).map((m) => JSON.parse(m.data) as StudyEvent);
}

/** The gateway's FHIR AuditEvents about a study. */
async function auditEventsOf(study: string): Promise<(FhirAuditEvent & { kind: string })[]> {
  return (await streamMessages(AUDIT_STREAM))
    .filter((m) => m.subject.endsWith("BeginTransferring") || m.subject.endsWith("InstancesTransferred"))
    .map((m) => ({ ...(JSON.parse(m.data) as FhirAuditEvent), kind: m.subject.split(".").at(-1) as string }))
    .filter((e) => e.entity?.some((x) => x.what.identifier?.value === `urn:oid:${study}`));
}

const storescu = (port: number, files: string[], extra: string[] = [], calling = "CT_EAST") =>
  storescuTo(port, files, { calling, extra });

/** The data set of a Part-10 file: what follows the preamble and the meta group. */
function dataSetOf(file: string): Buffer {
  const b = readFileSync(file);
  return b.subarray(144 + b.readUInt32LE(140));
}

/** Attributes as dcmdump prints them (meta included, UIDs as numbers), by tag ("0002,0010"). */
function dcmAttrs(file: string, tags: string[]): Record<string, string | undefined> {
  // +p prefixes a nested element with its sequence path, so only top-level ones match below
  const r = spawnSync("dcmdump", ["-q", "-M", "-Un", "+p", ...tags.flatMap((t) => ["+P", t]), file], {
    encoding: "utf8",
  });
  const out: Record<string, string | undefined> = {};
  for (const line of r.stdout.split("\n")) {
    const tag = /^\(([0-9a-f]{4},[0-9a-f]{4})\) /i.exec(line)?.[1]?.toLowerCase();
    const v = /\[([^\]]*)\]/.exec(line)?.[1]?.trim();
    if (tag && out[tag] === undefined && v) out[tag] = v;
  }
  return out;
}

const missing = ["storescu", "storescp", "echoscu", "dcmdump", "xmllint"].filter(
  (t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0,
);
const natsBin = path.join(BIN, "nats-server");

describe.skipIf(missing.length > 0 || !existsSync(natsBin))("radflow gateway against dcmtk peers", () => {
  const gw = new GatewayProc("a", { dicom: PORTS.dicom, http: PORTS.http, metrics: PORTS.metrics });

  beforeAll(async () => {
    nats = await startNats(natsBin, PORTS.nats, path.join(work, "js"));
    nc = nats.nc;
    await gw.start();
  }, 180_000);

  afterAll(async () => {
    await gw.stop();
    await nats?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  describe("PS3.15 audit of received studies", () => {
    it("storescu: Begin Transferring and DICOM Instances Transferred, the sending AE and its address as Source, the patient", async () => {
      const study = `${RUN}.1`;
      const files = writeFiles(path.join(work, "a1"), makeStudy(study, 2, 2, { pixelBytes: 2000 }));
      const r = storescu(PORTS.dicom, files);
      expect(r.status, r.stderr).toBe(0);
      const evs = await waitFor(async () => {
        const e = await auditEventsOf(study);
        return e.length >= 2 ? e : undefined;
      });
      expect(evs.map((e) => [e.kind, e.outcome])).toEqual([
        ["BeginTransferring", "0"],
        ["InstancesTransferred", "0"],
      ]);
      const done = evs[1] as FhirAuditEvent;
      expect(done.type.code).toBe("110104");
      expect(done.action).toBe("C");
      expect(evs[0]?.type.code).toBe("110102");
      const source = done.agent.find((a) => a.type.coding.some((c) => c.code === "110153"));
      expect(source).toMatchObject({
        altId: "AETITLES=CT_EAST",
        requestor: true,
        network: { address: "127.0.0.1", type: "2" },
      });
      const dest = done.agent.find((a) => a.type.coding.some((c) => c.code === "110152"));
      expect(dest?.altId).toBe("AETITLES=RADFLOW");
      expect(done.agent[0]?.who.display).toBe("radflow-gateway");
      const patient = done.entity?.find((e) => e.role.code === "1");
      expect(patient?.what.identifier?.value).toBe("PID-GW-1");
      expect(done.entity?.[0]?.detail).toEqual([{ type: "SOPClass", valueString: "1.2.840.10008.5.1.4.1.1.2 (4)" }]);
      // the DICOM AuditMessages wait in the operator's syslog spool, valid against the schema
      const spooled = (await streamMessages(SPOOL_STREAM)).map((m) => m.data).filter((d) => d.includes(study));
      expect(spooled).toHaveLength(2);
      expect(spooled[1]).toContain('NetworkAccessPointID="127.0.0.1" NetworkAccessPointTypeCode="2"');
      if (!withoutShared(import.meta.filename)) {
        const rng = convertedSchema();
        const docs = Object.fromEntries(spooled.map((s, i) => [`m${i}`, s.slice(s.indexOf("<?xml"))]));
        expect(validate(rng, docs)).toEqual({});
      }
      // identifiers are in the audit records, never in the gateway's logs
      expect(gw.log).not.toContain(study);
      expect(gw.log).not.toContain("PID-GW-1");
    });

    it("STOW-RS: the client's address as Source; an instance of another study is a failure with its reason", async () => {
      const study = `${RUN}.2`;
      const other = makeInstance({ study: `${RUN}.3`, series: `${RUN}.3.1`, sop: `${RUN}.3.1.1` });
      const boundary = "gw-peers";
      const res = await fetch(`http://127.0.0.1:${PORTS.http}/studies/${study}`, {
        method: "POST",
        headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
        body: Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
          other,
          Buffer.from(`\r\n--${boundary}--\r\n`),
        ]),
      });
      expect(res.status).toBe(409);
      const evs = await waitFor(async () => {
        const e = await auditEventsOf(`${RUN}.3`);
        return e.length >= 2 ? e : undefined;
      });
      const done = evs.find((e) => e.kind === "InstancesTransferred") as FhirAuditEvent;
      expect(done.outcome).toBe("8");
      expect(done.outcomeDesc).toContain("instances refused (1 mismatch)");
      const source = done.agent.find((a) => a.type.coding.some((c) => c.code === "110153"));
      expect(source).toMatchObject({ who: { display: "DICOMweb STOW-RS client" }, network: { address: "127.0.0.1" } });
    });
  });

  describe("the real DICOM files pydicom ships", () => {
    it("every storage instance storescu sends is stored as sent: same transfer syntax, the bytes storescp (bit-preserving) keeps, and the event's series match the headers", {
      timeout: 900_000,
    }, async (ctx) => {
      const py = pydicomFiles();
      if ("skip" in py) return ctx.skip(py.skip);
      const all = py.files;
      // storage instances: a storage SOP class and a study (dcmdump is the reader, not our code)
      const storage = all
        .map((f) => {
          const a = dcmAttrs(f, ["0002,0002", "0002,0010", "0020,000d", "0020,000e", "0008,0018", "0008,0060"]);
          return {
            f,
            sopClass: a["0002,0002"],
            ts: a["0002,0010"],
            study: a["0020,000d"],
            series: a["0020,000e"],
            sop: a["0008,0018"],
            modality: a["0008,0060"],
          };
        })
        .filter((x) => x.sopClass?.startsWith("1.2.840.10008.5.1.4.1.1.") && x.study && x.series && x.sop && x.ts);
      expect(storage.length).toBeGreaterThan(50);

      // storescu sends a file in its own transfer syntax only when told to propose it
      const PROPOSE: Record<string, string> = {
        "1.2.840.10008.1.2.1": "-xe",
        "1.2.840.10008.1.2": "-xi",
        "1.2.840.10008.1.2.2": "-xb",
        "1.2.840.10008.1.2.1.99": "-xd",
        "1.2.840.10008.1.2.4.50": "-xy",
        "1.2.840.10008.1.2.4.51": "-xx",
        "1.2.840.10008.1.2.4.70": "-xs",
        "1.2.840.10008.1.2.4.90": "-xv",
        "1.2.840.10008.1.2.4.91": "-xw",
        "1.2.840.10008.1.2.4.80": "-xt",
        "1.2.840.10008.1.2.4.81": "-xu",
        "1.2.840.10008.1.2.5": "-xr",
      };
      // the reference receiver: dcmtk's storescp writing what it received bit for bit (+B)
      const refRoot = path.join(work, "storescp");
      mkdirSync(refRoot, { recursive: true });
      const scp = spawn("storescp", ["+B", "+xa", "-od", refRoot, "-uf", String(PORTS.storescp)], { stdio: "ignore" });
      try {
        await new Promise((r) => setTimeout(r, 1000));
        const sent = new Map<string, (typeof storage)[number]>();
        const groups = new Map<string, typeof storage>();
        for (const x of storage) groups.set(x.ts as string, [...(groups.get(x.ts as string) ?? []), x]);
        const differs: string[] = [];
        const notSent: string[] = [];
        for (const [ts, xs] of groups) {
          const opt = PROPOSE[ts];
          if (!opt) {
            // dcmtk's storescu has no option proposing it (e.g. JPEG Lossless, non-SV1): not sendable as is
            process.stderr.write(`gateway-peers: ${xs.length} file(s) in ${ts} skipped: storescu cannot propose it\n`);
            continue;
          }
          // several files share a SOP Instance UID (one image in several syntaxes): compare per group,
          // where the last one sent is what both receivers keep
          for (const f of readdirSync(refRoot)) rmSync(path.join(refRoot, f), { force: true });
          const acked = new Map<string, (typeof storage)[number]>();
          const ackedFiles = new Set<string>();
          const r = storescu(
            PORTS.dicom,
            xs.map((x) => x.f),
            ["-R", opt, "-v"],
            "STORESCU",
          );
          const ackedBy = (stderr: string) => {
            const out: (typeof storage)[number][] = [];
            for (const block of stderr.split("Sending file: ").slice(1)) {
              const name = block.split("\n")[0]?.trim();
              const x = xs.find((y) => y.f === name);
              if (x && /Received Store Response \(Success\)/.test(block)) out.push(x);
            }
            return out;
          };
          for (const x of ackedBy(r.stderr)) {
            acked.set(x.sop as string, x);
            ackedFiles.add(x.f);
          }
          const reference = storescu(
            PORTS.storescp,
            xs.map((x) => x.f),
            ["-R", opt, "-v"],
            "STORESCU",
          );
          // what storescu cannot send even to storescp (it fails to read the file) is the sender's limit
          for (const x of ackedBy(reference.stderr)) {
            if (!ackedFiles.has(x.f)) notSent.push(`${path.basename(x.f)} (${ts})`);
          }
          const ref = new Map<string, string>();
          for (const f of readdirSync(refRoot).map((f) => path.join(refRoot, f))) {
            const sop = dcmAttrs(f, ["0008,0018"])["0008,0018"] ?? "";
            const prev = ref.get(sop);
            if (!prev || statSync(f).mtimeMs >= statSync(prev).mtimeMs) ref.set(sop, f);
          }
          for (const [sop, x] of acked) {
            sent.set(sop, x);
            const mine = path.join(
              gw.storage,
              "studies",
              uidKey("study", x.study as string),
              uidKey("series", x.series as string, 16),
              `${uidKey("sop", sop)}.dcm`,
            );
            const theirs = ref.get(sop);
            if (!existsSync(mine) || !theirs) {
              differs.push(
                `${path.basename(x.f)}: ${existsSync(mine) ? "" : "not stored"} ${theirs ? "" : "not in storescp"}`,
              );
              continue;
            }
            if (dcmAttrs(mine, ["0002,0010"])["0002,0010"] !== ts)
              differs.push(`${path.basename(x.f)}: transfer syntax changed`);
            if (!dataSetOf(mine).equals(dataSetOf(theirs))) differs.push(`${path.basename(x.f)}: data set differs`);
          }
        }
        process.stderr.write(
          `gateway-peers: ${storage.length} storage files, ${sent.size} distinct instances stored as sent\n`,
        );
        expect(sent.size).toBeGreaterThanOrEqual(30);
        // every storage file reached the gateway, whatever its transfer syntax, and is kept as sent —
        // except one whose header dcmjs cannot parse (dcmtk can): refused with C000, a known gap
        expect(notSent).toEqual(["J2K_pixelrep_mismatch.dcm (1.2.840.10008.1.2.4.90)"]);
        expect(differs).toEqual([]);

        // the study events: each series as the headers say (instances, modality)
        await waitFor(
          async () =>
            /radflow_gateway_studies_pending 0\b/.test(
              await (await fetch(`http://127.0.0.1:${PORTS.metrics}/metrics`)).text(),
            ) || undefined,
          30_000,
          "no pending study",
        );
        const latest = new Map<string, StudyEvent>();
        for (const e of await studyEvents()) latest.set(e.data.studyInstanceUID, e);
        const want = new Map<string, Map<string, { n: Set<string>; modality?: string }>>();
        for (const x of sent.values()) {
          const s = want.get(x.study as string) ?? new Map();
          const se = s.get(x.series as string) ?? { n: new Set<string>(), modality: x.modality };
          se.n.add(x.sop as string);
          s.set(x.series as string, se);
          want.set(x.study as string, s);
        }
        const mismatches: string[] = [];
        for (const [study, series] of want) {
          const ev = latest.get(study);
          if (!ev) {
            mismatches.push(`study ${study}: no event`);
            continue;
          }
          for (const [uid, se] of series) {
            const got = ev.data.series.find((s) => s.seriesInstanceUID === uid);
            if (!got) mismatches.push(`series ${uid}: missing`);
            else {
              if (got.numberOfInstances < se.n.size)
                mismatches.push(`series ${uid}: ${got.numberOfInstances} < ${se.n.size}`);
              if (se.modality && got.modality !== se.modality)
                mismatches.push(`series ${uid}: modality ${got.modality}`);
            }
          }
        }
        expect(mismatches).toEqual([]);
      } finally {
        scp.kill("SIGTERM");
      }
    });
  });

  describe("DICOM TLS and STOW-RS authentication", () => {
    const tls = new GatewayProc("tls", { dicom: PORTS.tlsDicom, http: PORTS.tlsHttp, metrics: PORTS.tlsMetrics });
    const pki = new TestPki(path.join(work, "pki"));
    const f = (n: string) => pki.file(n);
    /** A key and a certificate signed by the test CA (or self-signed: a sender nobody trusts). */
    const cert = (name: string, cn: string, signed = true) =>
      pki.cert(name, cn, "subjectAltName=IP:127.0.0.1,DNS:localhost", signed ? "ca" : null);
    const echo = (extra: string[]) =>
      spawnSync("echoscu", ["-aet", "CT_EAST", "-aec", "RADFLOW", ...extra, "127.0.0.1", String(PORTS.tlsDicom)], {
        encoding: "utf8",
        timeout: 60_000,
      });

    beforeAll(async () => {
      pki.ca("ca");
      cert("gateway", "localhost");
      cert("modality", "CT_EAST");
      cert("rogue", "CT_EAST", false);
      writeFileSync(f("tokens"), "# STOW-RS clients\nsecret-token-one\nsecret-token-two\n");
      await tls.start([
        ...["--tls-cert", f("gateway.crt"), "--tls-key", f("gateway.key"), "--tls-ca", f("ca.crt")],
        ...["--stow-token-file", f("tokens")],
      ]);
    }, 180_000);
    afterAll(async () => {
      await tls.stop();
    });

    it("echoscu and storescu over TLS with a certificate the CA signed; plain TCP and an unknown certificate are refused", async () => {
      const client = ["+tls", f("modality.key"), f("modality.crt"), "-pw", "+cf", f("ca.crt")];
      const ok = echo(client);
      expect(ok.status, ok.stderr).toBe(0);
      const plain = echo([]);
      expect(plain.status).not.toBe(0);
      const rogue = echo(["+tls", f("rogue.key"), f("rogue.crt"), "-pw", "+cf", f("ca.crt")]);
      expect(rogue.status).not.toBe(0);

      const study = `${RUN}.7`;
      const files = writeFiles(path.join(work, "tls1"), makeStudy(study, 1, 3, { pixelBytes: 2000 }));
      const r = storescu(PORTS.tlsDicom, files, client);
      expect(r.status, r.stderr).toBe(0);
      const ev = await waitFor(async () => (await studyEvents()).find((e) => e.data.studyInstanceUID === study));
      expect(ev.data.series[0]?.numberOfInstances).toBe(3);
      const m = await (await fetch(`http://127.0.0.1:${PORTS.tlsMetrics}/metrics`)).text();
      expect(m).toMatch(/radflow_gateway_associations_total\{outcome="rejected-tls"\} [1-9]/);
    });

    it("STOW-RS: 401 without a token or with a wrong one, stored with one of the file's tokens", async () => {
      const study = `${RUN}.8`;
      const boundary = "gw-auth";
      const body = () =>
        Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
          makeInstance({ study, series: `${study}.1`, sop: `${study}.1.1` }),
          Buffer.from(`\r\n--${boundary}--\r\n`),
        ]);
      const post = (auth?: string) =>
        fetch(`http://127.0.0.1:${PORTS.tlsHttp}/studies`, {
          method: "POST",
          headers: {
            "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
            ...(auth ? { authorization: auth } : {}),
          },
          body: body(),
        });
      const none = await post();
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer realm=/);
      const wrong = await post("Bearer not-a-token");
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get("www-authenticate")).toContain('error="invalid_token"');
      const basic = await post("Basic c2VjcmV0LXRva2VuLXR3bw==");
      expect(basic.status).toBe(401);
      const ok = await post("Bearer secret-token-two");
      expect(ok.status).toBe(200);
      expect(tls.log).not.toContain("secret-token");
      const m = await (await fetch(`http://127.0.0.1:${PORTS.tlsMetrics}/metrics`)).text();
      expect(m).toMatch(/radflow_gateway_stow_unauthorized_total 3\b/);
    });
  });

  describe("security alerts", () => {
    /** The gateway's Security Alerts (FHIR) in the audit stream, and the DICOM AuditMessages spooled. */
    const alerts = async () => ({
      fhir: (await streamMessages(AUDIT_STREAM))
        .filter((m) => m.subject.endsWith(".NodeAuthenticationFailed"))
        .map((m) => JSON.parse(m.data) as FhirAuditEvent),
      dicom: (await streamMessages(SPOOL_STREAM)).map((m) => m.data).filter((d) => d.includes('csd-code="110126"')),
    });

    it("refused nodes — a TLS handshake without the CA's certificate, STOW-RS 401s, an unknown calling AE title — are Security Alerts, one per node and reason", async () => {
      // (the TLS and STOW-RS refusals above already happened; one unknown calling AE title now)
      const intruder = spawnSync("echoscu", ["-aet", "INTRUDER", "-aec", "RADFLOW", "127.0.0.1", String(PORTS.dicom)], {
        encoding: "utf8",
      });
      expect(intruder.status).not.toBe(0);
      const got = await waitFor(async () => {
        const a = await alerts();
        const intruderSeen = a.fhir.some((e) => e.outcomeDesc?.includes("calling AE title"));
        return intruderSeen && a.fhir.length >= 3 && a.dicom.length >= 3 ? a : undefined;
      });
      // one record per node and reason; a node refused again within the window (plain TCP, then the
      // rogue certificate; three STOW-RS 401s) adds one summary with the count when the window
      // ends — here when that gateway stopped
      const why = [...new Set(got.fhir.map((e) => e.outcomeDesc?.replace(/: \d+ more refusal.*$/, "")))].sort();
      expect(
        got.fhir.some((e) =>
          /^STOW-RS request refused: .*: 2 more refusal\(s\) of this node/.test(e.outcomeDesc ?? ""),
        ),
      ).toBe(true);
      expect(why).toEqual([
        "DICOM TLS handshake refused: no certificate the gateway's CA signed",
        "STOW-RS request refused: missing or invalid bearer token",
        "association rejected: calling AE title not recognized",
      ]);
      for (const e of got.fhir) {
        expect([e.type.code, e.action, e.outcome]).toEqual(["110113", "E", "4"]);
        expect(e.subtype?.map((c) => c.code)).toContain("110126");
        const node = e.agent.find((a) => a.requestor === false && a.network?.address === "127.0.0.1");
        expect(node, JSON.stringify(e.agent)).toBeDefined();
      }
      const ae = got.fhir.find((e) => e.outcomeDesc?.includes("calling AE"));
      expect(ae?.agent.some((a) => a.who.display === "INTRUDER")).toBe(true);
      expect(ae?.entity?.[0]?.what.identifier?.value).toBe(`dicom://${hostname()}:${PORTS.dicom}`);
      // the DICOM AuditMessages are valid against the schema, as every other record
      if (!withoutShared(import.meta.filename)) {
        const docs = Object.fromEntries(got.dicom.map((s, i) => [`a${i}`, s.slice(s.indexOf("<?xml"))]));
        expect(validate(convertedSchema(), docs)).toEqual({});
      }
      const m = await gw.metrics();
      expect(m).toMatch(/radflow_gateway_security_alerts_total\{outcome="recorded"\} [1-9]/);
    });
  });

  describe("two replicas on one volume", () => {
    const shared = path.join(work, "shared-volume");
    const r1 = new GatewayProc(
      "r1",
      { dicom: PORTS.rep1Dicom, http: PORTS.rep1Http, metrics: PORTS.rep1Metrics },
      shared,
    );
    const r2 = new GatewayProc(
      "r2",
      { dicom: PORTS.rep2Dicom, http: PORTS.rep2Http, metrics: PORTS.rep2Metrics },
      shared,
    );
    beforeAll(async () => {
      await Promise.all([r1.start(["--quiet-seconds", "3"]), r2.start(["--quiet-seconds", "3"])]);
    }, 240_000);
    afterAll(async () => {
      await Promise.all([r1.stop(), r2.stop()]);
    });

    /** storescu in the background: both replicas receive the same study at the same time. */
    const send = (port: number, files: string[]) => storescuAsync(port, files);
    const metric = async (g: GatewayProc, re: RegExp) =>
      Number(re.exec(await (await fetch(`http://127.0.0.1:${g.ports.metrics}/metrics`)).text())?.[1] ?? 0);

    it("instances of one study sent to both at once: one study event with all of them, no revision taken twice", async () => {
      const study = `${RUN}.9`;
      const all = makeStudy(study, 2, 8, { pixelBytes: 20_000 });
      // series 1 to one replica, series 2 to the other, interleaved in time
      const a = writeFiles(path.join(work, "rep-a"), all.slice(0, 8));
      const b = writeFiles(path.join(work, "rep-b"), all.slice(8));
      expect(await Promise.all([send(PORTS.rep1Dicom, a), send(PORTS.rep2Dicom, b)])).toEqual([0, 0]);
      const evs = await waitFor(
        async () => {
          const e = (await studyEvents()).filter((x) => x.data.studyInstanceUID === study);
          return e.length && e.at(-1)?.data.series.reduce((n, s) => n + s.numberOfInstances, 0) === 16 ? e : undefined;
        },
        60_000,
        "one event with all 16 instances",
      );
      await new Promise((r) => setTimeout(r, 4000)); // a second event would come within a window
      const final = (await studyEvents()).filter((x) => x.data.studyInstanceUID === study);
      expect(final.map((e) => [e.id, e.radflowrevision])).toEqual([[evs[0]?.id, 0]]);
      expect(final[0]?.data.series.map((s) => s.numberOfInstances)).toEqual([8, 8]);
      // neither replica published a revision the other had (JetStream would have dropped it as a duplicate)
      const dup = /radflow_gateway_study_events_total\{kind="[a-z]+",outcome="duplicate"\} (\d+)/;
      expect([await metric(r1, dup), await metric(r2, dup)]).toEqual([0, 0]);
      // the shared journal holds every instance once and one intent with its done record
      const journal = readFileSync(
        path.join(shared, ".radflow-gateway/journal", `${uidKey("study", study)}.jsonl`),
        "utf8",
      )
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { t: string; rev?: number; n?: number });
      expect(journal.filter((r) => r.t === "i")).toHaveLength(16);
      expect(journal.filter((r) => r.t === "p").map((r) => [r.rev, r.n])).toEqual([[0, 16]]);
      expect(journal.filter((r) => r.t === "d").map((r) => r.rev)).toEqual([0]);
    });

    it("a late instance at the other replica: a follow-up with the next revision, never the same one", async () => {
      const study = `${RUN}.10`;
      const all = makeStudy(study, 1, 4, { pixelBytes: 2000 });
      const files = writeFiles(path.join(work, "rep-late"), all);
      expect(await send(PORTS.rep1Dicom, files.slice(0, 3))).toBe(0);
      await waitFor(async () => (await studyEvents()).find((x) => x.data.studyInstanceUID === study), 60_000);
      expect(await send(PORTS.rep2Dicom, files.slice(3))).toBe(0);
      const evs = await waitFor(async () => {
        const e = (await studyEvents()).filter((x) => x.data.studyInstanceUID === study);
        return e.length === 2 ? e : undefined;
      }, 60_000);
      expect(evs.map((e) => [e.radflowrevision, e.data.series[0]?.numberOfInstances])).toEqual([
        [0, 3],
        [1, 4],
      ]);
      expect(evs[1]?.id).toBe(`${uidKey("study", study)}-1`);
    });
  });
});
