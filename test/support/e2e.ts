// Shared pieces of the end-to-end tests (test/integration/e2e-*.test.ts): a NATS connection that
// rides out server restarts, study events and workflows that only the calling test file routes,
// and readers for tasks, Jobs, pods and JetStream streams. Everything talks to the real local
// cluster and nats-server; nothing here is a stand-in for them.
import { createServer } from "node:net";
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import {
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type PubAck,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { STUDY_RECEIVED } from "../../src/api/v1alpha1/events.ts";
import { InferenceTask } from "../../src/api/v1alpha1/inferencetask.ts";
import { mergePatch } from "../../src/kube/client.ts";
import { batch, core, custom, natsUrl, waitFor } from "../integration/helpers.ts";

export const G = { group: "radflow.io", version: "v1alpha1" } as const;

/** A run id made of digits (it goes into DICOM UIDs, whose components have no leading zero). */
export function numericRunId(): string {
  return `${Date.now()}${Math.floor(Math.random() * 90 + 10)}`;
}

/** A random AE title (≤ 16 characters) that only one test's workflows and events use. */
export function uniqueAE(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 8).toUpperCase()}`.slice(0, 16);
}

export interface Nats {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/** A connection that reconnects forever (tests restart nats-server under it). */
export async function natsConnect(name = "radflow-e2e"): Promise<Nats> {
  const nc = await connect({
    servers: natsUrl(),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
  });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

/** Publishes and waits for JetStream's ack, retrying (a restarting server) until `timeoutMs`. */
export async function publishRetry(
  js: JetStreamClient,
  subject: string,
  data: string,
  msgID: string,
  timeoutMs = 60_000,
): Promise<PubAck> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await js.publish(subject, data, { msgID, timeout: 5_000 });
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`publishing ${msgID} on ${subject}: ${(e as Error).message}`);
      await sleep(250);
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StudyOptions {
  id: string;
  studyInstanceUID: string;
  calledAETitle: string;
  callingAETitle?: string;
  accessionNumber?: string;
  studyDescription?: string;
  modality?: string;
  bodyPart?: string;
  seriesDescription?: string;
  attributes?: Record<string, { vr: string; Value?: unknown[] }>;
  source?: string;
}

/** A CloudEvents 1.0 io.radflow.study.received event (structured JSON), one series. */
export function studyEvent(o: StudyOptions) {
  return {
    specversion: "1.0",
    id: o.id,
    source: o.source ?? "/e2e/gateway",
    type: STUDY_RECEIVED,
    time: new Date().toISOString(),
    datacontenttype: "application/json",
    data: {
      studyInstanceUID: o.studyInstanceUID,
      ...(o.accessionNumber ? { accessionNumber: o.accessionNumber } : {}),
      ...(o.studyDescription ? { studyDescription: o.studyDescription } : {}),
      callingAETitle: o.callingAETitle ?? "CT-E2E",
      calledAETitle: o.calledAETitle,
      series: [
        {
          seriesInstanceUID: `${o.studyInstanceUID}.1`,
          modality: o.modality ?? "CT",
          ...(o.bodyPart ? { bodyPartExamined: o.bodyPart } : {}),
          ...(o.seriesDescription ? { seriesDescription: o.seriesDescription } : {}),
          sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
          numberOfInstances: 3,
          ...(o.attributes ? { attributes: o.attributes } : {}),
        },
      ],
    },
  };
}

export interface StepSpec {
  name: string;
  image?: string;
  env?: Record<string, string>;
  [k: string]: unknown;
}

/** Creates an AIWorkflow routed by the called AE title only, and waits until the operator calls it Ready. */
export async function createWorkflow(
  namespace: string,
  name: string,
  calledAE: string,
  steps: StepSpec[],
  spec: Record<string, unknown> = {},
): Promise<AIWorkflow> {
  const body = {
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name, namespace },
    spec: {
      priority: "urgent",
      trigger: { sources: { calledAETitles: [calledAE] } },
      steps: steps.map(({ env, image, ...rest }) => ({
        image: image ?? `registry.example.org/models/${rest.name}:1.0`,
        ...(env ? { env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })) } : {}),
        ...rest,
      })),
      ...spec,
    },
  };
  await custom().createNamespacedCustomObject({ ...G, namespace, plural: "aiworkflows", body });
  return waitWorkflowReady(namespace, name);
}

/** Waits until the operator has validated the workflow (Ready=True for its generation). */
export async function waitWorkflowReady(namespace: string, name: string, timeoutMs = 30_000): Promise<AIWorkflow> {
  return waitFor(`AIWorkflow ${namespace}/${name} Ready`, timeoutMs, async () => {
    const wf = AIWorkflow.parse(
      await custom().getNamespacedCustomObject({ ...G, namespace, plural: "aiworkflows", name }),
    );
    const ready = wf.status?.conditions?.find((c) => c.type === "Ready");
    return {
      done: ready?.status === "True" && wf.status?.observedGeneration === wf.metadata.generation,
      value: wf,
      seen: wf.status,
    };
  });
}

/** Creates a DICOMDestination (where a step's exports go) in the namespace. */
export async function createDestination(namespace: string, name: string, spec: Record<string, unknown>) {
  await custom().createNamespacedCustomObject({
    ...G,
    namespace,
    plural: "dicomdestinations",
    body: { apiVersion: "radflow.io/v1alpha1", kind: "DICOMDestination", metadata: { name }, spec },
  });
}

export async function listTasks(namespace: string, workflow?: string): Promise<InferenceTask[]> {
  const r = (await custom().listNamespacedCustomObject({
    ...G,
    namespace,
    plural: "inferencetasks",
    ...(workflow ? { labelSelector: `radflow.io/workflow=${workflow}` } : {}),
  })) as { items: unknown[] };
  return r.items.map((i) => InferenceTask.parse(i));
}

export async function listJobs(namespace: string, labelSelector = "radflow.io/task"): Promise<V1Job[]> {
  return (await batch().listNamespacedJob({ namespace, labelSelector })).items;
}

export async function listPods(namespace: string, labelSelector = "radflow.io/task"): Promise<V1Pod[]> {
  return (await core().listNamespacedPod({ namespace, labelSelector })).items;
}

/**
 * For teardown, once the test's operators are gone: drops radflow's finalizer from every task in
 * the namespace. Only a running operator removes it, so without this the namespace would stay
 * Terminating (with its Jobs and pods) on the shared cluster.
 */
export async function releaseTasks(namespace: string): Promise<void> {
  const tasks = await listTasks(namespace).catch(() => []);
  for (const t of tasks) {
    await custom()
      .patchNamespacedCustomObject(
        {
          ...G,
          namespace,
          plural: "inferencetasks",
          name: t.metadata.name as string,
          body: { metadata: { finalizers: null } },
        },
        mergePatch,
      )
      .catch(() => undefined);
  }
}

/** Waits until `n` tasks of the workflow exist and every one of them has finished. */
export async function waitTasksFinished(
  namespace: string,
  workflow: string,
  n: number,
  timeoutMs: number,
): Promise<InferenceTask[]> {
  return waitFor(
    `${n} tasks of ${namespace}/${workflow} finished`,
    timeoutMs,
    async () => {
      const ts = await listTasks(namespace, workflow);
      const finished = ts.filter((t) => ["Succeeded", "Failed", "Canceled"].includes(t.status?.phase ?? ""));
      const done = ts.length >= n && finished.length === ts.length;
      const stragglers = ts.filter((t) => !finished.includes(t));
      return {
        done,
        value: ts,
        seen: {
          tasks: ts.length,
          finished: finished.length,
          phases: countBy(ts.map((t) => t.status?.phase ?? "-")),
          // for the failure message: what the last few wait for, as the operator and the API server see it
          unfinished:
            !done && stragglers.length <= 3
              ? await Promise.all(stragglers.map((t) => straggler(namespace, t)))
              : stragglers.length,
        },
      };
    },
    500,
  );
}

async function straggler(namespace: string, t: InferenceTask) {
  const sel = `radflow.io/task=${t.metadata.name}`;
  const [jobs, pods] = await Promise.all([listJobs(namespace, sel), listPods(namespace, sel)]);
  return {
    name: t.metadata.name,
    created: t.metadata.creationTimestamp,
    status: t.status,
    jobs: jobs.map((j) => ({ name: j.metadata?.name, rv: j.metadata?.resourceVersion, status: j.status })),
    pods: pods.map((p) => ({
      name: p.metadata?.name,
      rv: p.metadata?.resourceVersion,
      phase: p.status?.phase,
      finalizers: p.metadata?.finalizers,
      state: p.status?.containerStatuses?.[0]?.state,
    })),
  };
}

export function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** The last sequence number a stream holds now (0 when empty). */
export async function lastSeq(jsm: JetStreamManager, stream: string): Promise<number> {
  return (await jsm.streams.info(stream)).state.last_seq;
}

/**
 * Every message of `stream` on `subjects` stored after `afterSeq`, up to what the stream held
 * when called (an ordered consumer: nothing is left behind on the server).
 */
export async function readStream(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  subjects: string[],
  afterSeq: number,
): Promise<JsMsg[]> {
  const last = await lastSeq(jsm, stream);
  const out: JsMsg[] = [];
  if (last <= afterSeq) return out;
  const c = await js.consumers.get(stream, {
    filter_subjects: subjects,
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: afterSeq + 1,
  });
  for (;;) {
    const m = await c.next({ expires: 1500 });
    if (!m) break;
    out.push(m);
    if (m.seq >= last) break;
  }
  return out;
}

/** A TCP port free right now on 127.0.0.1 (for the operator's --metrics-port). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The last `n` characters of a process's logs, for failure messages. */
export function tail(logs: string, n = 6000): string {
  return logs.length > n ? `…${logs.slice(-n)}` : logs;
}
