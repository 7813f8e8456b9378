// The HTTP endpoint Prometheus scrapes (/metrics), and the place the operator hangs its
// Kubernetes probes (/healthz, /readyz) on, on the same port or a second server.
//
//   const srv = await startMetricsServer(8080);
//   srv.probe("/healthz", () => ({ ok: !stopping }));
//   srv.probe("/readyz", () => ({ ok: manager.ready(), detail: "informers not synced" }));
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { registry as radflowRegistry } from "./metrics.ts";

export interface ProbeResult {
  ok: boolean;
  /** Said in the body; on failure it tells the on-call engineer why (no PHI). */
  detail?: string;
}
/** A probe answers quickly; throwing counts as failing, with the error as detail. */
export type Probe = () => ProbeResult | Promise<ProbeResult>;

export interface MetricsServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Serves GET `path`: 200 "ok" when the probe passes, 503 with its detail when not. */
  probe(path: string, check: Probe): void;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  /** Interface to bind; all interfaces by default. */
  host?: string;
  registry?: Registry;
  /** false: a probes-only server (a separate health port). */
  metrics?: boolean;
}

export async function startMetricsServer(port: number, o: MetricsServerOptions = {}): Promise<MetricsServer> {
  const reg = o.registry ?? radflowRegistry;
  const probes = new Map<string, Probe>();

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const text = (code: number, body: string) =>
      res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" }).end(body);
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return text(405, "method not allowed\n");
    }
    if (path === "/metrics" && o.metrics !== false) {
      try {
        const body = await reg.metrics();
        res.writeHead(200, { "content-type": reg.contentType }).end(req.method === "HEAD" ? undefined : body);
      } catch (e) {
        text(500, `collecting metrics failed: ${(e as Error).message}\n`);
      }
      return;
    }
    const check = probes.get(path);
    if (!check) return text(404, "not found\n");
    let r: ProbeResult;
    try {
      r = await check();
    } catch (e) {
      r = { ok: false, detail: (e as Error).message };
    }
    text(r.ok ? 200 : 503, `${r.ok ? "ok" : "failed"}${r.detail ? `: ${r.detail}` : ""}\n`);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  // a scrape that hangs should not hold a socket forever
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`metrics server on port ${port}: ${e.message}`)));
    server.listen(port, o.host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    probe(path, check) {
      if (!path.startsWith("/")) throw new Error(`probe path ${JSON.stringify(path)} must start with "/"`);
      if (path === "/metrics" && o.metrics !== false) throw new Error("/metrics is taken by the metrics endpoint");
      probes.set(path, check);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
