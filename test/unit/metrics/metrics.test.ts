import { afterEach, describe, expect, it } from "vitest";
import { CLINICAL_BUCKETS, registry } from "../../../src/metrics/metrics.ts";
import { type MetricsServer, startMetricsServer } from "../../../src/metrics/server.ts";

type MetricJson = { name: string; type: string; values: { labels: Record<string, unknown>; metricName?: string }[] };
// prom-client's internal field of a metric; read only to list declared label names
const labelNames = (name: string): string[] =>
  ((registry.getSingleMetric(name) as unknown as { labelNames?: string[] })?.labelNames ?? []) as string[];

describe("metrics registry", () => {
  it("names every metric radflow_*", async () => {
    const all = (await registry.getMetricsAsJSON()) as unknown as MetricJson[];
    expect(all.length).toBeGreaterThan(20);
    expect(all.map((m) => m.name).filter((n) => !n.startsWith("radflow_"))).toEqual([]);
    expect(all.map((m) => m.name).filter((n) => n.includes("process_process"))).toEqual([]);
  });

  it("has clinical buckets from 0.1 s to 1 h on the queue, GPU, step and turnaround histograms", () => {
    expect(CLINICAL_BUCKETS[0]).toBe(0.1);
    expect(CLINICAL_BUCKETS.at(-1)).toBe(3600);
    expect([...CLINICAL_BUCKETS].sort((a, b) => a - b)).toEqual(CLINICAL_BUCKETS);
    for (const name of [
      "radflow_queue_wait_seconds",
      "radflow_gpu_wait_seconds",
      "radflow_step_duration_seconds",
      "radflow_study_turnaround_seconds",
    ]) {
      const h = registry.getSingleMetric(name) as unknown as { upperBounds: number[] };
      expect(h.upperBounds, name).toEqual(CLINICAL_BUCKETS);
      expect(labelNames(name), name).toEqual(expect.arrayContaining(["workflow", "priority"]));
    }
  });

  it("has every metric docs/ARCHITECTURE.md §6 lists", () => {
    for (const n of [
      "radflow_study_events_total",
      "radflow_tasks_created_total",
      "radflow_tasks",
      "radflow_queue_wait_seconds",
      "radflow_step_duration_seconds",
      "radflow_study_turnaround_seconds",
      "radflow_reconcile_total",
      "radflow_reconcile_duration_seconds",
      "radflow_workqueue_depth",
      "radflow_workqueue_latency_seconds",
      "radflow_kube_api_requests_total",
      "radflow_nats_consumer_pending",
      "radflow_nats_redeliveries_total",
      "radflow_audit_records_total",
      "radflow_audit_backlog",
      "radflow_leader",
      "radflow_gpu_wait_oldest_seconds",
    ]) {
      expect(registry.getSingleMetric(n), n).toBeDefined();
    }
  });

  it("has no label that could carry a study, patient or accession value", () => {
    expect(labelNames("radflow_tasks_created_total")).toEqual(["workflow", "priority"]); // the check below sees labels
    const forbidden = /study|patient|accession|uid|series|sop|name$/i;
    for (const m of registry.getMetricsAsArray()) {
      const name = (m as unknown as { name: string }).name;
      expect(
        labelNames(name).filter((l) => forbidden.test(l)),
        name,
      ).toEqual([]);
    }
  });
});

describe("metrics server", () => {
  let srv: MetricsServer | undefined;
  afterEach(async () => {
    await srv?.close();
    srv = undefined;
  });
  const get = (path: string, method = "GET") => fetch(`http://127.0.0.1:${srv!.port}${path}`, { method });

  it("serves /metrics in the Prometheus text format", async () => {
    srv = await startMetricsServer(0, { host: "127.0.0.1" });
    const r = await get("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await r.text();
    expect(body).toContain("# TYPE radflow_study_turnaround_seconds histogram");
    expect(body).toMatch(/radflow_build_info\{version="[^"]+",node="\d+/);
    expect((await get("/nothing")).status).toBe(404);
    expect((await get("/metrics", "POST")).status).toBe(405);
  });

  it("answers probes the operator adds: 200 when ok, 503 with the reason when not", async () => {
    srv = await startMetricsServer(0, { host: "127.0.0.1" });
    let ready = false;
    srv.probe("/healthz", () => ({ ok: true }));
    srv.probe("/readyz", async () => ({ ok: ready, detail: ready ? undefined : "informers not synced" }));
    srv.probe("/broken", () => {
      throw new Error("lease lookup failed");
    });
    expect((await get("/healthz")).status).toBe(200);
    const nr = await get("/readyz");
    expect([nr.status, await nr.text()]).toEqual([503, "failed: informers not synced\n"]);
    ready = true;
    expect((await get("/readyz")).status).toBe(200);
    const b = await get("/broken");
    expect([b.status, await b.text()]).toEqual([503, "failed: lease lookup failed\n"]);
    expect(() => srv!.probe("/metrics", () => ({ ok: true }))).toThrow(/taken/);
  });

  it("can serve probes only, on a second port", async () => {
    srv = await startMetricsServer(0, { host: "127.0.0.1", metrics: false });
    srv.probe("/healthz", () => ({ ok: true }));
    expect((await get("/metrics")).status).toBe(404);
    expect((await get("/healthz")).status).toBe(200);
  });

  it("says clearly when the port is taken", async () => {
    srv = await startMetricsServer(0, { host: "127.0.0.1" });
    await expect(startMetricsServer(srv.port, { host: "127.0.0.1" })).rejects.toThrow(
      new RegExp(`metrics server on port ${srv.port}: .*EADDRINUSE`),
    );
  });
});
