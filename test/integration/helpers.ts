// Helpers for integration tests against the real local cluster and nats-server.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, inject } from "vitest";

const run = promisify(execFile);

export function kubeconfigPath(): string {
  return inject("kubeconfig");
}
export function natsUrl(): string {
  return inject("natsUrl");
}
export function toolBin(name: string): string {
  return path.join(inject("toolsBin"), name);
}

let kc: k8s.KubeConfig | undefined;
export function kubeConfig(): k8s.KubeConfig {
  if (!kc) {
    kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfigPath());
  }
  return kc;
}
export const core = () => kubeConfig().makeApiClient(k8s.CoreV1Api);
export const batch = () => kubeConfig().makeApiClient(k8s.BatchV1Api);
export const custom = () => kubeConfig().makeApiClient(k8s.CustomObjectsApi);

/** kubectl against the test cluster; resolves with stdout, rejects with stderr in the message. */
export async function kubectl(args: string[], input?: string): Promise<string> {
  const p = run(toolBin("kubectl"), ["--kubeconfig", kubeconfigPath(), ...args], { maxBuffer: 64 << 20 });
  if (input !== undefined) {
    p.child.stdin?.end(input);
  }
  try {
    return (await p).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`kubectl ${args.join(" ")}: ${err.stderr || err.message}`);
  }
}

/** A fresh namespace for one test file, deleted (with everything in it) afterwards. */
export function useNamespace(prefix: string): { name: string } {
  const ns = { name: `${prefix}-${Math.random().toString(36).slice(2, 7)}` };
  beforeAll(async () => {
    await core().createNamespace({ body: { metadata: { name: ns.name, labels: { "radflow.io/test": "true" } } } });
    // the ServiceAccount controller must have made "default" before pods can be created
    await waitFor(`ServiceAccount default in ${ns.name}`, 30_000, async () => {
      try {
        await core().readNamespacedServiceAccount({ name: "default", namespace: ns.name });
        return { done: true };
      } catch {
        return { done: false, seen: "not yet" };
      }
    });
  });
  afterAll(async () => {
    if (process.env.RADFLOW_KEEP_NAMESPACES) return;
    await core()
      .deleteNamespace({ name: ns.name })
      .catch(() => undefined);
  });
  return ns;
}

export interface Poll<T> {
  done: boolean;
  value?: T;
  /** what was observed, for the timeout message */
  seen?: unknown;
}

/**
 * Polls `check` until it reports done; on timeout, throws an error that says what was awaited
 * and what was last seen.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<Poll<T>>,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let seen: unknown = "nothing yet";
  for (;;) {
    try {
      const r = await check();
      if (r.done) return r.value as T;
      seen = r.seen ?? seen;
    } catch (e) {
      seen = `error: ${(e as Error).message}`;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(seen)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The local cluster this run uses, for tests that stop or freeze one of its components. */
export function clusterOptions(): { dir: string; portBase: number } {
  return { dir: inject("clusterDir"), portBase: inject("clusterPortBase") };
}

/** radflow's API group and version, as client-node's custom-object calls take them. */
export const RADFLOW_API = { group: "radflow.io", version: "v1alpha1" } as const;

// A run-unique prefix keeps the fixtures' UIDs apart from another run's leftovers on a kept cluster.
const FIXTURE_RUN = 1 + Math.floor(Math.random() * 1e8);
let fixtureSeq = 0;

/**
 * Creates an InferenceTask straight through the API, as the ingest would have made it for one
 * study of one series (`modality`, one instance): the fixture of the operator's behaviour tests.
 * `spec` overrides or adds spec fields (eventId, study, ttl…). Resolves with the task's name.
 */
export async function createTask(o: {
  namespace: string;
  name: string;
  workflow: string;
  steps: object[];
  priority?: string;
  modality?: string;
  labels?: Record<string, string>;
  spec?: Record<string, unknown>;
}): Promise<string> {
  const n = ++fixtureSeq;
  await custom().createNamespacedCustomObject({
    ...RADFLOW_API,
    namespace: o.namespace,
    plural: "inferencetasks",
    body: {
      apiVersion: "radflow.io/v1alpha1",
      kind: "InferenceTask",
      metadata: { name: o.name, labels: { "radflow.io/workflow": o.workflow, ...o.labels } },
      spec: {
        workflowRef: { name: o.workflow, uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
        priority: o.priority ?? "routine",
        steps: o.steps,
        study: {
          studyInstanceUID: `1.2.826.0.1.3680043.10.${FIXTURE_RUN}.${n}`,
          series: [
            {
              seriesInstanceUID: `1.2.826.0.1.3680043.11.${FIXTURE_RUN}.${n}`,
              modality: o.modality ?? "CT",
              numberOfInstances: 1,
            },
          ],
        },
        eventId: `event-${o.name}`,
        ...o.spec,
      },
    },
  });
  return o.name;
}
