// Preloaded into the operator by the benchmark (node --import): counts every Kubernetes API
// request the process sends, as the wire sees it, into radflow_bench_http_requests_total on the
// operator's own /metrics. radflow_kube_api_requests_total counts only the writes that go
// through track(); this counter also sees the ones that do not (the ingest's InferenceTask
// create, Kubernetes Events, Lease updates), so the two can be compared.
// @kubernetes/client-node sends through undici, which reports each request on diagnostics_channel.
import diagnosticsChannel from "node:diagnostics_channel";
import { performance } from "node:perf_hooks";
import { Counter } from "prom-client";
import { registry } from "../../src/metrics/metrics.ts";

const requests = new Counter({
  name: "radflow_bench_http_requests_total",
  help: "Kubernetes API requests seen on the wire (benchmark instrumentation), by verb, resource and HTTP code.",
  labelNames: ["verb", "resource", "code"] as const,
  registers: [registry],
});

const seconds = new Counter({
  name: "radflow_bench_http_request_seconds_total",
  help: "Time from sending a Kubernetes API request to its response headers (benchmark instrumentation), summed.",
  labelNames: ["verb", "resource"] as const,
  registers: [registry],
});
const started = new WeakMap<object, number>();

interface UndiciRequest {
  method?: string;
  path?: string;
}

/** verb and resource of an API request, e.g. PATCH …/inferencetasks/x/status → patch, inferencetasks/status. */
export function classify(method: string, rawPath: string): { verb: string; resource: string } {
  const [p = "", query = ""] = rawPath.split("?");
  const parts = p.split("/").filter(Boolean);
  // /api/v1/… or /apis/<group>/<version>/…
  let rest = parts[0] === "api" ? parts.slice(2) : parts[0] === "apis" ? parts.slice(3) : parts;
  if (rest[0] === "namespaces" && rest.length >= 3) rest = rest.slice(2);
  const resource = rest[0] ?? "(root)";
  const sub = rest[2];
  const named = rest.length >= 2;
  const watch = /(^|&)watch=(true|1)/.test(query);
  const verbs: Record<string, string> = { POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" };
  const verb = verbs[method] ?? (watch ? "watch" : named ? "get" : "list");
  return { verb, resource: sub ? `${resource}/${sub}` : resource };
}

diagnosticsChannel.subscribe("undici:request:create", (message) => {
  started.set((message as { request: object }).request, performance.now());
});
diagnosticsChannel.subscribe("undici:request:headers", (message) => {
  const { request, response } = message as { request: UndiciRequest; response: { statusCode: number } };
  const { verb, resource } = classify(request.method ?? "GET", request.path ?? "/");
  requests.inc({ verb, resource, code: String(response.statusCode) });
  const t0 = started.get(request);
  if (t0 !== undefined && verb !== "watch") seconds.inc({ verb, resource }, (performance.now() - t0) / 1000);
});
diagnosticsChannel.subscribe("undici:request:error", (message) => {
  const { request } = message as { request: UndiciRequest };
  const { verb, resource } = classify(request.method ?? "GET", request.path ?? "/");
  requests.inc({ verb, resource, code: "0" });
});
