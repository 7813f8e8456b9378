// NATS away while tasks are in flight: nats-server is killed, InferenceTasks are created straight
// through the API server while it is down, and the operator must go on creating their Jobs and
// running them to the end — results and audit facts are NATS's, not the steps controller's.
// Once nats-server is back, every task's results and its audit facts (StepStarted, StepFinished,
// TaskSucceeded, ResultsPublished) arrive, each exactly once. Before the split into steps, results
// and audit controllers, task reconciles failed with "publishing to radflow.audit.StepStarted:
// timeout" and no Job was created until NATS returned.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { kill, restart } from "../../hack/cluster.ts";
import { SUBJECT, type TaskResultEvent } from "../../src/api/v1alpha1/events.ts";
import { AUDIT_STREAM } from "../../src/audit/pipeline.ts";
import { STREAM } from "../../src/ingest/streams.ts";
import { type FhirAuditEventLike, viewOfFhirAuditEvent } from "../support/audit-records.ts";
import {
  countBy,
  lastSeq,
  listJobs,
  listTasks,
  type Nats,
  natsConnect,
  numericRunId,
  readStream,
  releaseTasks,
  tail,
} from "../support/e2e.ts";
import { clusterOptions, createTask as createTaskFixture, useNamespace, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const ns = useNamespace("nats-outage");
const RUN = numericRunId();
const TASKS = 4;

let nats: Nats | undefined;
let op: OperatorProcess | undefined;
let natsDown = false;

beforeAll(async () => {
  nats = await natsConnect("nats-outage");
});

afterAll(async () => {
  if (natsDown) await restart(clusterOptions(), "nats-server").catch(() => undefined);
  await op?.kill().catch(() => undefined);
  await releaseTasks(ns.name);
  await nats?.nc.drain().catch(() => undefined);
});

function createTask(i: number): Promise<string> {
  return createTaskFixture({
    namespace: ns.name,
    name: `outage-${i}`,
    workflow: "outage",
    priority: "urgent",
    steps: [
      {
        name: "infer",
        image: "registry.example.org/models/infer:1.0",
        resources: { gpu: 0 },
        env: [{ name: "KWOK_RUN", value: "1s" }],
      },
    ],
    spec: {
      study: {
        studyInstanceUID: `1.2.826.0.1.3680043.8.498.${RUN}.${i}`,
        series: [
          { seriesInstanceUID: `1.2.826.0.1.3680043.8.498.${RUN}.${i}.1`, modality: "CT", numberOfInstances: 1 },
        ],
      },
      eventId: `outage-${RUN}-${i}`,
    },
  });
}

describe("a NATS outage", () => {
  it("does not stop Jobs of tasks in flight; results and audit facts arrive once NATS is back, each once", async () => {
    const operator = startOperator({ namespace: ns.name, nats: true, args: ["--leader-elect=false"] });
    op = operator;
    onTestFailed(() => console.error(`--- operator ${operator.identity} ---\n${tail(operator.logs(), 5000)}`));
    await waitFor("the operator to start study ingest", 120_000, async () => ({
      done: /study ingest started/.test(operator.logs()),
      seen: operator.proc.exitCode === null ? "running" : `exited ${operator.proc.exitCode}`,
    }));
    const js = nats as Nats;
    const since = { audit: await lastSeq(js.jsm, AUDIT_STREAM), results: await lastSeq(js.jsm, STREAM.results) };

    await kill(clusterOptions(), "nats-server");
    natsDown = true;
    const downAt = Date.now();
    const names = await Promise.all(Array.from({ length: TASKS }, (_, i) => createTask(i + 1)));

    // with NATS gone: every task gets its Job and runs to the end
    const finished = await waitFor(`${TASKS} tasks Succeeded while NATS is down`, 90_000, async () => {
      const ts = await listTasks(ns.name);
      const jobs = await listJobs(ns.name);
      return {
        done: ts.length === TASKS && ts.every((t) => t.status?.phase === "Succeeded"),
        value: { ts, jobs },
        seen: { jobs: jobs.length, phases: countBy(ts.map((t) => t.status?.phase ?? "-")) },
      };
    });
    const downFor = Date.now() - downAt;
    expect(finished.jobs.map((j) => j.metadata?.labels?.["radflow.io/task"]).sort()).toEqual([...names].sort());
    // nothing could go out: the results and the audit trail waited
    expect(finished.ts.filter((t) => t.status?.resultsPublished)).toEqual([]);
    expect(operator.logs()).not.toMatch(/"controller":"inferencetask"[^\n]*reconcile failed/);
    await waitFor("the results and audit controllers to have tried and backed off", 30_000, async () => ({
      done:
        /"controller":"results"[^\n]*reconcile failed/.test(operator.logs()) &&
        /"controller":"task-audit"[^\n]*reconcile failed/.test(operator.logs()),
    }));

    await restart(clusterOptions(), "nats-server");
    natsDown = false;
    await waitFor("results published for every task", 120_000, async () => {
      const ts = await listTasks(ns.name);
      return {
        done: ts.every((t) => t.status?.resultsPublished),
        seen: ts.filter((t) => !t.status?.resultsPublished).map((t) => t.metadata.name),
      };
    });

    // every task's result once
    const results = (await readStream(js.js, js.jsm, STREAM.results, [SUBJECT.taskSucceeded], since.results))
      .map((m) => m.json<TaskResultEvent>())
      .filter((e) => e.data.task.namespace === ns.name);
    expect(results.map((e) => e.data.task.name).sort()).toEqual([...names].sort());

    // every task's audit facts once, in lifecycle order
    const want = ["StepStarted", "StepFinished", "TaskSucceeded", "ResultsPublished"];
    const facts = await waitFor("every task's audit facts in RADFLOW_AUDIT", 60_000, async () => {
      const views = (await readStream(js.js, js.jsm, AUDIT_STREAM, ["radflow.audit.>"], since.audit))
        .map((m) => viewOfFhirAuditEvent(m.json<FhirAuditEventLike>()))
        .filter((v) => v.object?.startsWith(`${ns.name}/`) && v.kind !== "GPUWait");
      return { done: views.length >= TASKS * want.length, value: views, seen: views.length };
    });
    for (const name of names) {
      const mine = facts.filter((v) => v.object === `${ns.name}/${name}`).map((v) => v.kind);
      expect(mine, name).toEqual(want);
    }
    console.info(
      `nats-server was down ${(downFor / 1000).toFixed(1)} s: ${TASKS} tasks got their Jobs and finished meanwhile; ${facts.length} audit facts and ${results.length} results arrived afterwards`,
    );
    expect(await operator.stop()).toBe(0);
  }, 360_000);
});
