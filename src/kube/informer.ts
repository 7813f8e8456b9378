// An informer that survives: @kubernetes/client-node's ListWatch relists after a 410 by itself
// but stops for good on any other error and swallows handler exceptions. This wrapper restarts
// it with backoff, restarts it when it goes silent for too long (watchdog), exposes hasSynced
// and keeps a cache of objects parsed at the boundary (watch events carry string timestamps,
// list results class instances with Dates: both become the same plain, zod-checked value).
import { type KubeConfig, type KubernetesObject, makeInformer } from "@kubernetes/client-node";
import { logger } from "../log/logger.ts";
import { informerRestarts } from "../metrics/metrics.ts";

const log = logger("kube");

export interface InformerOptions<T> {
  /** e.g. "jobs" — for logs and metrics */
  resource: string;
  /** API path of the list/watch, e.g. /apis/batch/v1/namespaces/x/jobs or /apis/batch/v1/jobs */
  path: string;
  list: () => Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }>;
  labelSelector?: string;
  /** parses a plain JSON object; throw to drop it (logged) */
  parse: (raw: unknown) => T;
  /** restart when no event or reconnect was seen for this long (the client re-opens quiet watches ~every 30 s) */
  watchdogMs?: number;
  maxBackoffMs?: number;
}

export type Handler<T> = (type: "add" | "update" | "delete", obj: T, old?: T) => void;

export function keyOf(o: { metadata?: { namespace?: string; name?: string } }): string {
  return o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata?.name ?? "");
}

/** Class instances (Dates) and plain JSON become the same plain JSON. */
export function plain(o: unknown): unknown {
  return JSON.parse(JSON.stringify(o));
}

export class Informer<T extends { metadata?: { namespace?: string; name?: string; resourceVersion?: string } }> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private inner: ReturnType<typeof makeInformer<KubernetesObject>> | undefined;
  private synced = false;
  private stopped = true;
  private backoffMs = 0;
  private lastActivity = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
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
    await this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.restartTimer);
    await this.inner?.stop();
  }

  /** Resolves once the first list has filled the cache. */
  async waitForSync(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.synced) {
      if (Date.now() > deadline) throw new Error(`informer ${this.o.resource}: not synced after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async run(): Promise<void> {
    const inf = makeInformer<KubernetesObject>(
      this.kc,
      this.o.path,
      async () => {
        const l = await this.o.list();
        return l as never;
      },
      this.o.labelSelector,
    );
    this.inner = inf;
    inf.on("add", (o) => this.apply("add", o));
    inf.on("update", (o) => this.apply("update", o));
    inf.on("delete", (o) => this.apply("delete", o));
    inf.on("connect", () => {
      this.lastActivity = Date.now();
    });
    inf.on("error", (err) => {
      if (this.inner !== inf) return;
      log.warn({ resource: this.o.resource, err: errMessage(err) }, "watch failed: restarting with backoff");
      this.restart("error");
    });
    try {
      await inf.start();
      // ListWatch lists before it watches: once start() resolves the cache holds the list.
      this.synced = true;
      this.backoffMs = 0;
      this.lastActivity = Date.now();
    } catch (err) {
      log.warn({ resource: this.o.resource, err: errMessage(err) }, "list failed: retrying with backoff");
      this.restart("error");
    }
  }

  private restart(why: string): void {
    if (this.stopped) return;
    informerRestarts.inc({ resource: this.o.resource });
    const old = this.inner;
    this.inner = undefined;
    void old?.stop().catch(() => undefined);
    this.backoffMs = Math.min(this.o.maxBackoffMs ?? 30_000, this.backoffMs ? this.backoffMs * 2 : 250);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.lastActivity = Date.now();
      void this.relist(why);
    }, this.backoffMs);
  }

  /** After a restart: list afresh and reconcile the cache (a delete missed while down is seen here). */
  private async relist(why: string): Promise<void> {
    if (this.stopped) return;
    log.info({ resource: this.o.resource, why }, "informer restarting");
    await this.run();
    if (!this.inner) return;
    // objects that vanished while the watch was down
    const present = new Set<string>();
    for (const raw of this.rawObjects()) present.add(keyOf(raw as T));
    for (const [k, v] of this.cache) {
      if (!present.has(k)) {
        this.cache.delete(k);
        this.emit("delete", v);
      }
    }
  }

  private rawObjects(): KubernetesObject[] {
    return (this.inner as unknown as { list(): KubernetesObject[] } | undefined)?.list() ?? [];
  }

  private apply(type: "add" | "update" | "delete", raw: KubernetesObject): void {
    this.lastActivity = Date.now();
    let obj: T;
    try {
      const p = plain(raw) as { metadata?: { managedFields?: unknown } };
      // server-side apply bookkeeping: a third of a task's bytes, never read by radflow
      if (p.metadata) delete p.metadata.managedFields;
      obj = this.o.parse(p);
    } catch (err) {
      log.warn(
        { resource: this.o.resource, key: keyOf(raw), err: errMessage(err) },
        "dropping object that does not parse",
      );
      return;
    }
    const k = keyOf(obj);
    const old = this.cache.get(k);
    if (type === "delete") this.cache.delete(k);
    else {
      if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
      this.cache.set(k, obj);
    }
    this.emit(type === "delete" ? "delete" : old ? "update" : "add", obj, old);
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
