// RFC 5424 syslog messages carrying a DICOM AuditMessage, RFC 5425 octet-counted framing, and a
// TLS client that sends frames to an Audit Record Repository and reconnects when needed.
import { once } from "node:events";
import { isIP } from "node:net";
import tls from "node:tls";

/** <85> = facility 10 (security/authorization, "authpriv") * 8 + severity 5 (notice). */
export const SYSLOG_PRI = 85;
export const SOLE_APP_NAME = "IHE+SOLE";
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export interface SyslogHeader {
  /** RFC 3339 time with zone; rendered in UTC with at most microsecond precision. */
  time: string;
  hostname: string;
  appName?: string;
  procId: string;
  /** the audit event code (EventID csd-code) */
  msgId: string;
}

/** PRINTUSASCII (33..126) only, at most `max` characters; "-" (NILVALUE) when nothing is left. */
function headerField(s: string, max: number): string {
  const v = s.replace(/[^\x21-\x7e]/g, "_").slice(0, max);
  return v === "" ? "-" : v;
}

/** RFC 5424 TIMESTAMP: upper-case T and Z, at most 6 fractional digits. */
export function syslogTimestamp(time: string): string {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) throw new Error(`syslog: ${JSON.stringify(time)} is not a timestamp`);
  return new Date(ms).toISOString();
}

/**
 * `<85>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - ` + BOM + the UTF-8 message. Structured data
 * is NILVALUE: the AuditMessage carries everything.
 */
export function syslogMessage(h: SyslogHeader, msg: string): Buffer {
  const header = [
    `<${SYSLOG_PRI}>1`,
    syslogTimestamp(h.time),
    headerField(h.hostname, 255),
    headerField(h.appName ?? SOLE_APP_NAME, 48),
    headerField(h.procId, 128),
    headerField(h.msgId, 32),
    "-",
  ].join(" ");
  return Buffer.concat([Buffer.from(`${header} `, "ascii"), BOM, Buffer.from(msg, "utf8")]);
}

/** RFC 5425 frame: MSG-LEN SP SYSLOG-MSG, where MSG-LEN counts octets, not characters. */
export function octetFrame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, "ascii"), message]);
}

/**
 * Splits an RFC 5425 byte stream back into messages (for receivers and tests). Feed chunks as
 * they come; complete messages are returned, partial ones kept until the rest arrives.
 */
export class OctetFrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      const sp = this.buf.indexOf(0x20);
      if (sp < 0) {
        if (this.buf.length > 10) throw new Error("syslog frame: no MSG-LEN in the first 10 octets");
        return out;
      }
      const lenText = this.buf.subarray(0, sp).toString("ascii");
      if (!/^[1-9][0-9]{0,9}$/.test(lenText)) throw new Error(`syslog frame: bad MSG-LEN ${JSON.stringify(lenText)}`);
      const len = Number(lenText);
      if (this.buf.length < sp + 1 + len) return out;
      out.push(Buffer.from(this.buf.subarray(sp + 1, sp + 1 + len)));
      this.buf = this.buf.subarray(sp + 1 + len);
    }
  }
}

/** Where audit frames go. The TLS client below is the production one; tests may supply others. */
export interface SyslogTransport {
  /** Resolves once the frame has been written to the connection; rejects if it could not be. */
  send(frame: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface SyslogTlsOptions {
  host: string;
  /** RFC 5425's port is 6514. */
  port: number;
  /** PEM CA bundle that signed the repository's certificate; without it (or empty) Node's public roots. */
  ca?: string | Buffer;
  /** PEM client certificate and key, for repositories that require mutual TLS (ATNA node authentication). */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to verify in the server certificate; defaults to `host`. */
  servername?: string;
  connectTimeoutMs?: number;
  /** A write that cannot be handed to the kernel in this time fails (repository stopped reading). */
  writeTimeoutMs?: number;
  /** TLS 1.3: how long a new connection waits for the server to reject our certificate. Default 500 ms. */
  settleMs?: number;
}

/**
 * One TLS connection to the repository, opened on first use and again after any error or close.
 * It never retries by itself: the caller (the spool forwarder) owns retries, backoff and order.
 */
export class TlsSyslogClient implements SyslogTransport {
  private socket: tls.TLSSocket | undefined;
  private readonly o: Required<Omit<SyslogTlsOptions, "ca" | "cert" | "key" | "servername">> &
    Pick<SyslogTlsOptions, "ca" | "cert" | "key" | "servername">;

  constructor(o: SyslogTlsOptions) {
    this.o = { connectTimeoutMs: 10_000, writeTimeoutMs: 10_000, settleMs: 500, ...o };
  }

  private usable(s: tls.TLSSocket | undefined): boolean {
    return !!s && !s.destroyed && s.writable && !s.readableEnded;
  }

  private async connect(): Promise<tls.TLSSocket> {
    const old = this.socket;
    if (old && this.usable(old)) return old;
    old?.destroy();
    this.socket = undefined;
    const o = this.o;
    const s = tls.connect({
      host: o.host,
      port: o.port,
      ca: o.ca?.length ? o.ca : undefined,
      cert: o.cert,
      key: o.key,
      servername: o.servername ?? (isIP(o.host) ? undefined : o.host),
      minVersion: "TLSv1.2",
    });
    // The repository never talks back, but a close from its side only shows once we read.
    s.on("data", () => undefined);
    // Errors after the connection is up surface on the next write; this keeps them from crashing.
    s.on("error", () => undefined);
    s.setKeepAlive(true, 30_000);
    // each record is complete on its own: send it now rather than wait to coalesce (Nagle)
    s.setNoDelay(true);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), o.connectTimeoutMs);
    try {
      await once(s, "secureConnect", { signal: ac.signal });
    } catch (e) {
      s.destroy();
      const why = ac.signal.aborted ? `timed out after ${o.connectTimeoutMs} ms` : (e as Error).message;
      throw new Error(`syslog TLS connect to ${o.host}:${o.port}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
    if (s.getProtocol() === "TLSv1.3") await this.settle(s);
    this.socket = s;
    return s;
  }

  /**
   * In TLS 1.3 the client finishes its handshake before the server has checked the client
   * certificate; a server that refuses it says so one round trip later, and a frame written in
   * between is lost without an error. So a new connection counts as accepted only once the
   * server's session ticket arrived (sent after it verified us) or `settleMs` passed quietly.
   */
  private async settle(s: tls.TLSSocket): Promise<void> {
    const o = this.o;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        s.off("session", ok);
        s.off("error", fail);
        s.off("close", closed);
        if (err) {
          s.destroy();
          reject(new Error(`syslog TLS connect to ${o.host}:${o.port}: ${err.message}`));
        } else resolve();
      };
      // 'session' fires inside OpenSSL's read path; writing before it unwinds corrupts the
      // connection (bad record MAC), so resolve on the next turn of the event loop
      const ok = () => setImmediate(done);
      const fail = (e: Error) => done(e);
      const closed = () => done(new Error("the server closed the connection after the handshake"));
      const timer = setTimeout(ok, o.settleMs);
      s.once("session", ok);
      s.once("error", fail);
      s.once("close", closed);
    });
  }

  async send(frame: Buffer): Promise<void> {
    const s = await this.connect();
    const o = this.o;
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.off("close", onClose);
        if (err) {
          s.destroy();
          reject(new Error(`syslog TLS write to ${o.host}:${o.port}: ${err.message}`));
        } else resolve();
      };
      const onClose = () => finish(new Error("connection closed"));
      const timer = setTimeout(() => finish(new Error(`timed out after ${o.writeTimeoutMs} ms`)), o.writeTimeoutMs);
      s.once("close", onClose);
      s.write(frame, (err) => finish(err ?? undefined));
    });
  }

  /**
   * Ends the connection gracefully: resolves once the repository has read everything written
   * and closed its side (or after 5 s). A forwarder that takes over afterwards therefore cannot
   * overtake records still in flight on this connection.
   */
  async close(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    if (!s || s.destroyed) return;
    const closed = once(s, "close").catch(() => undefined);
    s.end();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000).unref())]);
    s.destroy();
  }
}
