// rsyslog from Debian as the Audit Record Repository: radflow's audit trail sends over TLS
// (RFC 5425, rsyslog's openssl driver, its default 8 KiB maxMessageSize) and every record —
// one of each kind, and a study of 400 SOP classes that once arrived split in three — lands
// whole, one line per record, and each is an AuditMessage the DICOM schema accepts.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_EVENT_KINDS } from "../../src/audit/codes.ts";
import type { AuditFact } from "../../src/audit/facts.ts";
import { AuditTrail } from "../../src/audit/pipeline.ts";
import { withoutShared } from "../support/shared.ts";
import { selfSigned } from "../support/tls-syslog-receiver.ts";
import { convertedSchema, validate } from "../unit/audit/tools.ts";
import { natsUrl, waitFor } from "./helpers.ts";

const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const SPOOL = {
  stream: `RADFLOW_AUDIT_SPOOL_R${RUN}`,
  subject: `radflow.auditspool.rsyslog${RUN}`,
  consumer: `rs-${RUN}`,
};
const dir = mkdtempSync(path.join(tmpdir(), "radflow-rsyslog-"));
const received = path.join(dir, "received.log");
let rsyslog: ChildProcess | undefined;
let port = 0;
let nc: NatsConnection;
const pem = selfSigned();

function rsyslogd(): string {
  for (const p of ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]) if (existsSync(p)) return p;
  throw new Error("rsyslogd is not installed: apt-get install -y rsyslog rsyslog-openssl (hack/deps.sh)");
}

/** A free TCP port below the ephemeral range (32768–60999), from the test's port base. */
async function freePort(): Promise<number> {
  const base = Number(process.env.RADFLOW_TEST_PORT_BASE ?? 20000) + 300;
  for (let p = base; p < Math.min(base + 200, 32768); p++) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once("error", () => resolve(false));
      s.listen(p, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (free) return p;
  }
  throw new Error("no free port for rsyslog");
}

beforeAll(async () => {
  writeFileSync(path.join(dir, "cert.pem"), pem.cert);
  writeFileSync(path.join(dir, "key.pem"), pem.key);
  port = await freePort();
  // Nothing but a TLS input and a file: the raw message, one line each (the AuditMessage is one
  // line), so a record split by the receiver shows as extra, broken lines. maxMessageSize is
  // left at rsyslog's default (8k).
  writeFileSync(
    path.join(dir, "rsyslog.conf"),
    `global(workDirectory="${dir}"
  DefaultNetstreamDriver="ossl"
  DefaultNetstreamDriverCAFile="${dir}/cert.pem"
  DefaultNetstreamDriverCertFile="${dir}/cert.pem"
  DefaultNetstreamDriverKeyFile="${dir}/key.pem")
module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="${port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="${received}" template="raw")
`,
  );
  const check = spawnSync(rsyslogd(), ["-N1", "-f", path.join(dir, "rsyslog.conf")], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`rsyslog rejects the configuration: ${check.stderr}`);
  rsyslog = spawn(rsyslogd(), ["-n", "-f", path.join(dir, "rsyslog.conf"), "-i", path.join(dir, "rsyslogd.pid")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  await waitFor("rsyslog to listen", 20_000, async () => {
    // a whole TLS handshake, so rsyslog logs no aborted session
    const up = await new Promise<boolean>((resolve) => {
      const s = tls.connect({ port, host: "127.0.0.1", ca: pem.cert }, () => {
        s.end();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    return { done: up, seen: up };
  });
  nc = await connect({ servers: natsUrl() });
});

afterAll(async () => {
  rsyslog?.kill("SIGTERM");
  const jsm = nc ? await jetstreamManager(nc) : undefined;
  await jsm?.streams.delete(SPOOL.stream).catch(() => undefined);
  await nc?.drain();
  rmSync(dir, { recursive: true, force: true });
});

const lines = () =>
  existsSync(received)
    ? readFileSync(received, "utf8")
        .split("\n")
        .filter((l) => l !== "")
    : [];

describe("rsyslog as the Audit Record Repository", () => {
  it("receives every kind and a 400-SOP-class study whole over TLS", { timeout: 120_000 }, async () => {
    const trail = new AuditTrail({
      nc,
      syslog: { host: "127.0.0.1", port, ca: pem.cert, connectTimeoutMs: 2000 },
      spool: SPOOL,
      retry: { initialMs: 200, maxMs: 2000 },
    });
    await trail.start();
    const time = new Date().toISOString();
    const facts: AuditFact[] = AUDIT_EVENT_KINDS.map((kind, i) => ({
      id: `rs-${RUN}-${i}`,
      kind,
      time,
      outcome: "success",
      namespace: "radiology",
      workflow: "head-ct",
      ...(kind.startsWith("Workflow") || kind.startsWith("Operator") ? {} : { task: "head-ct-abc123" }),
      study: { studyInstanceUID: `1.2.826.0.1.3680043.10.${i}`, accessionNumber: `A${i}` },
    }));
    const sopClasses = Array.from({ length: 400 }, (_, i) => ({
      uid: `1.2.840.10008.5.1.4.1.1.${1000 + i}`,
      instances: i + 1,
    }));
    facts.push({
      id: `rs-${RUN}-big`,
      kind: "StudyReceived",
      time,
      outcome: "success",
      description: "x".repeat(3000),
      study: { studyInstanceUID: "1.2.826.0.1.3680043.10.999", patientId: "P-999", sopClasses },
    });
    try {
      for (const f of facts) await trail.record(f);
      await waitFor(`${facts.length} records in rsyslog's file`, 60_000, async () => ({
        done: lines().length >= facts.length,
        seen: lines().length,
      }));
      await new Promise((r) => setTimeout(r, 1000)); // room for a split remainder to show up
    } finally {
      await trail.stop();
    }
    const got = lines();
    expect(got.length).toBe(facts.length);
    const docs: Record<string, string> = {};
    got.forEach((l, i) => {
      // <85>1 TIMESTAMP HOST APP PROCID MSGID - BOM<?xml …?><AuditMessage>…</AuditMessage>
      expect(l).toMatch(/^<85>1 \S+ \S+ IHE\+SOLE \S+ \S+ - \uFEFF?<\?xml .*<\/AuditMessage>$/);
      docs[`record-${i}`] = l.slice(l.indexOf("<?xml"));
    });
    expect(got.some((l) => l.includes('type="SOPClassesOmitted"'))).toBe(true);
    if (!withoutShared(import.meta.filename)) expect(validate(convertedSchema(), docs)).toEqual({});
  });
});
