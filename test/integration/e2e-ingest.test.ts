// End to end with the real services: study events on JetStream → `radflow operator` (a child
// process) → InferenceTasks → Jobs on KWOK GPU nodes → results on JetStream, while the operator is
// SIGKILLed, nats-server restarts and the API server freezes.
//
// Isolation on the shared stream: every event here goes out on a subject of this file's own
// (radflow.study.e2e-ingest.<run>, purged afterwards) and is routed only by a called AE title
// that one test's workflow and events share, so events of other tests never match these
// workflows, and these events match no other test's workflow that routes by AE title.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import yaml from "js-yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { pause, restart } from "../../hack/cluster.ts";
import type { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import {
  DeadLetter,
  MONAI_EVENT_SOURCE,
  SUBJECT,
  TASK_SUCCEEDED,
  type TaskResultEvent,
} from "../../src/api/v1alpha1/events.ts";
import type { InferenceTask } from "../../src/api/v1alpha1/inferencetask.ts";
import { ANNOTATION_IMPORTED_FROM, taskName } from "../../src/ingest/route.ts";
import { ensureStreams, STREAM } from "../../src/ingest/streams.ts";
import {
  countBy,
  freePort,
  listJobs,
  listPods,
  publishRetry,
  sleep,
  studyEvent,
  uniqueAE,
  waitWorkflowReady,
} from "../support/e2e.ts";
import { ingesting, useE2ERun } from "../support/e2e-run.ts";
import { sharedPath, withoutShared } from "../support/shared.ts";
import { clusterOptions, kubectl, waitFor } from "./helpers.ts";
import type { OperatorProcess } from "./operator-process.ts";

const exec = promisify(execFile);
/** sequence numbers of messages this file put on md.workflow.request (not on its own subject) */
const monaiSeqs: number[] = [];
const run = useE2ERun("e2e-ingest", {
  cleanup: async (nats) => {
    for (const seq of monaiSeqs) await nats?.jsm.streams.deleteMessage(STREAM.studies, seq).catch(() => undefined);
  },
});
const { ns, id: RUN, subject: STUDY_SUBJECT, uidRoot: UID_ROOT } = run;
const fixtures = sharedPath("fixtures", "monai");

beforeAll(async () => {
  await ensureStreams(run.nats.jsm);
});

const metricsPorts = new Map<OperatorProcess, number>();
async function operator(args: string[] = []): Promise<OperatorProcess> {
  const port = await freePort();
  const op = run.startOperator({ metricsPort: port, args });
  metricsPorts.set(op, port);
  return op;
}

/** On failure: every operator's full logs and metrics into a file, and the last lines into the report. */
function logsOnFailure() {
  // the work queue and reconcile metrics of a process still running say whether a reconcile hangs
  run.logsOnFailure(async (op) =>
    op.proc.exitCode === null && op.proc.signalCode === null
      ? `--- /metrics ---\n${await fetch(`http://127.0.0.1:${metricsPorts.get(op)}/metrics`)
          .then((r) => r.text())
          .catch((e: Error) => `(no metrics: ${e.message})`)}`
      : "--- /metrics ---\n(process ended)",
  );
}

let seq = 0;
function event(ae: string, label: string) {
  const n = ++seq;
  return studyEvent({
    id: `e2e-ingest-${RUN}-${label}-${n}`,
    studyInstanceUID: `${UID_ROOT}.${n}`,
    accessionNumber: `E2E${n}`,
    calledAETitle: ae,
    bodyPart: "HEAD",
  });
}

async function publish(ev: ReturnType<typeof event>) {
  return run.publish(ev);
}

/** Publishes one event every `everyMs` in the background; resolves once JetStream stored them all. */
function publishPaced(events: ReturnType<typeof event>[], everyMs: number): Promise<void> {
  return (async () => {
    const pending: Promise<unknown>[] = [];
    for (const ev of events) {
      pending.push(publish(ev));
      await sleep(everyMs);
    }
    await Promise.all(pending);
  })();
}

async function drained(): Promise<boolean> {
  const ci = await run.nats.jsm.consumers.info(STREAM.studies, `op-${ns.name}`);
  return ci.num_pending === 0 && ci.num_ack_pending === 0;
}

/** Results events in RADFLOW_RESULTS after `since`, of tasks in this namespace. */
async function results(since: number, subject: string = SUBJECT.taskSucceeded): Promise<TaskResultEvent[]> {
  const ms = await run.read(STREAM.results, [subject], since);
  return ms.map((m) => m.json<TaskResultEvent>()).filter((e) => e.data.task.namespace === ns.name);
}

function expectOneJobPerStep(tasks: InferenceTask[], jobs: Awaited<ReturnType<typeof listJobs>>, steps: string[]) {
  const byTask = new Map<string, string[]>();
  for (const j of jobs) {
    const t = j.metadata?.labels?.["radflow.io/task"] as string;
    byTask.set(t, [...(byTask.get(t) ?? []), j.metadata?.labels?.["radflow.io/step"] as string]);
    expect(j.status?.succeeded, `Job ${j.metadata?.name}`).toBe(1);
    expect(j.status?.failed ?? 0, `Job ${j.metadata?.name}`).toBe(0);
  }
  const wrong = tasks
    .map((t) => ({ task: t.metadata.name as string, jobs: (byTask.get(t.metadata.name as string) ?? []).sort() }))
    .filter((x) => x.jobs.join(",") !== [...steps].sort().join(","));
  expect(wrong).toEqual([]);
  expect(byTask.size).toBe(tasks.length);
}

describe("study → task → Job → results, end to end", () => {
  it("runs a published study to Succeeded and publishes its results exactly once, also across operator restarts", async () => {
    const ae = uniqueAE("E2EI1-");
    logsOnFailure();
    let op = await operator();
    const wf = await run.createWorkflow("e2e-one", ae, [
      { name: "triage", env: { KWOK_RESULT: '{"hemorrhage":false,"score":0.02}' } },
    ]);
    await ingesting(op);
    await sleep(1000); // the operator's informer has seen the workflow Ready, not only the API server

    // every publish on radflow.task.succeeded, including repeats that JetStream would drop as duplicates
    const published: TaskResultEvent[] = [];
    const sub = run.nats.nc.subscribe(SUBJECT.taskSucceeded, {
      callback: (_err, m) => {
        try {
          const e = m.json<TaskResultEvent>();
          if (e.data?.task?.namespace === ns.name) published.push(e);
        } catch {}
      },
    });
    const since = await run.lastSeq(STREAM.results);

    const ev = event(ae, "one");
    const ack = await publish(ev);
    expect(ack.duplicate).toBe(false);
    const name = taskName("e2e-one", wf.metadata.uid as string, ev);
    // the GPU nodes are shared with other tests: the step may wait for a GPU a while
    const done = await waitFor(`task ${name} Succeeded with results published`, 180_000, async () => {
      const t = (await run.tasks("e2e-one")).find((x) => x.metadata.name === name);
      return { done: !!t?.status?.resultsPublished, value: t, seen: t?.status ?? "no task yet" };
    });
    expect(done.status?.phase).toBe("Succeeded");
    expect(done.spec.study.studyInstanceUID).toBe(ev.data.studyInstanceUID);
    expect(done.status?.steps?.[0]).toMatchObject({ name: "triage", phase: "Succeeded" });
    expect(done.status?.steps?.[0]?.outputs).toEqual({ hemorrhage: false, score: 0.02 });
    const jobs = await listJobs(ns.name, `radflow.io/task=${name}`);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]?.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "InferenceTask", name });
    const pods = await listPods(ns.name, `radflow.io/task=${name}`);
    expect(pods.map((p) => p.status?.phase)).toEqual(["Succeeded"]);
    expect(pods[0]?.spec?.nodeName).toMatch(/^gpu-/);

    const check = async () => {
      const rs = (await results(since)).filter((e) => e.data.task.name === name);
      expect(rs).toHaveLength(1);
      expect(rs[0]).toMatchObject({
        type: TASK_SUCCEEDED,
        subject: name,
        data: {
          task: { namespace: ns.name, name, uid: done.metadata.uid },
          workflow: { name: "e2e-one", uid: wf.metadata.uid },
          eventId: ev.id,
          phase: "Succeeded",
          study: { studyInstanceUID: ev.data.studyInstanceUID, accessionNumber: ev.data.accessionNumber },
          outputs: { triage: { hemorrhage: false, score: 0.02 } },
        },
      });
    };
    await check();

    // a crash after the task ended, then a graceful restart: neither publishes the results again
    await op.kill();
    op = await operator();
    await ingesting(op);
    await sleep(3000); // the new process has reconciled every task it found
    expect(await op.stop()).toBe(0);
    op = await operator();
    await ingesting(op);
    await sleep(3000);
    await check();
    sub.unsubscribe();
    expect(published.filter((e) => e.data.task.name === name)).toHaveLength(1);
    const after = (await run.tasks("e2e-one")).find((x) => x.metadata.name === name);
    expect(after?.status?.resultsPublished).toBe(done.status?.resultsPublished);
    expect(await listJobs(ns.name, `radflow.io/task=${name}`)).toHaveLength(1);
    await op.stop();
  });

  it("loses and duplicates nothing when the operator is SIGKILLed mid-stream (200 events)", async () => {
    const ae = uniqueAE("E2EI2-");
    logsOnFailure();
    let op = await operator();
    await run.createWorkflow("e2e-crash", ae, [
      { name: "detect", env: { KWOK_RESULT: '{"found":true}' } },
      { name: "report", dependsOn: ["detect"], resources: { gpu: 0 } },
    ]);
    await ingesting(op);
    await sleep(1000);
    const since = await run.lastSeq(STREAM.results);

    const events = Array.from({ length: 200 }, () => event(ae, "crash"));
    const publishing = publishPaced(events, 25); // about 5 s of events
    const seenAtKill = await waitFor(
      "about 50 tasks",
      60_000,
      async () => {
        const n = (await run.tasks("e2e-crash")).length;
        return { done: n >= 50, value: n, seen: n };
      },
      50,
    );
    await op.kill();
    const killedAt = Date.now();
    op = await operator();
    await publishing;
    expect(seenAtKill).toBeLessThan(200); // the crash came mid-stream

    const tasks = await run.tasksFinished("e2e-crash", 200, 240_000);
    await waitFor("the study consumer drained", 30_000, async () => ({ done: await drained() }));
    expect(tasks).toHaveLength(200);
    expect(new Set(tasks.map((t) => t.spec.eventId))).toEqual(new Set(events.map((e) => e.id)));
    expect(countBy(tasks.map((t) => t.status?.phase ?? "-"))).toEqual({ Succeeded: 200 });
    for (const t of tasks) {
      expect(t.status?.steps?.map((s) => `${s.name}:${s.phase}`)).toEqual(["detect:Succeeded", "report:Succeeded"]);
    }
    expectOneJobPerStep(tasks, await listJobs(ns.name, "radflow.io/workflow=e2e-crash"), ["detect", "report"]);
    const pods = await listPods(ns.name, "radflow.io/workflow=e2e-crash");
    expect(pods).toHaveLength(400);
    expect(countBy(pods.map((p) => p.status?.phase ?? "-"))).toEqual({ Succeeded: 400 });

    await waitFor("every task's results published", 30_000, async () => {
      const ts = await run.tasks("e2e-crash");
      return {
        done: ts.every((t) => t.status?.resultsPublished),
        seen: ts.filter((t) => !t.status?.resultsPublished).length,
      };
    });
    const rs = (await results(since)).filter((e) => e.data.workflow.name === "e2e-crash");
    expect(rs).toHaveLength(200);
    expect(new Set(rs.map((e) => e.data.task.uid))).toEqual(new Set(tasks.map((t) => t.metadata.uid)));
    console.info(
      `SIGKILL with ${seenAtKill} of 200 tasks created; all 200 finished ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
    await op.stop();
  }, 360_000);

  it("resumes ingest by itself after nats-server restarts mid-stream", async () => {
    const ae = uniqueAE("E2EI3-");
    logsOnFailure();
    const op = await operator();
    await run.createWorkflow("e2e-nats", ae, [{ name: "infer" }]);
    await ingesting(op);
    await sleep(1000);

    const events = Array.from({ length: 60 }, () => event(ae, "nats"));
    const publishing = publishPaced(events, 100); // about 6 s, through the outage (publishes retry)
    await sleep(1500);
    const t0 = Date.now();
    await restart(clusterOptions(), "nats-server", 2000);
    const backAt = Date.now();
    const outage = backAt - t0;
    await publishing;

    const tasks = await run.tasksFinished("e2e-nats", 60, 180_000);
    expect(tasks).toHaveLength(60);
    expect(new Set(tasks.map((t) => t.spec.eventId))).toEqual(new Set(events.map((e) => e.id)));
    expect(countBy(tasks.map((t) => t.status?.phase ?? "-"))).toEqual({ Succeeded: 60 });
    await waitFor("results published for every task", 60_000, async () => {
      const ts = await run.tasks("e2e-nats");
      return {
        done: ts.every((t) => t.status?.resultsPublished),
        seen: ts.filter((t) => !t.status?.resultsPublished).length,
      };
    });
    await waitFor("the study consumer drained", 30_000, async () => ({ done: await drained() }));
    expect(op.proc.exitCode).toBeNull(); // the same process rode it out
    // it found the server again promptly, not only when its reconnect backoff reached its cap (30 s)
    const reconnectedAt = op
      .logs()
      .split("\n")
      .filter((l) => l.includes('"msg":"reconnected to NATS"'))
      .map((l) => Date.parse((JSON.parse(l) as { time: string }).time));
    expect(reconnectedAt).toHaveLength(1);
    expect((reconnectedAt[0] as number) - backAt).toBeLessThan(10_000);
    console.info(
      `nats-server was away for ${(outage / 1000).toFixed(1)} s; the operator reconnected ${(((reconnectedAt[0] as number) - backAt) / 1000).toFixed(1)} s after it was back`,
    );
    await op.stop();
  }, 300_000);

  it("keeps events while the API server is unreachable for 20 s, and creates every task afterwards without DLQ", async () => {
    const ae = uniqueAE("E2EI4-");
    logsOnFailure();
    const op = await operator();
    await run.createWorkflow("e2e-pause", ae, [{ name: "infer" }]);
    await ingesting(op);
    await sleep(1000);
    const dlqSince = await run.lastSeq(STREAM.dlq);

    const events = Array.from({ length: 50 }, () => event(ae, "pause"));
    const publishing = publishPaced(events, 500); // 25 s of events, most of them while the API server is frozen
    await sleep(2000);
    const before = (await run.tasks("e2e-pause")).length;
    await pause(clusterOptions(), "kube-apiserver", 20_000);
    await publishing;

    const tasks = await run.tasksFinished("e2e-pause", 50, 180_000);
    expect(before).toBeLessThan(10); // most events came while it was frozen
    expect(tasks).toHaveLength(50);
    expect(new Set(tasks.map((t) => t.spec.eventId))).toEqual(new Set(events.map((e) => e.id)));
    expect(countBy(tasks.map((t) => t.status?.phase ?? "-"))).toEqual({ Succeeded: 50 });
    await waitFor("the study consumer drained", 60_000, async () => ({ done: await drained() }));

    const ids = new Set(events.map((e) => e.id));
    const dead = (await run.read(STREAM.dlq, [SUBJECT.dlqStudy], dlqSince))
      .map((m) => DeadLetter.parse(m.json()))
      .filter((d) => d.subject === STUDY_SUBJECT || ids.has(idOf(d.payload)));
    expect(dead).toEqual([]);
    expect(op.proc.exitCode).toBeNull();
    await op.stop();
  }, 300_000);

  it("neither re-creates tasks nor republishes results when its consumer is re-created after TTL removed the tasks", async () => {
    const ae = uniqueAE("E2EI5-");
    logsOnFailure();
    let op = await operator();
    // a one-second TTL: the tasks are gone soon after their results are out, as days later in production
    await run.createWorkflow("e2e-replay", ae, [{ name: "triage", resources: { gpu: 0 } }], {
      ttlSecondsAfterFinished: 1,
    });
    await ingesting(op);
    await sleep(1000);
    const since = await run.lastSeq(STREAM.results);
    const events = Array.from({ length: 5 }, () => event(ae, "replay"));
    for (const ev of events) await publish(ev);
    const ids = new Set(events.map((e) => e.id));
    const ours = async () =>
      (await results(since)).filter((e) => e.data.workflow.name === "e2e-replay" && ids.has(e.data.eventId));
    await waitFor("5 results published", 180_000, async () => {
      const n = (await ours()).length;
      return { done: n >= 5, seen: n };
    });
    await waitFor("the tasks removed by their TTL", 60_000, async () => {
      const n = (await run.tasks("e2e-replay")).length;
      return { done: n === 0, seen: n };
    });
    await waitFor("the study consumer drained", 30_000, async () => ({ done: await drained() }));
    expect(await op.stop()).toBe(0);

    // the consumer is deleted (or renamed): its successor starts at the stream's first event
    await run.nats.jsm.consumers.delete(STREAM.studies, `op-${ns.name}`);
    op = await operator();
    await ingesting(op);
    await waitFor("the replay consumed", 120_000, async () => {
      const ci = await run.nats.jsm.consumers.info(STREAM.studies, `op-${ns.name}`);
      return {
        done: ci.delivered.consumer_seq >= events.length && (await drained()),
        seen: { delivered: ci.delivered.consumer_seq, pending: ci.num_pending },
      };
    });
    await sleep(3000); // a task created by the replay would be visible by now, and its Job started
    expect(await run.tasks("e2e-replay")).toEqual([]);
    expect(await listJobs(ns.name, "radflow.io/workflow=e2e-replay")).toHaveLength(0);
    const rs = await ours();
    expect(rs).toHaveLength(5);
    expect(new Set(rs.map((e) => e.data.eventId))).toEqual(ids);
    expect(op.logs()).not.toMatch(/InferenceTask created/);
    await op.stop();
  }, 300_000);
});

function idOf(payloadB64: string): string {
  try {
    return (JSON.parse(Buffer.from(payloadB64, "base64").toString()) as { id?: string }).id ?? "";
  } catch {
    return "";
  }
}

describe.skipIf(withoutShared(import.meta.filename))("MONAI Deploy compatibility, end to end", () => {
  it("an imported MONAI workflow starts a task for MONAI's own WorkflowRequestEvent", async () => {
    // The two per-run changes to the fixtures: a fresh payload_id (the idempotency key; the
    // fixture's would be dropped as a duplicate inside JetStream's window) and a called AE title
    // of this run's own in the event's trigger.destination and the workflow's trigger, so that
    // other runs' and tests' MONAI events never reach this workflow.
    const ae = uniqueAE("MD-");
    logsOnFailure();
    const op = await operator(["--monai"]);
    const { stdout } = await exec(process.execPath, [
      "src/cmd/radflow.ts",
      "import",
      "monai",
      path.join(fixtures, "liver-lung-seg.workflow.json"),
      "--namespace",
      ns.name,
    ]);
    const doc = yaml.load(stdout) as AIWorkflow;
    expect(doc.spec.trigger.sources?.calledAETitles).toEqual(["MONAI-DEPLOY"]);
    doc.spec.trigger.sources = { ...doc.spec.trigger.sources, calledAETitles: [ae] };
    await kubectl(["apply", "-f", "-"], yaml.dump(doc));
    const wf = await waitWorkflowReady(ns.name, "all-in-one");
    expect(wf.metadata.annotations?.[ANNOTATION_IMPORTED_FROM]).toBe("monai-deploy:all-in-one@1.0.0");
    await ingesting(op);
    await sleep(1000);

    const request = JSON.parse(readFileSync(path.join(fixtures, "workflow-request.event.json"), "utf8"));
    request.payload_id = randomUUID();
    request.trigger.destination = ae;
    await ensureStreams(run.nats.jsm, { monai: true }); // another process on the shared server may have removed md.*
    const ack = await publishRetry(
      run.nats.js,
      SUBJECT.monaiWorkflowRequest,
      JSON.stringify(request),
      request.payload_id,
    );
    monaiSeqs.push(ack.seq);

    const task = await waitFor("a task of the imported workflow", 60_000, async () => {
      const ts = await run.tasks("all-in-one");
      return { done: ts.length > 0, value: ts, seen: ts.length };
    });
    expect(task).toHaveLength(1);
    expect(task[0]?.metadata.name).toBe(
      taskName("all-in-one", wf.metadata.uid as string, {
        source: MONAI_EVENT_SOURCE,
        id: request.payload_id.toLowerCase(),
      }),
    );
    expect(task[0]?.spec).toMatchObject({
      workflowRef: { name: "all-in-one", uid: wf.metadata.uid },
      eventId: request.payload_id,
      study: {
        studyInstanceUID: "1.2.826.0.1.3680043.2.1125.1.19616861412188316212577695277886020",
        callingAETitle: "ORTHANC",
        calledAETitle: ae,
        location: `s3://monaideploy/${request.payload_id}`,
        series: [
          {
            seriesInstanceUID: "1.2.826.0.1.3680043.2.1125.1.34918616334750294149839565085991567",
            modality: "CT",
            numberOfInstances: 2,
          },
        ],
      },
    });
    expect(task[0]?.spec.steps.map((s) => s.name)).toEqual(["ailiver", "ailung"]);
    // MONAI's event carries no series description, so the router sends the study to neither branch
    const [finished] = await run.tasksFinished("all-in-one", 1, 60_000);
    expect(finished?.status?.phase).toBe("Succeeded");
    expect(finished?.status?.steps?.map((s) => `${s.name}:${s.phase}`)).toEqual(["ailiver:Skipped", "ailung:Skipped"]);
    await op.stop();
  });
});
