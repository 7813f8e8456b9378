// Connection reuse without patching client-node: a KubeConfig subclass that overrides the public
// applySecurityAuthentication. Counted on the server side: connections opened for a series of
// API calls and watches.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { CoreV1Api, KubeConfig, Watch } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { SharedConnectionsKubeConfig } from "../../../src/kube/client.ts";

let server: http.Server | undefined;

async function apiServer(): Promise<{ url: string; connections: () => number; auth: string[] }> {
  let connections = 0;
  const auth: string[] = [];
  server = http.createServer((req, res) => {
    auth.push(req.headers.authorization ?? "");
    const url = new URL(req.url ?? "/", "http://x");
    if (url.searchParams.get("watch") === "true") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "2" } } })}\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } }));
  });
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections, auth };
}

function load(kc: KubeConfig, url: string): KubeConfig {
  kc.loadFromOptions({
    clusters: [{ name: "c", server: url, skipTLSVerify: true }],
    users: [{ name: "u", token: "secret-token" }],
    contexts: [{ name: "c", cluster: "c", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

async function traffic(kc: KubeConfig): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < 5; i++) await core.readNamespace({ name: "default" });
  // a watch goes through the same KubeConfig (it ends by aborting its request, which closes
  // that connection: a long-lived watch has a connection of its own anyway)
  await new Promise<void>((resolve, reject) => {
    void new Watch(kc).watch(
      "/api/v1/namespaces",
      {},
      () => undefined,
      (err) => (err ? reject(err) : resolve()),
    );
  });
  for (let i = 0; i < 5; i++) await core.readNamespace({ name: "default" });
}

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

describe("SharedConnectionsKubeConfig", () => {
  it("API calls and watches share one connection pool (client-node alone opens one per request)", async () => {
    const plain = await apiServer();
    await traffic(load(new KubeConfig(), plain.url));
    // the baseline this class exists for: a new pool, hence a new connection, per request
    expect(plain.connections()).toBe(11);
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));

    const shared = await apiServer();
    await traffic(load(new SharedConnectionsKubeConfig(), shared.url));
    // the ten calls share one connection; the watch had its own
    expect(shared.connections()).toBe(2);
    // the library still writes the credentials on every request
    expect(new Set(shared.auth)).toEqual(new Set(["Bearer secret-token"]));
  });
});
