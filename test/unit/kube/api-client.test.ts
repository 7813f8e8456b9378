// The one API client factory (src/kube/client.ts apiClient): one client per kubeconfig and type,
// and every request it sends counted in radflow_kube_api_requests_total by verb, resource and
// code — task creates, Events and Lease writes included, answered or not.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { BatchV1Api, CustomObjectsApi, EventsV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { apiClient, describeRequest } from "../../../src/kube/client.ts";
import { registry } from "../../../src/metrics/metrics.ts";

let server: http.Server | undefined;
afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
});

async function apiServer(status: number): Promise<KubeConfig> {
  server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(status < 300 ? { metadata: { name: "x" } } : { kind: "Status", code: status }));
    });
  });
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: "c", server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true },
    ],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

async function counted(verb: string, resource: string, code: string): Promise<number> {
  const m = await registry.getSingleMetric("radflow_kube_api_requests_total")?.get();
  return (
    m?.values.find((v) => v.labels.verb === verb && v.labels.resource === resource && v.labels.code === code)?.value ??
    0
  );
}

describe("describeRequest", () => {
  it.each([
    ["POST", "/apis/radflow.io/v1alpha1/namespaces/r/inferencetasks", "create", "inferencetasks"],
    ["PATCH", "/apis/radflow.io/v1alpha1/namespaces/r/inferencetasks/t/status", "patch", "inferencetasks/status"],
    ["GET", "/api/v1/namespaces/r/pods?labelSelector=a%3Db", "list", "pods"],
    ["GET", "/api/v1/namespaces/r/pods?watch=true", "watch", "pods"],
    ["GET", "/apis/coordination.k8s.io/v1/namespaces/s/leases/radflow", "get", "leases"],
    ["PUT", "/apis/coordination.k8s.io/v1/namespaces/s/leases/radflow", "update", "leases"],
    ["DELETE", "/apis/batch/v1/namespaces/r/jobs/j", "delete", "jobs"],
    ["POST", "/apis/events.k8s.io/v1/namespaces/r/events", "create", "events"],
    ["GET", "/api/v1/namespaces/r", "get", "namespaces"],
    ["GET", "/apis/batch/v1/jobs", "list", "jobs"],
  ])("%s %s is %s %s", (method, url, verb, resource) => {
    expect(describeRequest(method, url)).toEqual({ verb, resource });
  });
});

describe("apiClient", () => {
  it("gives one client per kubeconfig and type", async () => {
    const kc = await apiServer(200);
    expect(apiClient(kc, BatchV1Api)).toBe(apiClient(kc, BatchV1Api));
    expect(apiClient(await apiServer(200), BatchV1Api)).not.toBe(apiClient(kc, BatchV1Api));
  });

  it("counts every request with the code the API server answered", async () => {
    const kc = await apiServer(201);
    const before = await counted("create", "events", "201");
    await apiClient(kc, EventsV1Api).createNamespacedEvent({
      namespace: "r",
      body: { metadata: { name: "e" }, eventTime: new Date() as never },
    });
    expect(await counted("create", "events", "201")).toBe(before + 1);
  });

  it("counts a refused request with its code", async () => {
    const kc = await apiServer(409);
    const before = await counted("create", "inferencetasks", "409");
    await expect(
      apiClient(kc, CustomObjectsApi).createNamespacedCustomObject({
        group: "radflow.io",
        version: "v1alpha1",
        namespace: "r",
        plural: "inferencetasks",
        body: {},
      }),
    ).rejects.toThrow();
    expect(await counted("create", "inferencetasks", "409")).toBe(before + 1);
  });

  it("counts a request that got no answer as code 0", async () => {
    const kc = await apiServer(200);
    await new Promise((r) => server?.close(r));
    server = undefined;
    const before = await counted("delete", "jobs", "0");
    await expect(apiClient(kc, BatchV1Api).deleteNamespacedJob({ name: "j", namespace: "r" })).rejects.toThrow();
    expect(await counted("delete", "jobs", "0")).toBe(before + 1);
  });
});
