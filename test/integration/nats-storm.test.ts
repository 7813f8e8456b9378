// NATS as the distributed engine: a three-node JetStream cluster (hack/cluster.ts upNats) with
// every radflow stream at R3 (--stream-replicas 3), a storm of 500 study events, and one NATS node
// SIGKILLed halfway through — the node that leads the studies stream, so the stream must elect a
// new leader while events are being stored and consumed. Afterwards: exactly one InferenceTask
// (and one Job) per event, every task's result in RADFLOW_RESULTS once, and every task's audit
// facts in RADFLOW_AUDIT once.
//
// The Kubernetes side is the shared test cluster; NATS is a cluster of this file's own (its own
// directory and ports, PORT_OFFSET above the test cluster's base), torn down afterwards.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { type ClusterOptions, type Component, down, kill, upNats } from "../../hack/cluster.ts";
import { SUBJECT, type TaskResultEvent } from "../../src/api/v1alpha1/events.ts";
import { AUDIT_STREAM } from "../../src/audit/pipeline.ts";
import { ensureStreams, STREAM } from "../../src/ingest/streams.ts";
import { type FhirAuditEventLike, viewOfFhirAuditEvent } from "../support/audit-records.ts";
import { countBy, listJobs, sleep, studyEvent, uniqueAE, waitWorkflowReady } from "../support/e2e.ts";
import { ingesting, useE2ERun } from "../support/e2e-run.ts";
import { clusterOptions, waitFor } from "./helpers.ts";

const EVENTS = 500;
/** This file's NATS cluster uses ports from the test cluster's base plus this. */
const PORT_OFFSET = 300;
let natsOpts: ClusterOptions;
let natsUrl = "";
const run = useE2ERun("nats-storm", {
  connect: async () => {
    const test = clusterOptions();
    natsOpts = { dir: `${test.dir}-nats3`, portBase: test.portBase + PORT_OFFSET, natsNodes: 3, quiet: true };
    natsUrl = await upNats(natsOpts);
    const nc = await connect({
      servers: natsUrl.split(","),
      name: "nats-storm",
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
    });
    // The streams at R3 before anything uses them (the operator would make the same; a fresh
    // cluster may still be placing its first streams, hence the retries).
    return waitFor("the streams created at R3", 60_000, async () => {
      const jsm = await jetstreamManager(nc);
      await ensureStreams(jsm, { replicas: 3 });
      return { done: true, value: { nc, js: jetstream(nc), jsm } };
    });
  },
  shutdown: async () => {
    if (natsOpts) await down(natsOpts);
  },
});
const { ns, id: RUN, uidRoot: UID_ROOT } = run;

/** The component that runs the NATS server of this name (radflow-nats-<n>). */
const componentOf = (server: string): Component => {
  const n = Number(server.replace(/^radflow-nats-/, ""));
  return (n === 1 ? "nats-server" : `nats-server-${n}`) as Component;
};

describe("a three-node JetStream cluster", () => {
  it(`loses the studies stream's leader in the middle of ${EVENTS} events: one task per event, every result and audit record once`, async () => {
    const ae = uniqueAE("STORM-");
    run.logsOnFailure();
    const operator = run.startOperator({
      args: ["--stream-replicas", "3"],
      env: { RADFLOW_NATS_URL: natsUrl, RADFLOW_LOG_LEVEL: "info" },
    });
    // generous waits: CI machines share two cores between the control plane, NATS and the tests
    await ingesting(operator, 240_000);
    await run
      .createWorkflow("storm", ae, [{ name: "infer" }])
      .catch(() => waitWorkflowReady(ns.name, "storm", 120_000));
    for (const s of [STREAM.studies, STREAM.results, AUDIT_STREAM]) {
      expect((await run.nats.jsm.streams.info(s)).config.num_replicas, s).toBe(3);
    }
    const since = {
      results: (await run.nats.jsm.streams.info(STREAM.results)).state.last_seq,
      audit: (await run.nats.jsm.streams.info(AUDIT_STREAM)).state.last_seq,
    };

    const events = Array.from({ length: EVENTS }, (_, i) =>
      studyEvent({ id: `storm-${RUN}-${i}`, studyInstanceUID: `${UID_ROOT}.${i + 1}`, calledAETitle: ae }),
    );
    const leader = (await run.nats.jsm.streams.info(STREAM.studies)).cluster?.leader ?? "radflow-nats-1";
    let killedAt = 0;
    const t0 = Date.now();
    // eight publishers at once (a gateway's burst), each retrying through the leader election
    let next = 0;
    const publisher = async () => {
      for (let i = next++; i < EVENTS; i = next++) {
        const ev = events[i] as (typeof events)[number];
        await run.publish(ev, `${ev.source}|${ev.id}`, 120_000);
        if (i === EVENTS / 2 && !killedAt) {
          killedAt = Date.now();
          await kill(natsOpts, componentOf(leader));
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, publisher));
    const published = Date.now();
    expect(killedAt).toBeGreaterThan(0);

    const tasks = await run.tasksFinished("storm", EVENTS, 480_000);
    expect(tasks).toHaveLength(EVENTS);
    expect(new Set(tasks.map((t) => t.spec.eventId))).toEqual(new Set(events.map((e) => e.id)));
    expect(countBy(tasks.map((t) => t.status?.phase ?? "-"))).toEqual({ Succeeded: EVENTS });
    const jobs = await listJobs(ns.name, "radflow.io/workflow=storm");
    expect(jobs).toHaveLength(EVENTS);

    await waitFor("every task's results published", 120_000, async () => {
      const ts = await run.tasks("storm");
      return {
        done: ts.every((t) => t.status?.resultsPublished),
        seen: ts.filter((t) => !t.status?.resultsPublished).length,
      };
    });
    const taskUids = new Set(tasks.map((t) => t.metadata.uid));
    // read through waitFor: with one node of three dead, a JetStream API request (the reader's
    // ordered consumer) can time out while the cluster settles; a retry is the client's job
    const results = await waitFor("the task results in RADFLOW_RESULTS", 120_000, async () => {
      const rs = (await run.read(STREAM.results, [SUBJECT.taskSucceeded], since.results))
        .map((m) => m.json<TaskResultEvent>())
        .filter((e) => taskUids.has(e.data.task.uid));
      return { done: rs.length >= EVENTS, value: rs, seen: rs.length };
    });
    expect(results).toHaveLength(EVENTS);
    expect(new Set(results.map((e) => e.data.task.uid)).size).toBe(EVENTS);

    // every task's own audit facts, each exactly once (a repeat would carry the same fact id and
    // be dropped by the stream's duplicate window; a loss would leave a task short)
    const names = new Set(tasks.map((t) => `${ns.name}/${t.metadata.name}`));
    const perTask = ["TaskCreated", "TaskSucceeded", "ResultsPublished"];
    await waitFor("every task's audit facts in RADFLOW_AUDIT", 60_000, async () => {
      const views = (await run.read(AUDIT_STREAM, ["radflow.audit.>"], since.audit))
        .map((m) => viewOfFhirAuditEvent(m.json<FhirAuditEventLike>()))
        .filter((v) => v.object && names.has(v.object) && perTask.includes(v.kind));
      const counts = countBy(views.map((v) => `${v.kind} ${v.object}`));
      const byCount = countBy(Object.values(counts).map(String));
      return {
        done: Object.keys(counts).length === EVENTS * perTask.length,
        value: { counts, byCount },
        seen: { facts: views.length, distinct: Object.keys(counts).length, byCount },
      };
    }).then(({ byCount }) => expect(byCount).toEqual({ "1": EVENTS * perTask.length }));

    expect(operator.proc.exitCode).toBeNull(); // the same process rode it out
    console.info(
      `${EVENTS} events published in ${((published - t0) / 1000).toFixed(1)} s; ${leader} (studies stream leader) SIGKILLed after ${EVENTS / 2}; all tasks finished ${((Date.now() - t0) / 1000).toFixed(1)} s after the first event`,
    );
    await operator.stop();
    await sleep(100);
  }, 900_000);
});
