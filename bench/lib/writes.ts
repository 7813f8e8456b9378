// Kubernetes API writes (create, update, patch, delete) between two scrapes of the operator's
// metrics, from its own counter (radflow_kube_api_requests_total, which counts the writes that
// go through track()) and from the benchmark's wire counter (every request the process sent),
// and from the API server's counter (every client: Job controller, scheduler, KWOK too).
import { deltaBy, parseMetrics, type Scrape } from "./prom.ts";
import { round } from "./stats.ts";

const WRITE_VERBS = new Set(["create", "update", "patch", "delete"]);
// apiserver_request_total reports HTTP-ish verbs for writes
const API_SERVER_VERBS: Record<string, string> = {
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  APPLY: "patch",
  DELETE: "delete",
  DELETECOLLECTION: "delete",
};

export interface WriteCount {
  total: number;
  perStudy: number;
  /** "verb resource" → writes per study */
  breakdown: Record<string, number>;
}

function count(deltas: Map<string, number>, studies: number, isWrite: (k: string) => boolean): WriteCount {
  let total = 0;
  const breakdown: Record<string, number> = {};
  for (const [k, v] of [...deltas].sort((a, b) => b[1] - a[1])) {
    if (!isWrite(k)) continue;
    total += v;
    breakdown[k] = round(v / studies, 2);
  }
  return { total, perStudy: round(total / studies, 2), breakdown };
}

export function operatorWrites(before: Scrape, after: Scrape, studies: number) {
  const isWrite = (k: string) => WRITE_VERBS.has(k.split(" ")[0] as string);
  return {
    operatorMetric: count(
      deltaBy(before, after, "radflow_kube_api_requests_total", ["verb", "resource"]),
      studies,
      isWrite,
    ),
    wire: count(deltaBy(before, after, "radflow_bench_http_requests_total", ["verb", "resource"]), studies, isWrite),
  };
}

/** Write requests the API server served, by verb and resource (every client). */
export function apiserverWrites(beforeText: string, afterText: string, studies: number): WriteCount {
  const pick = (t: string): Scrape =>
    parseMetrics(t)
      .filter((s) => s.name === "apiserver_request_total")
      .map((s) => ({
        ...s,
        labels: {
          verb: API_SERVER_VERBS[s.labels.verb ?? ""] ?? (s.labels.verb ?? "").toLowerCase(),
          resource: s.labels.subresource ? `${s.labels.resource}/${s.labels.subresource}` : (s.labels.resource ?? ""),
        },
      }));
  const d = deltaBy(pick(beforeText), pick(afterText), "apiserver_request_total", ["verb", "resource"]);
  // leases and node status are the components' and KWOK's heartbeats, not a study's
  return count(d, studies, (k) => {
    const [verb, resource] = k.split(" ");
    return WRITE_VERBS.has(verb as string) && resource !== "leases" && resource !== "nodes/status";
  });
}
