// Study ingest against the real nats-server (JetStream) and the real API server: StudyIngest runs
// in-process with a static list of Ready AIWorkflows. Each test publishes on a subject of its
// own under radflow.study.> and reads it with a durable consumer of its own, so events left in
// the shared stream by other tests or runs never reach it.
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { DeadLetter, eventKey, STUDY_RECEIVED } from "../../src/api/v1alpha1/events.ts";
import { InferenceTask } from "../../src/api/v1alpha1/inferencetask.ts";
import type { AuditFact } from "../../src/audit/facts.ts";
import { StudyIngest, type StudyIngestOptions } from "../../src/ingest/consumer.ts";
import { publishResults, resultMsgId } from "../../src/ingest/results.ts";
import { taskName } from "../../src/ingest/route.ts";
import { ensureStreams, STREAM } from "../../src/ingest/streams.ts";
import { mergePatch } from "../../src/kube/client.ts";
import { writeImage } from "../support/dump2dcm.ts";
import { installCrds } from "./crds.ts";
import { core, custom, kubeConfig, natsUrl, useNamespace, waitFor } from "./helpers.ts";

const run = promisify(execFile);
const ns = useNamespace("ingest");
const RUN = `${Date.now() % 1_000_000}`;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const started: { ingest: StudyIngest; consumer: string; subject: string }[] = [];

beforeAll(async () => {
  await installCrds();
  nc = await connect({ servers: natsUrl() });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await ensureStreams(jsm);
});

afterAll(async () => {
  for (const s of started) {
    await s.ingest.stop();
    await jsm.consumers.delete(STREAM.studies, s.consumer).catch(() => undefined);
    // leave no test events behind for other consumers of the shared stream
    await jsm.streams.purge(STREAM.studies, { filter: s.subject }).catch(() => undefined);
  }
  await nc?.drain();
});

function workflow(name: string, match: AIWorkflow["spec"]["trigger"], namespace = ns.name): AIWorkflow {
  return AIWorkflow.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name, namespace, uid: `uid-${RUN}-${name}`, generation: 1 },
    spec: { priority: "stat", trigger: match, steps: [{ name: "infer", image: "registry.example.org/model:1" }] },
    status: {
      conditions: [{ type: "Ready", status: "True", reason: "Valid", lastTransitionTime: "2025-01-01T00:00:00Z" }],
    },
  });
}

/** A fresh subject and consumer for one test, and an ingest reading them. */
async function startIngest(
  label: string,
  workflows: AIWorkflow[],
  extra: Partial<StudyIngestOptions> = {},
): Promise<{ subject: string; ingest: StudyIngest; audit: AuditFact[] }> {
  const subject = `radflow.study.test-${RUN}-${label}`;
  const consumer = `test-${RUN}-${label}`;
  const audit: AuditFact[] = [];
  const ingest = new StudyIngest({
    nc,
    kubeConfig: kubeConfig(),
    workflows: { list: () => workflows },
    audit: { record: async (f) => void audit.push(f) },
    consumer,
    subjects: [subject],
    retryBaseMs: 200,
    retryMaxMs: 1_000,
    lagIntervalMs: 500,
    ...extra,
  });
  await ingest.start();
  started.push({ ingest, consumer, subject });
  return { subject, ingest, audit };
}

let uidSeq = 0;
function studyEvent(id: string, modality: string, bodyPart?: string) {
  const uid = `1.2.826.0.1.3680043.8.498.${RUN}.${++uidSeq}`;
  return {
    specversion: "1.0",
    id,
    source: "/test/ingest",
    type: STUDY_RECEIVED,
    time: new Date().toISOString(),
    data: {
      studyInstanceUID: uid,
      accessionNumber: `A${uidSeq}`,
      callingAETitle: "CT01",
      series: [{ seriesInstanceUID: `${uid}.1`, modality, bodyPartExamined: bodyPart, numberOfInstances: 3 }],
    },
  };
}

async function tasks(namespace = ns.name): Promise<InferenceTask[]> {
  const r = (await custom().listNamespacedCustomObject({
    group: "radflow.io",
    version: "v1alpha1",
    namespace,
    plural: "inferencetasks",
  })) as { items: unknown[] };
  return r.items.map((i) => InferenceTask.parse(i));
}

async function dlqLastSeq(): Promise<number> {
  return (await jsm.streams.info(STREAM.dlq)).state.last_seq;
}

/** DLQ records after `afterSeq` whose original subject is `subject`. */
async function dlq(afterSeq: number, subject: string): Promise<{ record: DeadLetter; reasonHeader?: string }[]> {
  const last = await dlqLastSeq();
  const out: { record: DeadLetter; reasonHeader?: string }[] = [];
  if (last <= afterSeq) return out;
  const c = await js.consumers.get(STREAM.dlq, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: afterSeq + 1,
  });
  const it = await c.fetch({ max_messages: last - afterSeq, expires: 5_000 });
  for await (const m of it) {
    const record = DeadLetter.parse(m.json());
    if (record.subject === subject) out.push({ record, reasonHeader: m.headers?.get("Radflow-Reason") });
    if (m.seq >= last) break;
  }
  return out;
}

async function drained(consumer: string): Promise<boolean> {
  const ci = await jsm.consumers.info(STREAM.studies, consumer);
  return ci.num_pending === 0 && ci.num_ack_pending === 0;
}

describe("study ingest", () => {
  it("turns a study event into an InferenceTask named from the workflow and event", async () => {
    const wf = workflow("head-ct", { match: { modalities: ["CT"], bodyParts: ["head"] } });
    const { subject, audit } = await startIngest("one", [wf]);
    const ev = studyEvent(`one-${RUN}`, "CT", "HEAD");
    await js.publish(subject, JSON.stringify(ev), { msgID: ev.id });

    const name = taskName("head-ct", wf.metadata.uid as string, ev);
    const task = await waitFor(`InferenceTask ${name}`, 30_000, async () => {
      const t = (await tasks()).find((x) => x.metadata.name === name);
      return { done: !!t, value: t };
    });
    expect(task.metadata.labels?.["radflow.io/workflow"]).toBe("head-ct");
    expect(task.spec).toMatchObject({
      workflowRef: { name: "head-ct", uid: wf.metadata.uid, generation: 1 },
      priority: "stat",
      eventId: ev.id,
      study: { studyInstanceUID: ev.data.studyInstanceUID, accessionNumber: ev.data.accessionNumber },
    });
    expect(task.spec.steps.map((s) => s.name)).toEqual(["infer"]);
    await waitFor("the message acknowledged", 10_000, async () => ({ done: await drained(`test-${RUN}-one`) }));
    expect(audit.map((f) => f.kind).sort()).toEqual(["StudyReceived", "TaskCreated"]);
    expect(audit.find((f) => f.kind === "TaskCreated")?.study?.studyInstanceUID).toBe(ev.data.studyInstanceUID);
  });

  it("gives one task for a duplicate publish, a repeated event id and a task that already existed", async () => {
    const wf = workflow("dup-ct", { match: { modalities: ["CT"] } });
    // an earlier delivery that crashed after creating the task and before acking
    const pre = studyEvent(`pre-${RUN}`, "CT");
    const preName = taskName("dup-ct", wf.metadata.uid as string, pre);
    await custom().createNamespacedCustomObject({
      group: "radflow.io",
      version: "v1alpha1",
      namespace: ns.name,
      plural: "inferencetasks",
      body: {
        apiVersion: "radflow.io/v1alpha1",
        kind: "InferenceTask",
        metadata: { name: preName },
        spec: {
          workflowRef: { name: "dup-ct", uid: wf.metadata.uid, generation: 1 },
          priority: "stat",
          steps: wf.spec.steps,
          study: pre.data,
          eventId: pre.id,
        },
      },
    });

    const { subject } = await startIngest("dup", [wf]);
    const ev = studyEvent(`dup-${RUN}`, "CT");
    const a1 = await js.publish(subject, JSON.stringify(ev), { msgID: ev.id });
    const a2 = await js.publish(subject, JSON.stringify(ev), { msgID: ev.id });
    expect(a2.duplicate).toBe(true); // JetStream drops the repeat inside the duplicate window
    expect(a2.seq).toBe(a1.seq);
    await js.publish(subject, JSON.stringify({ ...ev, time: new Date().toISOString() }), { msgID: `${ev.id}-resent` });
    await js.publish(subject, JSON.stringify(pre), { msgID: pre.id });

    await waitFor("all four messages acknowledged", 30_000, async () => ({ done: await drained(`test-${RUN}-dup`) }));
    const mine = (await tasks()).filter((t) => t.spec.workflowRef.name === "dup-ct");
    expect(mine.map((t) => t.spec.eventId).sort()).toEqual([ev.id, pre.id].sort());
  });

  it("naks while the API server refuses, and creates the task once it accepts (redelivery)", async () => {
    const late = `${ns.name}-late`;
    const wf = workflow("late-ct", { match: { modalities: ["CT"] } }, late);
    const { subject } = await startIngest("late", [wf]);
    const ev = studyEvent(`late-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: ev.id });

    // the namespace does not exist yet: creating the task fails and the message comes back
    await waitFor("a redelivery", 20_000, async () => {
      const ci = await jsm.consumers.info(STREAM.studies, `test-${RUN}-late`);
      return { done: ci.num_redelivered > 0 || ci.delivered.consumer_seq >= 2, seen: ci.delivered };
    });
    expect(await tasks(late).catch(() => [])).toHaveLength(0);
    await core().createNamespace({ body: { metadata: { name: late, labels: { "radflow.io/test": "true" } } } });
    try {
      const name = taskName("late-ct", wf.metadata.uid as string, ev);
      await waitFor(`InferenceTask ${late}/${name}`, 30_000, async () => ({
        done: (await tasks(late)).some((t) => t.metadata.name === name),
      }));
      await waitFor("the message acknowledged", 10_000, async () => ({ done: await drained(`test-${RUN}-late`) }));
    } finally {
      await core()
        .deleteNamespace({ name: late })
        .catch(() => undefined);
    }
  });

  it("sends an event to the DLQ as retries-exhausted when the API server never accepts it", async () => {
    const wf = workflow("never-ct", { match: { modalities: ["CT"] } }, `${ns.name}-never`);
    const since = await dlqLastSeq();
    const { subject } = await startIngest("never", [wf], { maxDeliver: 3 });
    const ev = studyEvent(`never-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: ev.id });
    const [rec, ...more] = await waitFor("a retries-exhausted DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    expect(more).toHaveLength(0);
    expect(rec?.record).toMatchObject({ reason: "retries-exhausted", deliveries: 3 });
    expect(rec?.record.detail).toMatch(/HTTP 404/);
    await waitFor("the message acknowledged", 10_000, async () => ({ done: await drained(`test-${RUN}-never`) }));
  });

  it("puts an invalid event on radflow.dlq.study once, with a reason and the raw payload, and acks it", async () => {
    const since = await dlqLastSeq();
    const { subject, audit } = await startIngest("invalid", [workflow("inv-ct", { match: { modalities: ["CT"] } })]);
    const ev = studyEvent(`invalid-${RUN}`, "CT");
    const bad = JSON.stringify({ ...ev, data: { ...ev.data, studyInstanceUID: "DOE^JOHN" } });
    await js.publish(subject, bad, { msgID: ev.id });

    const records = await waitFor("a DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await waitFor("the message acknowledged", 10_000, async () => ({ done: await drained(`test-${RUN}-invalid`) }));
    expect(await dlq(since, subject)).toHaveLength(1);
    const [{ record, reasonHeader }] = records as [{ record: DeadLetter; reasonHeader?: string }];
    expect(record).toMatchObject({ reason: "invalid-cloudevent", subject, stream: STREAM.studies, deliveries: 1 });
    expect(reasonHeader).toBe("invalid-cloudevent");
    expect(record.detail).toMatch(/data\.studyInstanceUID/);
    expect(`${record.reason} ${record.detail}`).not.toMatch(/DOE|JOHN|1\.2\.826/);
    expect(Buffer.from(record.payload, "base64").toString()).toBe(bad);
    expect(audit.map((f) => f.kind)).toEqual(["StudyRejected"]);
    expect((await tasks()).some((t) => t.spec.workflowRef.name === "inv-ct")).toBe(false);
  });

  it("1,000 events with 10% malformed and 5% duplicates give exactly the expected tasks and DLQ records", async () => {
    const wfs = [
      workflow("bulk-ct", { match: { modalities: ["CT"] } }),
      workflow("bulk-mr", { match: { modalities: ["MR"] } }),
      workflow("bulk-head", { match: { bodyParts: ["HEAD"] } }),
    ];
    const since = await dlqLastSeq();
    const { subject } = await startIngest("bulk", wfs, { concurrency: 32 });

    // 850 distinct events: CT HEAD (2 tasks), MR (1 task), US (no workflow) in turn
    const valid = Array.from({ length: 850 }, (_, i) =>
      studyEvent(`bulk-${RUN}-${i}`, ["CT", "MR", "US"][i % 3] as string, i % 3 === 0 ? "HEAD" : undefined),
    );
    const ct = valid.filter((_, i) => i % 3 === 0).length;
    const mr = valid.filter((_, i) => i % 3 === 1).length;
    const messages: { data: string; msgID: string }[] = valid.map((e) => ({ data: JSON.stringify(e), msgID: e.id }));
    // 50 duplicates: 25 republished with the same Nats-Msg-Id, 25 resent under a new one
    for (let i = 0; i < 50; i++) {
      const e = valid[i * 17] as (typeof valid)[number];
      messages.push({ data: JSON.stringify(e), msgID: i < 25 ? e.id : `${e.id}-again` });
    }
    // 100 malformed: not JSON, a broken study, a foreign CloudEvent type
    for (let i = 0; i < 100; i++) {
      const e = studyEvent(`bad-${RUN}-${i}`, "CT", "HEAD");
      const data =
        i % 3 === 0
          ? `{"specversion":"1.0","id":"bad-${i}"`
          : i % 3 === 1
            ? JSON.stringify({ ...e, data: { ...e.data, series: "none" } })
            : JSON.stringify({ ...e, type: "com.example.other" });
      messages.push({ data, msgID: e.id });
    }
    // interleave deterministically so that duplicates and malformed events arrive among the rest
    messages.sort((a, b) => hash(a.msgID + a.data.length) - hash(b.msgID + b.data.length));
    expect(messages).toHaveLength(1000);

    for (let i = 0; i < messages.length; i += 100) {
      await Promise.all(messages.slice(i, i + 100).map((m) => js.publish(subject, m.data, { msgID: m.msgID })));
    }

    const expected = ct * 2 + mr;
    const ours = (ts: InferenceTask[]) => ts.filter((t) => t.spec.workflowRef.name.startsWith("bulk-"));
    await waitFor(
      `${expected} tasks and the consumer drained`,
      120_000,
      async () => {
        const n = ours(await tasks()).length;
        return { done: n >= expected && (await drained(`test-${RUN}-bulk`)), seen: { tasks: n } };
      },
      500,
    );
    const all = ours(await tasks());
    expect(all).toHaveLength(expected);
    expect(new Set(all.map((t) => t.metadata.name)).size).toBe(expected);
    expect(countBy(all.map((t) => t.spec.workflowRef.name))).toEqual({ "bulk-ct": ct, "bulk-head": ct, "bulk-mr": mr });

    const dead = await dlq(since, subject);
    expect(dead).toHaveLength(100);
    expect(countBy(dead.map((d) => d.record.reason))).toEqual({
      "malformed-json": 34,
      "invalid-cloudevent": 33,
      "unexpected-type": 33,
    });
  });
});

/** Removes a workflow's tasks as their TTL would (finalizer released, then deleted) and waits until they are gone. */
async function removeTasks(workflow: string): Promise<void> {
  const common = { group: "radflow.io", version: "v1alpha1", namespace: ns.name, plural: "inferencetasks" };
  for (const t of (await tasks()).filter((x) => x.spec.workflowRef.name === workflow)) {
    const name = t.metadata.name as string;
    await custom().patchNamespacedCustomObject(
      { ...common, name, body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    await custom()
      .deleteNamespacedCustomObject({ ...common, name })
      .catch(() => undefined);
  }
  await waitFor(`the tasks of ${workflow} gone`, 30_000, async () => ({
    done: !(await tasks()).some((x) => x.spec.workflowRef.name === workflow),
  }));
}

/** Waits until the consumer has delivered at least `n` messages and every one is acked. */
describe("priority at ingest (issue 15: a STAT study behind queued batch events)", () => {
  it("creates a STAT study's task before most of the batch tasks queued in front of it in the stream", async () => {
    const batch = AIWorkflow.parse({
      ...workflow("queue-batch", { match: { modalities: ["MR"] } }),
      spec: { ...workflow("queue-batch", { match: { modalities: ["MR"] } }).spec, priority: "batch" },
    });
    const stat = workflow("queue-stat", { match: { modalities: ["CT"] } });
    // queued before the ingest runs: its consumer is created afterwards and takes the stream from the start
    const subject = `radflow.study.test-${RUN}-queue`;
    const n = 150;
    const events = Array.from({ length: n }, (_, i) => studyEvent(`queue-${RUN}-${i}`, "MR"));
    for (let i = 0; i < n; i += 100)
      await Promise.all(events.slice(i, i + 100).map((e) => js.publish(subject, JSON.stringify(e), { msgID: e.id })));
    const urgent = studyEvent(`queue-${RUN}-stat`, "CT");
    await js.publish(subject, JSON.stringify(urgent), { msgID: urgent.id });

    const consumer = `test-${RUN}-queue`;
    const ingest = new StudyIngest({
      nc,
      kubeConfig: kubeConfig(),
      workflows: { list: () => [batch, stat] },
      consumer,
      subjects: [subject],
      lagIntervalMs: 500,
    });
    await ingest.start();
    started.push({ ingest, consumer, subject });
    const ours = (ts: InferenceTask[]) => ts.filter((t) => t.spec.workflowRef.name.startsWith("queue-"));
    const all = await waitFor(
      `${n + 1} tasks`,
      540_000,
      async () => {
        const ts = ours(await tasks());
        return { done: ts.length >= n + 1, value: ts, seen: { tasks: ts.length } };
      },
      1_000,
    );
    // the order the API server stored them in: resourceVersion (etcd's revision) of each create
    const byRv = [...all].sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
    const rank = byRv.findIndex((t) => t.spec.workflowRef.name === "queue-stat");
    expect(rank).toBeGreaterThanOrEqual(0);
    // in stream order it would be last (rank n); taken from the window it comes after at most the
    // events the workers had already started while the rest was being routed
    expect(rank).toBeLessThan(n / 2);
    expect(all).toHaveLength(n + 1);
  }, 600_000);
});

async function consumed(consumer: string, n: number): Promise<void> {
  await waitFor(`${consumer}: ${n} messages delivered and acked`, 60_000, async () => {
    const ci = await jsm.consumers.info(STREAM.studies, consumer);
    return {
      done: ci.delivered.consumer_seq >= n && ci.num_pending === 0 && ci.num_ack_pending === 0,
      seen: { delivered: ci.delivered.consumer_seq, pending: ci.num_pending, ackPending: ci.num_ack_pending },
    };
  });
}

describe("event identity and idempotency (issue 12: 3, 4)", () => {
  it("makes two tasks for two sources that both send event id 1 (identity is source + id)", async () => {
    const wf = workflow("twosrc-ct", { match: { modalities: ["CT"] } });
    const { subject } = await startIngest("twosrc", [wf]);
    const id = `1-${RUN}`;
    const east = { ...studyEvent(id, "CT"), source: "/gateways/ct-east" };
    const west = { ...studyEvent(id, "CT"), source: "/gateways/ct-west" };
    for (const ev of [east, west]) await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    await consumed(`test-${RUN}-twosrc`, 2);
    const mine = (await tasks()).filter((t) => t.spec.workflowRef.name === "twosrc-ct");
    expect(mine.map((t) => t.spec.study.studyInstanceUID).sort()).toEqual(
      [east.data.studyInstanceUID, west.data.studyInstanceUID].sort(),
    );
    expect(mine.map((t) => t.spec.eventSource).sort()).toEqual(["/gateways/ct-east", "/gateways/ct-west"]);
    expect(mine.map((t) => t.spec.eventId)).toEqual([id, id]);
  });

  it("creates no task again when its consumer is re-created after TTL removed the tasks (a replay from the start)", async () => {
    const wf = workflow("replay-ct", { match: { modalities: ["CT"] } });
    const consumer = `test-${RUN}-replay`;
    const first = await startIngest("replay", [wf]);
    const events = [1, 2, 3].map((i) => studyEvent(`replay-${RUN}-${i}`, "CT"));
    for (const ev of events) await js.publish(first.subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    await consumed(consumer, 3);
    expect((await tasks()).filter((t) => t.spec.workflowRef.name === "replay-ct")).toHaveLength(3);
    await first.ingest.stop();
    await removeTasks("replay-ct");

    // a new consumer of the same name starts at the stream's first event (DeliverPolicy.All)
    await jsm.consumers.delete(STREAM.studies, consumer);
    const second = await startIngest("replay", [wf]);
    await consumed(consumer, 3);
    expect((await tasks()).filter((t) => t.spec.workflowRef.name === "replay-ct")).toHaveLength(0);
    expect(second.audit.filter((f) => f.kind === "TaskCreated")).toHaveLength(0);
    await second.ingest.stop();

    // the control: the same replay without the recorded identities (an empty bucket) creates all
    // three again, as radflow did before the bucket existed
    const bucket = `RADFLOW_PROCESSED_T${RUN}`;
    await jsm.consumers.delete(STREAM.studies, consumer);
    const third = await startIngest("replay", [wf], { processedBucket: bucket });
    try {
      await consumed(consumer, 3);
      expect((await tasks()).filter((t) => t.spec.workflowRef.name === "replay-ct")).toHaveLength(3);
    } finally {
      await third.ingest.stop();
      await jsm.streams.delete(`KV_${bucket}`).catch(() => undefined);
      await removeTasks("replay-ct");
    }
  });
});

describe("whatever cannot be processed ends in the DLQ, acked (issue 12: 7, 9)", () => {
  it("refuses an event nested 200,000 levels deep and one over the size limit at once, with their reasons", async () => {
    const since = await dlqLastSeq();
    const { subject } = await startIngest("limits", [workflow("limits-ct", { match: { modalities: ["CT"] } })], {
      maxEventBytes: 512 * 1024, // the 200k-level event (400 KB) is within it
    });
    const depth = 200_000;
    const deep = JSON.stringify(studyEvent(`deep-${RUN}`, "CT")).replace(
      '"data":{',
      `"deep":${"[".repeat(depth)}${"]".repeat(depth)},"data":{`,
    );
    const big = JSON.stringify({ ...studyEvent(`big-${RUN}`, "CT"), padding: "x".repeat(600 * 1024) });
    await js.publish(subject, deep, { msgID: `deep-${RUN}` });
    await js.publish(subject, big, { msgID: `big-${RUN}` });
    const records = await waitFor("two DLQ records", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length >= 2, value: r };
    });
    await consumed(`test-${RUN}-limits`, 2);
    expect(records.map((r) => [r.record.reason, r.record.deliveries]).sort()).toEqual([
      ["too-deep", 1],
      ["too-large", 1],
    ]);
    expect(records.find((r) => r.record.reason === "too-large")?.record.detail).toMatch(/at most 524288/);
    expect((await tasks()).some((t) => t.spec.workflowRef.name === "limits-ct")).toBe(false);
  });

  it("dead-letters a trigger that cannot be evaluated, PHI-free, and still makes the other workflows' tasks", async () => {
    const since = await dlqLastSeq();
    const good = workflow("trig-good", { match: { modalities: ["CT"] } });
    // the accession number is not a number: evaluation fails with a message that quotes it
    const broken = workflow("trig-broken", { expression: "int(study.accessionNumber) > 0" });
    const { subject, audit } = await startIngest("trig", [good, broken]);
    const ev = studyEvent(`trig-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    const [rec, ...more] = await waitFor("a trigger-error DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await consumed(`test-${RUN}-trig`, 1);
    expect(more).toHaveLength(0);
    expect(rec?.record).toMatchObject({ reason: "trigger-error", deliveries: 1 });
    expect(rec?.record.detail).toBe(`${ns.name}/trig-broken: trigger.expression could not be evaluated`);
    expect(rec?.record.detail).not.toContain(ev.data.accessionNumber);
    expect((await tasks()).filter((t) => t.spec.workflowRef.name === "trig-good")).toHaveLength(1);
    expect(audit.map((f) => f.kind).sort()).toEqual(["StudyReceived", "StudyRejected", "TaskCreated"]);
  });

  it("dead-letters an event whose routing throws", async () => {
    const since = await dlqLastSeq();
    const { subject } = await startIngest("throws", [], {
      workflows: {
        list: () => {
          throw new TypeError("Cannot read properties of undefined (reading 'DOE^JOHN')");
        },
      },
    });
    const ev = studyEvent(`throws-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    const [rec] = await waitFor("a routing-failed DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await consumed(`test-${RUN}-throws`, 1);
    expect(rec?.record).toMatchObject({ reason: "routing-failed", deliveries: 1 });
    expect(rec?.record.detail).toMatch(/TypeError/);
    expect(rec?.record.detail).not.toMatch(/DOE|JOHN/);
  });

  it("dead-letters on the last delivery an event whose processing throws every time (it used to be redelivered until JetStream gave up)", async () => {
    const since = await dlqLastSeq();
    const wf = workflow("fails-ct", { match: { modalities: ["CT"] } });
    const { subject } = await startIngest("fails", [wf], {
      maxDeliver: 2,
      audit: {
        record: async (f) => {
          if (f.kind === "StudyReceived") throw new Error(`audit down for study ${f.study?.studyInstanceUID}`);
        },
      },
    });
    const ev = studyEvent(`fails-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    const [rec, ...more] = await waitFor("a processing-failed DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await consumed(`test-${RUN}-fails`, 1);
    expect(more).toHaveLength(0);
    expect(rec?.record).toMatchObject({ reason: "processing-failed", deliveries: 2 });
    expect(rec?.record.detail).not.toContain(ev.data.studyInstanceUID);
    expect((await tasks()).filter((t) => t.spec.workflowRef.name === "fails-ct")).toHaveLength(1);
  });

  it("dead-letters at once a message whose every delivery crashed or stalled an operator (one beyond the last)", async () => {
    const since = await dlqLastSeq();
    const subject = `radflow.study.test-${RUN}-stalled`;
    const consumer = `test-${RUN}-stalled`;
    // the consumer as StudyIngest makes it for maxDeliver 2 (max_deliver 3: one more for a crash)
    await jsm.consumers.add(STREAM.studies, {
      durable_name: consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(1_000),
      max_deliver: 3,
      max_ack_pending: 256,
      filter_subjects: [subject],
    });
    const ev = studyEvent(`stalled-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    // two replicas took it and died (or froze) before answering: no ack, no nak
    const raw = await js.consumers.get(STREAM.studies, consumer);
    for (let i = 1; i <= 2; i++) {
      const m = await raw.next({ expires: 5_000 });
      expect(m?.info.deliveryCount).toBe(i);
    }
    const { audit } = await startIngest("stalled", [workflow("stalled-ct", { match: { modalities: ["CT"] } })], {
      maxDeliver: 2,
      ackWaitMs: 1_000,
    });
    const [rec] = await waitFor("a retries-exhausted DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await consumed(consumer, 1);
    expect(rec?.record).toMatchObject({ reason: "retries-exhausted", deliveries: 3 });
    expect(rec?.record.detail).toMatch(/delivered 3 times without finishing/);
    expect(audit.map((f) => f.kind)).toEqual(["StudyRejected"]);
    expect((await tasks()).some((t) => t.spec.workflowRef.name === "stalled-ct")).toBe(false);
  });

  it("gives up a delivery that hangs after processTimeoutMs, and dead-letters it on the last one", async () => {
    const since = await dlqLastSeq();
    const wf = workflow("hangs-ct", { match: { modalities: ["CT"] } });
    const { subject } = await startIngest("hangs", [wf], {
      maxDeliver: 2,
      processTimeoutMs: 1_000,
      audit: { record: (f) => (f.kind === "StudyReceived" ? new Promise<void>(() => {}) : Promise.resolve()) },
    });
    const ev = studyEvent(`hangs-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(ev), { msgID: eventKey(ev) });
    const [rec] = await waitFor("a processing-timeout DLQ record", 30_000, async () => {
      const r = await dlq(since, subject);
      return { done: r.length > 0, value: r };
    });
    await consumed(`test-${RUN}-hangs`, 1);
    expect(rec?.record).toMatchObject({ reason: "processing-timeout", deliveries: 2 });
    expect(rec?.record.detail).toMatch(/not processed within 1000 ms/);
  });
});

describe("JetStream plumbing", () => {
  it("ensureStreams is idempotent under concurrent callers and adds or removes MONAI's subjects", async () => {
    await Promise.all([ensureStreams(jsm), ensureStreams(jsm), ensureStreams(jsm)]);
    await ensureStreams(jsm, { monai: true });
    expect((await jsm.streams.info(STREAM.studies)).config.subjects).toEqual([
      "radflow.study.>",
      "md.workflow.request",
    ]);
    expect((await jsm.streams.info(STREAM.results)).config.subjects).toEqual(["radflow.task.>", "md.export.request.>"]);
    await ensureStreams(jsm);
    expect((await jsm.streams.info(STREAM.results)).config.subjects).toEqual(["radflow.task.>"]);
  });

  it("re-creates its consumer when it is deleted under it, and goes on ingesting", async () => {
    const wf = workflow("lost-ct", { match: { modalities: ["CT"] } });
    const { subject } = await startIngest("lost", [wf]);
    const first = studyEvent(`lost-a-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(first), { msgID: first.id });
    await waitFor("the first task", 30_000, async () => ({
      done: (await tasks()).some((t) => t.spec.eventId === first.id),
    }));
    await jsm.consumers.delete(STREAM.studies, `test-${RUN}-lost`);
    const second = studyEvent(`lost-b-${RUN}`, "CT");
    await js.publish(subject, JSON.stringify(second), { msgID: second.id });
    await waitFor("the second task after the consumer came back", 60_000, async () => ({
      done: (await tasks()).some((t) => t.spec.eventId === second.id),
    }));
  });

  it("publishResults resolves after JetStream stored the results, and a republish is a duplicate", async () => {
    await ensureStreams(jsm, { monai: true });
    const plugin = `it${RUN}`;
    const task = InferenceTask.parse({
      apiVersion: "radflow.io/v1alpha1",
      kind: "InferenceTask",
      metadata: { name: `res-${RUN}`, namespace: ns.name, uid: `task-uid-${RUN}` },
      spec: {
        workflowRef: { name: "res", uid: "wf-uid", generation: 1 },
        priority: "urgent",
        steps: [{ name: "infer", image: "m:1" }],
        storage: { s3: { uri: "s3://imaging/studies" } },
        export: [{ name: "PACS", plugin }],
        study: {
          studyInstanceUID: "1.2.3.4",
          series: [{ seriesInstanceUID: "1.2.3.4.1", modality: "CT", numberOfInstances: 1 }],
        },
        eventId: `res-ev-${RUN}`,
        eventTime: new Date(Date.now() - 5_000).toISOString(),
      },
      status: {
        phase: "Succeeded",
        completionTime: new Date().toISOString(),
        steps: [{ name: "infer", phase: "Succeeded", outputs: { files: ["out/seg.dcm"] } }],
      },
    });
    const audit: AuditFact[] = [];
    const first = await publishResults(js, task, { audit: { record: async (f) => void audit.push(f) } });
    expect(first).toEqual({ outcome: "succeeded", messages: 2, duplicates: 0 });
    const native = await jsm.streams.getMessage(STREAM.results, { last_by_subj: "radflow.task.succeeded" });
    expect(native?.json<{ data: { task: { uid: string } } }>().data.task.uid).toBe(`task-uid-${RUN}`);
    expect(native?.header.get("Nats-Msg-Id")).toBe(resultMsgId(`task-uid-${RUN}`, "succeeded"));
    const exp = await jsm.streams.getMessage(STREAM.results, { last_by_subj: `md.export.request.${plugin}` });
    expect(exp?.json()).toMatchObject({
      files: ["out/seg.dcm"],
      destinations: ["PACS"],
      workflow_instance_id: `task-uid-${RUN}`,
    });
    expect(audit.map((f) => f.kind)).toEqual(["ResultsPublished"]);

    expect(await publishResults(js, task)).toEqual({ outcome: "succeeded", messages: 2, duplicates: 2 });
    await expect(publishResults(js, { ...task, status: { phase: "Running" } })).rejects.toThrow(/not finished/);
    await ensureStreams(jsm);
  });
});

describe("radflow send", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-send-it-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("publishes real DICOM files (made by dcmtk's dump2dcm) as study events that are routed by modality", async () => {
    try {
      execFileSync("dump2dcm", ["--version"], { stdio: "ignore" });
    } catch {
      throw new Error("dump2dcm not found: install Debian's dcmtk (hack/deps.sh does)");
    }
    const ctStudy = `1.2.826.0.1.3680043.8.498.${RUN}.9001`;
    const mrStudy = `1.2.826.0.1.3680043.8.498.${RUN}.9002`;
    const files: [string, string, string, string, string, string][] = [
      // study, series, instance, SOP class, modality, body part
      [ctStudy, `${ctStudy}.1`, `${ctStudy}.1.1`, "=CTImageStorage", "CT", "HEAD"],
      [ctStudy, `${ctStudy}.1`, `${ctStudy}.1.2`, "=CTImageStorage", "CT", "HEAD"],
      [ctStudy, `${ctStudy}.1`, `${ctStudy}.1.3`, "=CTImageStorage", "CT", "HEAD"],
      [mrStudy, `${mrStudy}.1`, `${mrStudy}.1.1`, "=MRImageStorage", "MR", "BRAIN"],
      [mrStudy, `${mrStudy}.1`, `${mrStudy}.1.2`, "=MRImageStorage", "MR", "BRAIN"],
    ];
    for (const [i, [study, series, sop, sopClass, modality, part]] of files.entries()) {
      const sub = path.join(dir, modality);
      mkdirSync(sub, { recursive: true });
      writeImage(path.join(sub, `${i}.dcm`), [
        `(0008,0016) UI ${sopClass}`,
        `(0008,0018) UI [${sop}]`,
        "(0008,0050) SH [ACC-IT-1]",
        `(0008,0060) CS [${modality}]`,
        "(0008,103e) LO [routine protocol]",
        "(0010,0010) PN [DOE^JOHN]",
        "(0010,0020) LO [PID-IT-1]",
        `(0018,0015) CS [${part}]`,
        `(0020,000d) UI [${study}]`,
        `(0020,000e) UI [${series}]`,
      ]);
    }
    writeFileSync(path.join(dir, "notes.txt"), "not DICOM\n");

    const wfs = [
      workflow("send-head-ct", { match: { modalities: ["CT"], bodyParts: ["HEAD"] } }),
      workflow("send-brain-mr", { match: { modalities: ["MR"] } }),
      workflow("send-xr", { match: { modalities: ["DX"] } }),
    ];
    const { subject } = await startIngest("send", wfs);
    const r = await run(
      process.execPath,
      [
        "src/cmd/radflow.ts",
        "send",
        dir,
        "--nats",
        natsUrl(),
        "--subject",
        subject,
        "--calling-ae",
        "CT01",
        "--location",
        "in/it",
      ],
      { env: { ...process.env, RADFLOW_NATS_URL: "" } },
    );
    expect(r.stderr).toMatch(
      /6 files: 5 DICOM instances, 1 not DICOM \(skipped\).* 0 corrupt; 2 studies; 2 events published/,
    );
    expect(r.stdout).toBe("");

    const mine = await waitFor("two tasks from radflow send", 30_000, async () => {
      const t = (await tasks()).filter((x) => x.spec.workflowRef.name.startsWith("send-"));
      return { done: t.length >= 2, value: t, seen: t.length };
    });
    await waitFor("the messages acknowledged", 10_000, async () => ({ done: await drained(`test-${RUN}-send`) }));
    const byStudy = Object.fromEntries(
      (await tasks())
        .filter((x) => x.spec.workflowRef.name.startsWith("send-"))
        .map((t) => [t.spec.workflowRef.name, t.spec.study]),
    );
    expect(mine).toHaveLength(2);
    expect(byStudy["send-head-ct"]).toMatchObject({
      studyInstanceUID: ctStudy,
      accessionNumber: "ACC-IT-1",
      callingAETitle: "CT01",
      location: "in/it",
      series: [
        { modality: "CT", bodyPartExamined: "HEAD", numberOfInstances: 3, sopClassUID: "1.2.840.10008.5.1.4.1.1.2" },
      ],
    });
    expect(byStudy["send-brain-mr"]).toMatchObject({
      studyInstanceUID: mrStudy,
      series: [{ modality: "MR", numberOfInstances: 2, sopClassUID: "1.2.840.10008.5.1.4.1.1.4" }],
    });
  });
});

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
