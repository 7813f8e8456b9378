// An informer that survives, over radflow's own list and watch. The objects live in one place:
// this class's cache, parsed at the boundary (list results are class instances with Dates, watch
// events plain JSON: both become the same plain, zod-checked value) and without managedFields.
// (client-node's ListWatch kept a second copy of every object next to it, and listed in one
// unpaged response.) What it does:
// - lists in pages (`limit`/`continue`), then watches from the list's resourceVersion with
//   bookmarks, so a quiet watch resumes where it stopped instead of relisting;
// - lists with a plain GET of the same path and one JSON.parse per page, as the watch does: a
//   typed client turns every page into class instances with Dates that then had to be turned back
//   into JSON, three copies of each page alive at once — at a cold start over 20,000 finished
//   studies, that garbage, not the cache, set the operator's peak memory (bench/ scenario rss);
// - 410 Gone (history compacted) → lists again at once; objects that vanished meanwhile are
//   reported as deleted;
// - any other error of the list or the watch → restarts with backoff; a watch that has been silent
//   too long (no event, bookmark or reconnect) → restarts too (watchdog);
// - hasSynced() once the first full list is in the cache.
import { HttpMethod, type KubeConfig, RequestContext, Watch } from "@kubernetes/client-node";
// the fetch @kubernetes/client-node itself uses (its Watch too): the connection pool it hands out
// (ctx.getDispatcher()) is this undici's, which Node's built-in fetch need not accept
import { fetch } from "undici";
import { logger } from "../log/logger.ts";
import { informerRestarts } from "../metrics/metrics.ts";
import { track } from "./client.ts";

const log = logger("kube");

/** One page of a list, as the typed clients (`_continue`) or the raw API (`continue`) return it. */
export interface ListPage {
  items: unknown[];
  metadata?: { resourceVersion?: string; continue?: string; _continue?: string };
}

export interface InformerOptions<T> {
  /** e.g. "jobs" — for logs and metrics */
  resource: string;
  /** API path of the list/watch, e.g. /apis/batch/v1/namespaces/x/jobs or /apis/batch/v1/jobs */
  path: string;
  /**
   * One page of the list: pass `limit` and `continue` (the typed clients call it `_continue`) on.
   * Unset (the operator): a GET of `path` with `labelSelector`, parsed once.
   */
  list?: (page: { limit: number; continue?: string }) => Promise<ListPage>;
  labelSelector?: string;
  /** parses a plain JSON object; throw to drop it (logged) */
  parse: (raw: unknown) => T;
  /** restart when no event, bookmark or reconnect was seen for this long (quiet watches re-open every ~30 s) */
  watchdogMs?: number;
  maxBackoffMs?: number;
  /** objects per list page (client-go's default: 500) */
  pageSize?: number;
  /** ms a list page may take (default 120 s: the API server gives up on it after 60 s) */
  listTimeoutMs?: number;
}

export type Handler<T> = (type: "add" | "update" | "delete", obj: T, old?: T) => void;

export function keyOf(o: { metadata?: { namespace?: string; name?: string } }): string {
  return o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata?.name ?? "");
}

/** Class instances (Dates) and plain JSON become the same plain JSON. */
export function plain(o: unknown): unknown {
  return JSON.parse(JSON.stringify(o));
}

interface WatchEvent {
  type?: string;
  object?: { metadata?: { resourceVersion?: string }; code?: number; reason?: string; message?: string };
}

/** A list or watch answered 410 Gone: the resourceVersion (or continue token) is too old. */
function isGone(err: unknown): boolean {
  const e = err as { code?: unknown; statusCode?: unknown } | undefined;
  return e?.code === 410 || e?.statusCode === 410;
}

export class Informer<T extends { metadata?: { namespace?: string; name?: string; resourceVersion?: string } }> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private synced = false;
  private stopped = true;
  private backoffMs = 0;
  private lastActivity = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  /** bumped by every (re)start: callbacks of an older list or watch are ignored */
  private generation = 0;
  private resourceVersion = "";
  private watchAbort: AbortController | undefined;
  private watchOpenedAt = 0;
  private readonly kc: KubeConfig;
  private readonly o: InformerOptions<T>;

  constructor(kc: KubeConfig, o: InformerOptions<T>) {
    this.kc = kc;
    this.o = o;
  }

  on(h: Handler<T>): void {
    this.handlers.push(h);
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): IterableIterator<T> {
    return this.cache.values();
  }

  get size(): number {
    return this.cache.size;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves after the first list attempt (synced or not: a failed one is retried with backoff). */
  async start(): Promise<void> {
    this.stopped = false;
    const wd = this.o.watchdogMs ?? 90_000;
    this.watchdog = setInterval(
      () => {
        if (!this.stopped && Date.now() - this.lastActivity > wd) {
          log.warn({ resource: this.o.resource, silentMs: Date.now() - this.lastActivity }, "watch silent: restarting");
          this.restart("watchdog");
        }
      },
      Math.min(wd, 10_000),
    );
    this.watchdog.unref();
    this.lastActivity = Date.now();
    await this.listAndWatch(++this.generation);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    clearInterval(this.watchdog);
    clearTimeout(this.restartTimer);
    this.watchAbort?.abort();
    this.watchAbort = undefined;
  }

  /** Resolves once the first list has filled the cache. */
  async waitForSync(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.synced) {
      if (Date.now() > deadline) throw new Error(`informer ${this.o.resource}: not synced after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async listAndWatch(gen: number): Promise<void> {
    let rv: string;
    try {
      rv = await this.listAll(gen);
    } catch (err) {
      if (gen !== this.generation || this.stopped) return;
      log.warn({ resource: this.o.resource, err: errMessage(err) }, "list failed: retrying with backoff");
      this.restart("error");
      return;
    }
    if (gen !== this.generation || this.stopped) return;
    this.synced = true;
    this.backoffMs = 0;
    this.resourceVersion = rv;
    await this.watch(gen);
  }

  /**
   * Lists every page into the cache (adds and updates reported as they come) and reports what
   * the cache held that the list no longer has as deleted. Returns the list's resourceVersion.
   */
  private async listAll(gen: number): Promise<string> {
    const limit = this.o.pageSize ?? 500;
    const seen = new Set<string>();
    let cont: string | undefined;
    let rv = "";
    do {
      const page = await (this.o.list ?? ((p) => this.listPage(p)))({ limit, continue: cont });
      if (gen !== this.generation) return "";
      this.lastActivity = Date.now();
      for (const item of page.items ?? []) {
        const k = this.apply("sync", item);
        if (k !== undefined) seen.add(k);
      }
      // the first page's resourceVersion is the snapshot's; later pages repeat it
      rv ||= page.metadata?.resourceVersion ?? "";
      cont = page.metadata?._continue || page.metadata?.continue || undefined;
    } while (cont);
    for (const [k, v] of this.cache) {
      if (!seen.has(k)) {
        this.cache.delete(k);
        this.emit("delete", v);
      }
    }
    return rv;
  }

  /** GET <path>?limit=…&continue=…&labelSelector=…, authenticated and pooled as client-node does. */
  private async listPage(p: { limit: number; continue?: string }): Promise<ListPage> {
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new Error("no current cluster in the kubeconfig");
    const url = new URL(server + this.o.path);
    url.searchParams.set("limit", String(p.limit));
    if (p.continue) url.searchParams.set("continue", p.continue);
    if (this.o.labelSelector) url.searchParams.set("labelSelector", this.o.labelSelector);
    return track("list", this.o.resource, async () => {
      const ctx = new RequestContext(url.toString(), HttpMethod.GET);
      await this.kc.applySecurityAuthentication(ctx);
      const res = await fetch(url, {
        headers: { ...ctx.getHeaders(), accept: "application/json" },
        dispatcher: ctx.getDispatcher(),
        signal: AbortSignal.timeout(this.o.listTimeoutMs ?? 120_000),
      });
      const text = await res.text();
      if (res.status !== 200) {
        // shaped like client-node's ApiException (code, body): isGone and errMessage read it
        throw Object.assign(new Error(`HTTP ${res.status} listing ${this.o.resource}`), {
          code: res.status,
          body: text.slice(0, 1000),
        });
      }
      return JSON.parse(text) as ListPage;
    });
  }

  private async watch(gen: number): Promise<void> {
    if (gen !== this.generation || this.stopped) return;
    const query: Record<string, string | number | boolean | undefined> = {
      resourceVersion: this.resourceVersion,
      allowWatchBookmarks: true,
      labelSelector: this.o.labelSelector,
      // the server ends the watch after 5–10 min (as client-go asks): a cheap re-watch from the
      // last resourceVersion, and an end to watches a load balancer may have silently dropped
      timeoutSeconds: 300 + Math.floor(Math.random() * 300),
    };
    // done() may run before watch() returns (a watch that fails at once): it gets the controller
    // through this holder
    const handle: { abort?: AbortController; done?: boolean } = {};
    let abort: AbortController;
    try {
      abort = await new Watch(this.kc).watch(
        this.o.path,
        query,
        (_type, _obj, ev) => this.onEvent(gen, ev as WatchEvent),
        (err) => {
          handle.done = true;
          this.onDone(gen, handle.abort, err);
        },
      );
    } catch (err) {
      // before any request: the credentials could not be had (an exec plugin failed, a token
      // file is unreadable)
      if (gen !== this.generation || this.stopped) return;
      log.warn({ resource: this.o.resource, err: errMessage(err) }, "watch failed: restarting with backoff");
      this.restart("error");
      return;
    }
    handle.abort = abort;
    if (gen !== this.generation || this.stopped) {
      abort.abort();
      return;
    }
    if (!handle.done) {
      this.watchAbort = abort;
      this.lastActivity = this.watchOpenedAt = Date.now();
    }
  }

  private onEvent(gen: number, ev: WatchEvent): void {
    if (gen !== this.generation || this.stopped) return;
    this.lastActivity = Date.now();
    const obj = ev.object;
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED":
      case "DELETED":
        this.apply(ev.type === "DELETED" ? "delete" : "sync", obj);
        break;
      case "BOOKMARK":
        break;
      case "ERROR":
        if (obj?.code === 410) {
          log.info({ resource: this.o.resource }, "watch expired (410 Gone): listing again");
          this.relistNow();
        } else {
          log.warn(
            { resource: this.o.resource, err: `${obj?.code ?? "?"} ${obj?.reason ?? ""}: ${obj?.message ?? ""}` },
            "watch failed: restarting with backoff",
          );
          this.restart("error");
        }
        return;
      default:
        return;
    }
    const rv = obj?.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  private onDone(gen: number, abort: AbortController | undefined, err: unknown): void {
    if (gen !== this.generation || this.stopped) return;
    if (abort && this.watchAbort === abort) this.watchAbort = undefined;
    if (!err || (err as { name?: string }).name === "TimeoutError") {
      // the server ended the watch (timeoutSeconds), or it was quiet for 30 s (client-node's
      // inactivity timeout): carry on from the last resourceVersion seen — after a pause when
      // the watch ended as soon as it began, so that a proxy closing every watch makes no busy loop
      const brief = Date.now() - this.watchOpenedAt < 1000;
      clearTimeout(this.restartTimer);
      this.restartTimer = setTimeout(() => void this.watch(gen), brief ? 1000 : 0);
      return;
    }
    if (isGone(err)) {
      log.info({ resource: this.o.resource }, "watch expired (410 Gone): listing again");
      this.relistNow();
      return;
    }
    log.warn({ resource: this.o.resource, err: errMessage(err) }, "watch failed: restarting with backoff");
    this.restart("error");
  }

  /** 410 Gone is the watch's normal end once history is compacted: list again without a backoff. */
  private relistNow(): void {
    const gen = ++this.generation;
    this.watchAbort?.abort();
    this.watchAbort = undefined;
    this.resourceVersion = "";
    void this.listAndWatch(gen);
  }

  private restart(why: string): void {
    if (this.stopped) return;
    informerRestarts.inc({ resource: this.o.resource });
    const gen = ++this.generation;
    this.watchAbort?.abort();
    this.watchAbort = undefined;
    this.backoffMs = Math.min(this.o.maxBackoffMs ?? 30_000, this.backoffMs ? this.backoffMs * 2 : 250);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (gen !== this.generation || this.stopped) return;
      this.lastActivity = Date.now();
      log.info({ resource: this.o.resource, why }, "informer restarting");
      // a fresh list: a delete missed while the watch was down is seen here
      void this.listAndWatch(gen);
    }, this.backoffMs);
  }

  /** Puts one object into the cache (or takes it out) and tells the handlers; returns its key. */
  private apply(type: "sync" | "delete", raw: unknown): string | undefined {
    let obj: T;
    try {
      // list items from the typed clients are class instances (Dates); watch events plain JSON
      const p = (Object.getPrototypeOf(raw) === Object.prototype ? raw : plain(raw)) as {
        metadata?: { managedFields?: unknown };
      };
      // server-side apply bookkeeping: a third of a task's bytes, never read by radflow
      if (p.metadata) delete p.metadata.managedFields;
      obj = this.o.parse(p);
    } catch (err) {
      log.warn(
        { resource: this.o.resource, key: keyOf(raw as T), err: errMessage(err) },
        "dropping object that does not parse",
      );
      return undefined;
    }
    const k = keyOf(obj);
    const old = this.cache.get(k);
    if (type === "delete") {
      this.cache.delete(k);
      this.emit("delete", obj);
      return k;
    }
    if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return k;
    this.cache.set(k, obj);
    this.emit(old ? "update" : "add", obj, old);
    return k;
  }

  private emit(type: "add" | "update" | "delete", obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (err) {
        // handlers only enqueue; a throw here is a bug, but must not kill the watch
        log.error({ resource: this.o.resource, err: errMessage(err) }, "informer handler threw");
      }
    }
  }
}

export function errMessage(err: unknown): string {
  if (!err) return "unknown error";
  const e = err as { message?: string; code?: number; body?: unknown };
  if (e.code && e.body)
    return `HTTP ${e.code}: ${typeof e.body === "string" ? e.body.slice(0, 300) : JSON.stringify(e.body).slice(0, 300)}`;
  return e.message ?? String(err);
}

/** The read side of one or several informers: what reconcilers depend on. */
export interface Cache<T> {
  get(key: string): T | undefined;
  list(): IterableIterator<T>;
  on(h: Handler<T>): void;
  hasSynced(): boolean;
}

/** Several informers (one per watched namespace) seen as one cache. */
export class CombinedCache<T extends { metadata?: { namespace?: string; name?: string; resourceVersion?: string } }>
  implements Cache<T>
{
  readonly parts: Informer<T>[];
  constructor(parts: Informer<T>[]) {
    this.parts = parts;
  }
  get(key: string): T | undefined {
    for (const p of this.parts) {
      const v = p.get(key);
      if (v) return v;
    }
    return undefined;
  }
  *list(): IterableIterator<T> {
    for (const p of this.parts) yield* p.list();
  }
  on(h: Handler<T>): void {
    for (const p of this.parts) p.on(h);
  }
  hasSynced(): boolean {
    return this.parts.every((p) => p.hasSynced());
  }
  async start(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.start()));
  }
  async stop(): Promise<void> {
    await Promise.all(this.parts.map((p) => p.stop()));
  }
  async waitForSync(timeoutMs?: number): Promise<void> {
    await Promise.all(this.parts.map((p) => p.waitForSync(timeoutMs)));
  }
}
