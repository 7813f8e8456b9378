// A real RFC 5425 receiver for tests: a Node TLS server with a self-signed certificate made by
// openssl, decoding octet-counted frames. It can be stopped (dropping live connections, as a
// crashed repository would) and started again on the same port.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { OctetFrameDecoder } from "../../src/audit/syslog.ts";

export interface Pem {
  key: string;
  cert: string;
}

/** A self-signed certificate for localhost / 127.0.0.1. Needs the Debian package `openssl`. */
export function selfSigned(cn = "localhost"): Pem {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-tls-"));
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  const r = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { encoding: "utf8" },
  );
  if (r.error || r.status !== 0) {
    throw new Error(
      `openssl could not make a certificate (apt-get install -y openssl): ${r.error?.message ?? r.stderr}`,
    );
  }
  const pem = { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
  rmSync(dir, { recursive: true, force: true }); // the PEMs are in memory: leave nothing in /tmp
  return pem;
}

export class SyslogReceiver {
  readonly messages: Buffer[] = [];
  readonly errors: string[] = [];
  private server: tls.Server | undefined;
  private readonly sockets = new Set<tls.TLSSocket>();
  port = 0;
  readonly pem: Pem;
  private readonly clientCA: string | undefined;

  /** `clientCA`: require a client certificate signed by it (mutual TLS). */
  constructor(pem: Pem, clientCA?: string) {
    this.pem = pem;
    this.clientCA = clientCA;
  }

  async start(): Promise<number> {
    const server = tls.createServer(
      {
        key: this.pem.key,
        cert: this.pem.cert,
        ...(this.clientCA ? { ca: this.clientCA, requestCert: true, rejectUnauthorized: true } : {}),
      },
      (s) => {
        this.sockets.add(s);
        const dec = new OctetFrameDecoder();
        s.on("data", (chunk: Buffer) => {
          try {
            this.messages.push(...dec.push(chunk));
          } catch (e) {
            this.errors.push((e as Error).message);
            s.destroy();
          }
        });
        s.on("error", () => undefined);
        s.on("close", () => this.sockets.delete(s));
      },
    );
    server.on("tlsClientError", (e) => this.errors.push(e.message));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** Like a crash: stops listening and drops every connection. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The messages as text, with the syslog header and BOM, for assertions. */
  texts(): string[] {
    return this.messages.map((m) => m.toString("utf8"));
  }
}
