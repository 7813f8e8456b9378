// Typed helpers over @kubernetes/client-node 2.x: kubeconfig loading, merge-patch options,
// API error classification and request accounting for radflow_kube_api_requests_total.
import { KubeConfig, PatchStrategy, type RequestContext, setHeaderOptions } from "@kubernetes/client-node";
import { apiRequests } from "../metrics/metrics.ts";

type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;

/**
 * A KubeConfig whose requests share their connections.
 *
 * @kubernetes/client-node 2.x builds a new undici Agent (a new connection pool) for every
 * request in `applySecurityAuthentication`, so every API call opened a new connection and paid a
 * full TLS handshake (a third of the operator's CPU under load, measured with --cpu-prof in
 * bench/). `applySecurityAuthentication` is the library's public extension point — every API
 * client from `makeApiClient` and every `Watch` calls it on the KubeConfig they were given — so
 * overriding it is a supported way in: the library still computes the headers (bearer tokens,
 * exec and OIDC plugins refresh per request) and the TLS material, and this class only swaps the
 * fresh, still unconnected Agent for the first one made for the same cluster and user.
 */
export class SharedConnectionsKubeConfig extends KubeConfig {
  private readonly dispatchers = new Map<string, Dispatcher>();

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return; // plain HTTP without TLS options: the global dispatcher pools already
    // one kubeconfig context: its cluster and user identify the TLS material (a client
    // certificate file rotated on disk is picked up on restart; tokens are headers, per request)
    const key = JSON.stringify([
      this.getCurrentCluster()?.name,
      this.getCurrentCluster()?.server,
      this.getCurrentUser()?.name,
    ]);
    const kept = this.dispatchers.get(key);
    if (kept) context.setDispatcher(kept);
    else this.dispatchers.set(key, fresh);
  }
}

export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new SharedConnectionsKubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault(); // KUBECONFIG, ~/.kube/config, or the in-cluster service account
  return kc;
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
