// Typed helpers over @kubernetes/client-node 2.x: kubeconfig loading, the one API client factory
// (every request counted in radflow_kube_api_requests_total), merge-patch options and API error
// classification.
import {
  createConfiguration,
  type HttpLibrary,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  Observable,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderMiddleware,
  setHeaderOptions,
} from "@kubernetes/client-node";
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

/**
 * What a request to the API server is, in the metric's words: verb (get, list, watch, create,
 * update, patch, delete, deletecollection) and resource (`jobs`, `inferencetasks/status`…).
 */
export function describeRequest(method: string, url: string): { verb: string; resource: string } {
  const u = new URL(url, "http://api");
  const parts = u.pathname.split("/").filter(Boolean);
  // /api/v1/… or /apis/<group>/<version>/…
  let rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : parts;
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const [resource = "", name, sub] = rest;
  const m = method.toUpperCase();
  const verb =
    m === "GET"
      ? u.searchParams.get("watch") === "true" || u.searchParams.get("watch") === "1"
        ? "watch"
        : name
          ? "get"
          : "list"
      : m === "POST"
        ? "create"
        : m === "PUT"
          ? "update"
          : m === "PATCH"
            ? "patch"
            : m === "DELETE"
              ? name
                ? "delete"
                : "deletecollection"
              : m.toLowerCase();
  return { verb, resource: sub ? `${resource}/${sub}` : resource };
}

/** The library's HTTP transport, counting every request by verb, resource and HTTP code (0: no answer). */
class CountingHttpLibrary implements HttpLibrary {
  private readonly inner = new IsomorphicFetchHttpLibrary();
  send(request: RequestContext): Observable<ResponseContext> {
    const { verb, resource } = describeRequest(request.getHttpMethod().toString(), request.getUrl());
    const sent = this.inner
      .send(request)
      .toPromise()
      .then(
        (r) => {
          apiRequests.inc({ verb, resource, code: String(r.httpStatusCode) });
          return r;
        },
        (err: unknown) => {
          apiRequests.inc({ verb, resource, code: "0" });
          throw err;
        },
      );
    return new Observable(sent);
  }
}

type ApiConstructor<T> = new (config: ReturnType<typeof createConfiguration>) => T;
const clients = new WeakMap<KubeConfig, Map<ApiConstructor<unknown>, unknown>>();

/**
 * The API client of this type for this kubeconfig — one per pair, shared by everyone who asks —
 * made as `KubeConfig.makeApiClient` makes it (the kubeconfig authenticates each request, so
 * shared connections and refreshed tokens still apply) but with a transport that counts every
 * request in radflow_kube_api_requests_total: task creates, Events, the Lease, lists and writes.
 */
export function apiClient<T>(kc: KubeConfig, api: ApiConstructor<T>): T {
  let byType = clients.get(kc);
  if (!byType) {
    byType = new Map();
    clients.set(kc, byType);
  }
  const have = byType.get(api as ApiConstructor<unknown>);
  if (have) return have as T;
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("kubeconfig has no current cluster");
  const client = new api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      httpApi: new CountingHttpLibrary(),
      middleware: [setHeaderMiddleware("User-Agent", "radflow")],
    }),
  );
  byType.set(api as ApiConstructor<unknown>, client);
  return client;
}

export const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export function statusCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown })?.code;
  return typeof c === "number" ? c : undefined;
}
export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isAlreadyExists = (err: unknown) => statusCode(err) === 409;
export const isConflict = (err: unknown) => statusCode(err) === 409;

/**
 * Counts a request made through a client that `apiClient` did not make (those count their own).
 * By verb, resource and HTTP code (0 when it never got an answer).
 */
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
