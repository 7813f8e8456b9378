// The benchmark's side of the Kubernetes API: CRDs, namespaces, AIWorkflows, bulk creation, and
// watches that note when each Job and each task's phase change arrive (performance.now() clock).
import { readdirSync, readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import {
  ApiextensionsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1CustomResourceDefinition,
  Watch,
} from "@kubernetes/client-node";
import yaml from "js-yaml";
import type { z } from "zod";
import type { AIWorkflowSpec } from "../../src/api/v1alpha1/aiworkflow.ts";
import { loadKubeConfig, mergePatch } from "../../src/kube/client.ts";
import { sleep } from "./operator.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const GROUP = "radflow.io";
export const VERSION = "v1alpha1";

export class Kube {
  readonly kc: KubeConfig;
  readonly core: CoreV1Api;
  readonly batch: BatchV1Api;
  readonly custom: CustomObjectsApi;
  private readonly ext: ApiextensionsV1Api;

  constructor(kubeconfig: string) {
    // the benchmark's own client takes as little of the machine as it can: reused connections
    this.kc = loadKubeConfig(kubeconfig);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.batch = this.kc.makeApiClient(BatchV1Api);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
    this.ext = this.kc.makeApiClient(ApiextensionsV1Api);
  }

  /** Creates or replaces every CRD in `dir` (radflow's crds/) and waits until each is Established. */
  async applyCrds(dir = path.join(root, "crds")): Promise<void> {
    for (const f of readdirSync(dir).filter((x) => /\.ya?ml$/.test(x))) {
      for (const doc of yaml.loadAll(readFileSync(path.join(dir, f), "utf8"))) {
        const crd = doc as V1CustomResourceDefinition | null;
        if (crd?.kind !== "CustomResourceDefinition") continue;
        const name = crd.metadata?.name as string;
        try {
          await this.ext.createCustomResourceDefinition({ body: crd });
        } catch (e) {
          if ((e as { code?: number }).code !== 409) throw e;
          const cur = await this.ext.readCustomResourceDefinition({ name });
          crd.metadata = { ...crd.metadata, resourceVersion: cur.metadata?.resourceVersion };
          await this.ext.replaceCustomResourceDefinition({ name, body: crd });
        }
        await waitUntil(`CRD ${name} Established`, 60_000, async () => {
          const c = await this.ext.readCustomResourceDefinition({ name });
          return !!c.status?.conditions?.some((x) => x.type === "Established" && x.status === "True");
        });
      }
    }
  }

  async createNamespace(name: string): Promise<void> {
    await this.core.createNamespace({
      body: { metadata: { name, labels: { "app.kubernetes.io/part-of": "radflow-bench" } } },
    });
  }

  /** Deletes a namespace; tasks' finalizers are removed first (no operator may be watching). */
  async deleteNamespace(name: string): Promise<void> {
    const list = (await this.custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: name,
      plural: "inferencetasks",
    })) as { items: { metadata: { name: string; finalizers?: string[] } }[] };
    await pool(
      list.items.filter((t) => t.metadata.finalizers?.length),
      16,
      (t) =>
        this.custom
          .patchNamespacedCustomObject(
            {
              group: GROUP,
              version: VERSION,
              namespace: name,
              plural: "inferencetasks",
              name: t.metadata.name,
              body: { metadata: { finalizers: null } },
            },
            mergePatch,
          )
          .catch(() => undefined),
    );
    await this.core.deleteNamespace({ name }).catch(() => undefined);
  }

  /** Creates the AIWorkflow; resolves its uid once the operator has marked it Ready. */
  async createWorkflow(namespace: string, name: string, spec: AIWorkflowSpecInput): Promise<string> {
    await this.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: "aiworkflows",
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: "AIWorkflow", metadata: { name, namespace }, spec },
    });
    let uid = "";
    await waitUntil(`AIWorkflow ${namespace}/${name} Ready`, 60_000, async () => {
      const w = (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: "aiworkflows",
        name,
      })) as { metadata: { uid: string }; status?: { conditions?: { type: string; status: string }[] } };
      uid = w.metadata.uid;
      return !!w.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
    });
    return uid;
  }
}

/** What the benchmark writes into an AIWorkflow's spec: the schema's input side (defaults optional). */
export type AIWorkflowSpecInput = z.input<typeof AIWorkflowSpec>;

export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${last})` : ""}`);
}

/** Runs fn over items with at most `concurrency` at once. */
export async function pool<T>(items: readonly T[], concurrency: number, fn: (x: T, i: number) => Promise<unknown>) {
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

interface Meta {
  metadata?: { name?: string; resourceVersion?: string; labels?: Record<string, string> };
}

/** A watch that re-opens from the last resourceVersion when the server ends it. */
export class Recorder<T extends Meta> {
  private abort?: AbortController;
  private stopped = false;
  private rv?: string;
  private readonly kc: KubeConfig;
  private readonly apiPath: string;
  private readonly onEvent: (type: string, obj: T, at: number) => void;
  private readonly labelSelector?: string;
  errors = 0;

  constructor(
    kc: KubeConfig,
    apiPath: string,
    onEvent: (type: string, obj: T, at: number) => void,
    labelSelector?: string,
  ) {
    this.kc = kc;
    this.apiPath = apiPath;
    this.onEvent = onEvent;
    this.labelSelector = labelSelector;
  }

  /** Resolves once the watch is open. */
  async start(): Promise<void> {
    const w = new Watch(this.kc);
    const q: Record<string, string | boolean> = { allowWatchBookmarks: true };
    if (this.labelSelector) q.labelSelector = this.labelSelector;
    if (this.rv) q.resourceVersion = this.rv;
    this.abort = await w.watch(
      this.apiPath,
      q,
      (type, obj: T) => {
        const at = performance.now();
        if (obj?.metadata?.resourceVersion) this.rv = obj.metadata.resourceVersion;
        if (type === "BOOKMARK") return;
        this.onEvent(type, obj, at);
      },
      (err) => {
        if (this.stopped) return;
        if (err) this.errors += 1;
        void sleep(err ? 200 : 0).then(() => (this.stopped ? undefined : this.start()));
      },
    );
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Jobs of radflow in a namespace: when each task's first Job was seen (ADDED). */
export function jobRecorder(kc: KubeConfig, namespace: string, onJob: (task: string, at: number) => void) {
  const seen = new Set<string>();
  return new Recorder<Meta>(
    kc,
    `/apis/batch/v1/namespaces/${namespace}/jobs`,
    (type, j, at) => {
      const task = j.metadata?.labels?.["radflow.io/task"];
      if (type !== "ADDED" || !task || seen.has(task)) return;
      seen.add(task);
      onJob(task, at);
    },
    "app.kubernetes.io/managed-by=radflow",
  );
}

export interface TaskState {
  phase?: string;
  reason?: string; // of the first step
}

/** InferenceTasks in a namespace: their phase and first step's reason, and when each ended. */
export function taskRecorder(
  kc: KubeConfig,
  namespace: string,
  states: Map<string, TaskState>,
  onTerminal?: (task: string, phase: string, at: number) => void,
  onAdded?: (task: string, at: number) => void,
) {
  const ended = new Set<string>();
  type T = Meta & { status?: { phase?: string; steps?: { reason?: string }[] } };
  return new Recorder<T>(kc, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/inferencetasks`, (type, t, at) => {
    const name = t.metadata?.name as string;
    if (type === "DELETED") {
      states.delete(name);
      return;
    }
    if (type === "ADDED") onAdded?.(name, at);
    const phase = t.status?.phase;
    states.set(name, { phase, reason: t.status?.steps?.[0]?.reason });
    if (phase && ["Succeeded", "Failed", "Canceled"].includes(phase) && !ended.has(name)) {
      ended.add(name);
      onTerminal?.(name, phase, at);
    }
  });
}

/** The API server's own /metrics (every client's requests, not just the operator's). */
export async function apiserverMetrics(kc: KubeConfig): Promise<string> {
  return (await apiserverGet(kc, "/metrics")).toString("utf8");
}

/** A GET of one of the API server's own paths (/metrics, /debug/pprof/…) with the kubeconfig's credentials. */
export async function apiserverGet(kc: KubeConfig, pathAndQuery: string): Promise<Buffer> {
  const server = new URL(kc.getCurrentCluster()?.server ?? "");
  const opts: https.RequestOptions = { host: server.hostname, port: server.port, path: pathAndQuery, method: "GET" };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(Buffer.concat(chunks))
          : reject(new Error(`GET ${pathAndQuery}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
    req.end();
  });
}
