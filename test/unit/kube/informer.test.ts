// The informer's own list and watch, against an HTTP server that speaks the API server's list
// and watch protocol for one resource: paged lists (limit/continue), watches from a
// resourceVersion with bookmarks, 410 Gone, a failing watch and a silent one. The real API server
// cannot be made to compact on demand or go quiet; the operator's integration tests run these
// informers against it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { Informer, type ListPage } from "../../../src/kube/informer.ts";
import { apiRequests, informerRestarts } from "../../../src/metrics/metrics.ts";

const PATH = "/apis/radflow.io/v1alpha1/namespaces/t/inferencetasks";

interface Obj {
  metadata: { name: string; namespace: string; resourceVersion: string; managedFields?: unknown };
  spec?: { n: number };
}

/** The list and watch side of an API server for one resource, with its history in memory. */
class FakeApi {
  readonly objects = new Map<string, Obj>();
  rv = 100;
  readonly requests: URL[] = [];
  private readonly watches = new Set<http.ServerResponse>();
  /** the next watch requests answer with this status instead of a stream */
  failWatches: number[] = [];
  /** answer watches with an empty stream that ends at once (a misbehaving proxy) */
  endAtOnce = false;
  private server = http.createServer((req, res) => this.handle(req, res));

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const w of this.watches) w.destroy();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  lists(): URL[] {
    return this.requests.filter((u) => u.searchParams.get("watch") !== "true");
  }

  watchRequests(): URL[] {
    return this.requests.filter((u) => u.searchParams.get("watch") === "true");
  }

  put(name: string, n: number): Obj {
    const o: Obj = {
      metadata: { name, namespace: "t", resourceVersion: String(++this.rv), managedFields: [{ manager: "x" }] },
      spec: { n },
    };
    this.objects.set(name, o);
    return o;
  }

  /** A change the watchers are told about. */
  change(name: string, n: number): void {
    const o = this.put(name, n);
    this.send({ type: "MODIFIED", object: o });
  }

  send(ev: unknown): void {
    for (const w of this.watches) w.write(`${JSON.stringify(ev)}\n`);
  }

  /** Ends every open watch the way the server does when timeoutSeconds is over. */
  endWatches(): void {
    for (const w of this.watches) w.end();
    this.watches.clear();
  }

  openWatches(): number {
    return this.watches.size;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    this.requests.push(url);
    if (url.pathname !== PATH) {
      res.writeHead(404).end();
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      const fail = this.failWatches.shift();
      if (fail) {
        res.writeHead(fail, { "content-type": "application/json" }).end("{}");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      if (this.endAtOnce) {
        res.end();
        return;
      }
      res.flushHeaders();
      this.watches.add(res);
      res.on("close", () => this.watches.delete(res));
      return;
    }
    // a paged list: the continue token is the offset (the real one also pins the snapshot)
    const all = [...this.objects.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const limit = Number(url.searchParams.get("limit") ?? 0) || all.length;
    const from = Number(url.searchParams.get("continue") ?? 0);
    const items = all.slice(from, from + limit);
    const next = from + limit < all.length ? String(from + limit) : undefined;
    res.writeHead(200, { "content-type": "application/json" }).end(
      JSON.stringify({
        apiVersion: "radflow.io/v1alpha1",
        kind: "InferenceTaskList",
        metadata: { resourceVersion: String(this.rv), ...(next ? { continue: next } : {}) },
        items,
      }),
    );
  }
}

function kubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "fake", cluster: "fake", user: "u" }],
    currentContext: "fake",
  });
  return kc;
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function restarts(): Promise<number> {
  const m = await informerRestarts.get();
  return m.values.find((v) => v.labels.resource === "unit-tasks")?.value ?? 0;
}

async function listRequests(): Promise<number> {
  const m = await apiRequests.get();
  return m.values
    .filter((v) => v.labels.resource === "unit-tasks" && v.labels.verb === "list")
    .reduce((a, v) => a + v.value, 0);
}

let api: FakeApi;
let inf: Informer<Obj> | undefined;

/** An informer on the fake API: listing by its own GET (as the operator does), or through a typed client. */
async function start(o: { pageSize?: number; watchdogMs?: number; typed?: boolean; labelSelector?: string } = {}) {
  const kc = kubeConfig(await api.listen());
  const custom = kc.makeApiClient(CustomObjectsApi);
  const events: string[] = [];
  inf = new Informer<Obj>(kc, {
    resource: "unit-tasks",
    path: PATH,
    labelSelector: o.labelSelector,
    list: o.typed
      ? (p) =>
          custom.listNamespacedCustomObject({
            group: "radflow.io",
            version: "v1alpha1",
            namespace: "t",
            plural: "inferencetasks",
            limit: p.limit,
            _continue: p.continue,
          }) as Promise<ListPage>
      : undefined,
    parse: (raw) => raw as Obj,
    pageSize: o.pageSize,
    watchdogMs: o.watchdogMs,
    maxBackoffMs: 50,
  });
  inf.on((type, obj) => events.push(`${type} ${obj.metadata.name}`));
  await inf.start();
  return { inf, events };
}

afterEach(async () => {
  await inf?.stop();
  inf = undefined;
  await api.close();
});

describe("Informer: radflow's own list and watch", () => {
  it("lists in pages, keeps one parsed copy without managedFields, then watches from the list's resourceVersion with bookmarks", async () => {
    api = new FakeApi();
    for (let i = 0; i < 1234; i++) api.put(`task-${String(i).padStart(4, "0")}`, i);
    const { inf, events } = await start({ pageSize: 500 });
    expect(inf.hasSynced()).toBe(true);
    expect(inf.size).toBe(1234);
    expect(events.filter((e) => e.startsWith("add")).length).toBe(1234);
    const lists = api.lists();
    expect(lists.map((u) => [u.searchParams.get("limit"), u.searchParams.get("continue")])).toEqual([
      ["500", null],
      ["500", "500"],
      ["500", "1000"],
    ]);
    const t = inf.get("t/task-0007");
    expect(t?.spec?.n).toBe(7);
    expect(t?.metadata.managedFields).toBeUndefined();
    await until("a watch", () => api.openWatches() === 1);
    const w = api.watchRequests()[0] as URL;
    expect(w.searchParams.get("resourceVersion")).toBe(String(api.rv));
    expect(w.searchParams.get("allowWatchBookmarks")).toBe("true");
  });

  it("lists by a GET of its path (labelSelector, limit, continue; one plain JSON copy), counted as API requests; a typed client's pages work too", async () => {
    api = new FakeApi();
    for (let i = 0; i < 120; i++) api.put(`task-${String(i).padStart(4, "0")}`, i);
    const before = await listRequests();
    const { inf } = await start({ pageSize: 50, labelSelector: "app.kubernetes.io/managed-by=radflow" });
    expect(inf.size).toBe(120);
    const lists = api.lists();
    expect(lists.map((u) => u.pathname)).toEqual([PATH, PATH, PATH]);
    expect(lists.map((u) => u.searchParams.get("labelSelector"))).toEqual(
      Array(3).fill("app.kubernetes.io/managed-by=radflow"),
    );
    expect(lists.map((u) => u.searchParams.get("continue"))).toEqual([null, "50", "100"]);
    // plain JSON objects, as a watch event's: nothing for the cache to convert
    expect(Object.getPrototypeOf(inf.get("t/task-0001"))).toBe(Object.prototype);
    expect((await listRequests()) - before).toBe(3);
    await inf.stop();
    await api.close();

    api = new FakeApi();
    for (let i = 0; i < 120; i++) api.put(`task-${String(i).padStart(4, "0")}`, i);
    const typed = await start({ pageSize: 50, typed: true });
    expect(typed.inf.size).toBe(120);
  });

  it("applies watch events; a bookmark moves the resourceVersion the next watch starts from, without a new list", async () => {
    api = new FakeApi();
    api.put("a", 1);
    const { inf, events } = await start();
    await until("a watch", () => api.openWatches() === 1);
    api.change("a", 2);
    await until("the update", () => inf.get("t/a")?.spec?.n === 2);
    expect(inf.get("t/a")?.metadata.managedFields).toBeUndefined();
    // the same resourceVersion again (a relist's echo) is no event
    api.send({ type: "MODIFIED", object: api.objects.get("a") });
    api.send({ type: "BOOKMARK", object: { kind: "InferenceTask", metadata: { resourceVersion: "4242" } } });
    await new Promise((r) => setTimeout(r, 50));
    api.endWatches(); // timeoutSeconds is over
    await until("a second watch", () => api.watchRequests().length === 2);
    expect(api.watchRequests()[1]?.searchParams.get("resourceVersion")).toBe("4242");
    expect(api.lists().length).toBe(1);
    expect(events).toEqual(["add a", "update a"]);
  });

  it("410 Gone lists again at once and reports objects that vanished meanwhile as deleted", async () => {
    api = new FakeApi();
    api.put("a", 1);
    api.put("b", 1);
    const { inf, events } = await start();
    await until("a watch", () => api.openWatches() === 1);
    const before = await restarts();
    // while the history was compacted: b deleted, c created, nobody told
    api.objects.delete("b");
    api.put("c", 1);
    api.send({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired", message: "too old" } });
    await until("a second list", () => api.lists().length === 2);
    await until("b gone", () => !inf.get("t/b"));
    expect(inf.get("t/c")).toBeDefined();
    expect(events).toEqual(["add a", "add b", "add c", "delete b"]);
    await until("a new watch", () => api.watchRequests().length === 2 && api.openWatches() === 1);
    expect(api.watchRequests()[1]?.searchParams.get("resourceVersion")).toBe(String(api.rv));
    expect(await restarts()).toBe(before); // an expiry is routine, not a restart
  });

  it("a watch that fails restarts the informer with backoff and lists again", async () => {
    api = new FakeApi();
    api.put("a", 1);
    api.failWatches = [500];
    const before = await restarts();
    const { inf } = await start();
    await until("a second list", () => api.lists().length === 2);
    await until("a watch", () => api.openWatches() === 1);
    expect(await restarts()).toBe(before + 1);
    expect(inf.hasSynced()).toBe(true);
  });

  it("a watch that stays silent past the watchdog is restarted", async () => {
    api = new FakeApi();
    api.put("a", 1);
    const before = await restarts();
    await start({ watchdogMs: 300 });
    await until("a restart by the watchdog", () => api.lists().length >= 2, 3000);
    expect(await restarts()).toBeGreaterThan(before);
  });

  it("a watch that ends as soon as it opens is re-opened after a pause, not in a busy loop", async () => {
    api = new FakeApi();
    api.put("a", 1);
    api.endAtOnce = true;
    await start();
    await new Promise((r) => setTimeout(r, 2500));
    expect(api.watchRequests().length).toBeGreaterThanOrEqual(2);
    expect(api.watchRequests().length).toBeLessThanOrEqual(4);
    expect(api.lists().length).toBe(1);
  });

  it("credentials that cannot be had for the watch (token file missing) restart it with backoff, no unhandled rejection", async () => {
    api = new FakeApi();
    api.put("a", 1);
    const dir = mkdtempSync(path.join(os.tmpdir(), "informer-"));
    const tokenFile = path.join(dir, "token");
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "fake", server: await api.listen(), skipTLSVerify: true }],
      users: [{ name: "u", authProvider: { name: "file", config: { tokenFile } } }],
      contexts: [{ name: "fake", cluster: "fake", user: "u" }],
      currentContext: "fake",
    });
    const before = await restarts();
    inf = new Informer<Obj>(kc, {
      resource: "unit-tasks",
      path: PATH,
      list: async () => ({ items: [...api.objects.values()], metadata: { resourceVersion: String(api.rv) } }),
      parse: (raw) => raw as Obj,
      maxBackoffMs: 50,
    });
    await inf.start();
    const deadline = Date.now() + 3000;
    while ((await restarts()) <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(await restarts()).toBeGreaterThan(before);
    expect(api.watchRequests().length).toBe(0);
    writeFileSync(tokenFile, "t");
    await until("a watch once the token is there", () => api.openWatches() === 1);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a list that fails is retried; hasSynced stays false until one succeeds", async () => {
    api = new FakeApi();
    api.put("a", 1);
    const kc = kubeConfig(await api.listen());
    let calls = 0;
    inf = new Informer<Obj>(kc, {
      resource: "unit-tasks",
      path: PATH,
      list: async () => {
        calls++;
        if (calls < 3) throw Object.assign(new Error("HTTP 503"), { code: 503 });
        return { items: [...api.objects.values()], metadata: { resourceVersion: String(api.rv) } };
      },
      parse: (raw) => raw as Obj,
      maxBackoffMs: 20,
    });
    await inf.start();
    expect(inf.hasSynced()).toBe(false);
    await inf.waitForSync(5000);
    expect(calls).toBe(3);
    expect(inf.get("t/a")).toBeDefined();
  });
});
