// Typed helpers over @kubernetes/client-node 2.x: kubeconfig loading, merge-patch options,
// API error classification and request accounting for radflow_kube_api_requests_total.
import { KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { apiRequests } from "../metrics/metrics.ts";

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault(); // KUBECONFIG, ~/.kube/config, or the in-cluster service account
  reuseConnections(kc);
  return kc;
}

/**
 * @kubernetes/client-node 2.0 builds a new undici Agent for every request, so every API call
 * opens a new connection and pays a full TLS handshake (a third of the operator's CPU under load,
 * measured with --cpu-prof in bench/). One Agent per cluster and TLS identity keeps connections
 * alive and reused.
 */
export function reuseConnections(kc: KubeConfig): void {
  type Make = (cluster: { name?: string; server?: string } | null, opts: Record<string, unknown>) => unknown;
  const target = kc as unknown as { createDispatcher: Make };
  const make = target.createDispatcher.bind(kc);
  const agents = new Map<string, unknown>();
  target.createDispatcher = (cluster, opts) => {
    // one kubeconfig context: its cluster and user name identify the TLS material (a client
    // certificate file rotated on disk is picked up on restart; tokens are per request anyway)
    const key = `${cluster?.server}|${kc.getCurrentUser()?.name}|${opts.rejectUnauthorized}|${opts.servername}`;
    if (!agents.has(key)) agents.set(key, make(cluster, opts));
    return agents.get(key);
  };
}

export const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export function statusCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown })?.code;
  return typeof c === "number" ? c : undefined;
}
export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isAlreadyExists = (err: unknown) => statusCode(err) === 409;
export const isConflict = (err: unknown) => statusCode(err) === 409;

/** Counts the request by verb, resource and HTTP code (0 when it never got an answer). */
export async function track<T>(verb: string, resource: string, call: () => Promise<T>): Promise<T> {
  try {
    const r = await call();
    apiRequests.inc({ verb, resource, code: verb === "create" ? "201" : "200" });
    return r;
  } catch (err) {
    apiRequests.inc({ verb, resource, code: String(statusCode(err) ?? 0) });
    throw err;
  }
}
