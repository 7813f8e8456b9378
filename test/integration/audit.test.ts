// The audit trail against the real nats-server and a real TLS syslog receiver (Node's tls server
// with a self-signed certificate from openssl): records survive a repository outage and a
// forwarder restart, arrive exactly once and in order, and the FHIR copies land on
// radflow.audit.<kind>. Each run uses a spool stream of its own so leftovers never interfere.
import { DeliverPolicy, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AUDIT_EVENT_KINDS } from "../../src/audit/codes.ts";
import type { AuditFact } from "../../src/audit/facts.ts";
import { AUDIT_STREAM, AuditTrail, type AuditTrailOptions } from "../../src/audit/pipeline.ts";
import { registry } from "../../src/metrics/metrics.ts";
import { SyslogReceiver, selfSigned } from "../support/tls-syslog-receiver.ts";
import { natsUrl, waitFor } from "./helpers.ts";

const RUN = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const SPOOL = {
  stream: `RADFLOW_AUDIT_SPOOL_T${RUN}`,
  subject: `radflow.auditspool.test${RUN}`,
  consumer: `fwd-${RUN}`,
};
const pem = selfSigned();
const receiver = new SyslogReceiver(pem);
let nc: NatsConnection;
let jsm: JetStreamManager;
const trails: AuditTrail[] = [];
const backlog: number[] = [];

function trail(o: Partial<AuditTrailOptions> = {}): AuditTrail {
  const t = new AuditTrail({
    nc,
    syslog: { host: "127.0.0.1", port: receiver.port, ca: pem.cert, connectTimeoutMs: 1000 },
    spool: SPOOL,
    retry: { initialMs: 200, maxMs: 2000 },
    ackWaitMs: 10_000,
    backlogIntervalMs: 300,
    onBacklog: (n) => backlog.push(n),
    ...o,
  });
  trails.push(t);
  return t;
}

let seq = 0;
/** A fact whose sequence number shows in the DICOM message (EventOutcomeDescription). */
function fact(kind = AUDIT_EVENT_KINDS[seq % AUDIT_EVENT_KINDS.length]!): AuditFact & { seq: number } {
  const n = seq++;
  return {
    seq: n,
    id: `it-${RUN}-${n}`,
    kind,
    time: new Date().toISOString(),
    outcome: "success",
    description: `seq-${n}`,
    namespace: "radiology",
    workflow: "head-ct",
    task: "head-ct-abc123",
    study: { studyInstanceUID: `1.2.826.0.1.3680043.10.${n}`, accessionNumber: `A${n}`, calledAETitle: "RADFLOW" },
  };
}

/** Sequence numbers of the messages the receiver got, in arrival order. */
const received = () =>
  receiver.texts().map((t) => {
    const m = /<EventOutcomeDescription>seq-(\d+)<\/EventOutcomeDescription>/.exec(t);
    if (!m) throw new Error(`unexpected message: ${t.slice(0, 200)}`);
    return Number(m[1]);
  });

async function allArrive(expected: number[], timeoutMs = 60_000) {
  await waitFor(`${expected.length} audit records at the repository`, timeoutMs, async () => {
    const got = received();
    return { done: got.length >= expected.length, seen: got };
  });
  await new Promise((r) => setTimeout(r, 1500)); // room for a duplicate to show up
  expect(received()).toEqual(expected);
}

const gauge = async () =>
  (await registry.getSingleMetric("radflow_audit_backlog")!.get()).values.find((v) => v.labels.sink === "syslog")
    ?.value;

beforeAll(async () => {
  await receiver.start();
  nc = await connect({ servers: natsUrl() });
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  await Promise.all(trails.splice(0).map((t) => t.stop()));
});

afterAll(async () => {
  await receiver.stop();
  await jsm?.streams.delete(SPOOL.stream).catch(() => undefined);
  await nc?.drain();
});

describe("audit trail", () => {
  it("keeps records while the repository is down for 30 s, then delivers each exactly once, in order", async () => {
    receiver.messages.length = 0;
    const t = trail();
    await t.start();
    const before = [fact(), fact(), fact()];
    for (const f of before) await t.record(f);
    await allArrive(before.map((f) => f.seq));

    await receiver.stop();
    const downAt = Date.now();
    const during: number[] = [];
    // records keep coming during the outage, some of them concurrently
    for (let i = 0; i < 4; i++) {
      const batch = [fact(), fact(), fact(), fact(), fact()];
      for (const f of batch) await t.record(f); // record() resolves once spooled: the outage does not block producers
      during.push(...batch.map((f) => f.seq));
      await new Promise((r) => setTimeout(r, 1000));
    }
    await waitFor("the backlog to show every spooled record", 10_000, async () => ({
      done: backlog.at(-1) === during.length,
      seen: backlog.slice(-3),
    }));
    expect(await gauge()).toBe(during.length);
    await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - downAt))));
    expect(receiver.messages.length).toBe(before.length);

    await receiver.start(); // same port
    await allArrive([...before.map((f) => f.seq), ...during]);
    await waitFor("the backlog to drain", 10_000, async () => ({
      done: backlog.at(-1) === 0,
      seen: backlog.slice(-3),
    }));
    expect(await gauge()).toBe(0);
  });

  it("hands spooled records to a new forwarder without loss, repeat or reordering", async () => {
    receiver.messages.length = 0;
    await receiver.stop();
    const first = trail();
    await first.start();
    const spooled = Array.from({ length: 12 }, () => fact());
    for (const f of spooled) await first.record(f);
    await new Promise((r) => setTimeout(r, 1000)); // the first forwarder is now retrying the oldest
    await first.stop();

    await receiver.start();
    // the new leader forwards; another replica only records into the same spool
    const leader = trail({ forward: false });
    const other = trail({ forward: false });
    await Promise.all([leader.start(), other.start()]);
    leader.startForwarding();
    const more = [fact(), fact(), fact(), fact()];
    for (const f of more) await (f.seq % 2 ? leader : other).record(f);
    await allArrive([...spooled, ...more].map((f) => f.seq));
  });

  it("publishes the FHIR AuditEvent on radflow.audit.<kind>, once per fact id", async () => {
    const t = trail();
    await t.start();
    const since = new Date(Date.now() - 1000).toISOString();
    const facts = (["TaskCreated", "StepStarted", "TaskSucceeded", "OperatorStarted"] as const).map((k) => fact(k));
    for (const f of facts) await t.record(f);
    await t.record(facts[0]!); // a producer retrying: the same id again

    const js = jetstream(nc);
    const c = await js.consumers.get(AUDIT_STREAM, {
      filter_subjects: ["radflow.audit.>"],
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: since,
    });
    const mine = new Map<
      string,
      { subject: string; body: { resourceType: string; type: { code: string }; recorded: string }; n: number }
    >();
    const ids = new Set(facts.map((f) => f.id));
    await waitFor("the FHIR events", 20_000, async () => {
      for (;;) {
        const m = await c.next({ expires: 1000 });
        if (!m) break;
        const id = m.headers?.get("Nats-Msg-Id") ?? "";
        if (!ids.has(id)) continue;
        const prev = mine.get(id);
        mine.set(id, { subject: m.subject, body: m.json(), n: (prev?.n ?? 0) + 1 });
      }
      return { done: mine.size === facts.length, seen: [...mine.keys()] };
    });
    for (const f of facts) {
      const got = mine.get(f.id)!;
      expect(got.subject).toBe(`radflow.audit.${f.kind}`);
      expect(got.n).toBe(1);
      expect(got.body.resourceType).toBe("AuditEvent");
      expect(got.body.recorded).toBe(f.time.toUpperCase());
    }
    expect(mine.get(facts[3]!.id)!.body.type.code).toBe("110100");
    // the syslog copy of the repeated fact is not sent twice either
    await allArrive([...received().filter((s) => s < facts[0]!.seq), ...facts.map((f) => f.seq)]);
  });
});
