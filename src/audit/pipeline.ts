// AuditTrail: the AuditSink the operator uses. It renders each fact once and hands both copies
// to JetStream before record() resolves, so a fact that was recorded cannot be lost by radflow:
//
//   FHIR AuditEvent  -> stream RADFLOW_AUDIT,        subject radflow.audit.<kind>   (kept; consumers read it)
//   syslog message   -> stream RADFLOW_AUDIT_SPOOL,  subject radflow.auditspool.syslog (work queue)
//
// Both publishes carry Nats-Msg-Id = fact.id, so a producer that retries record() after a
// timeout does not store a fact twice (within the streams' duplicate window).
//
// The forwarder drains the spool through a durable pull consumer with max_ack_pending = 1: one
// record in flight, and the next one is not even delivered before the previous is acked, so
// records leave in spool order, also when one forwarder takes over from another. A record is
// acked only after its TLS write completed; while the repository is unreachable the record
// stays unacked (its ack deadline extended) and is retried with backoff, and everything behind
// it waits. Only one replica should forward (the leader: `forward: false` + startForwarding()):
// one TCP connection keeps order to the byte, while writes over two connections from two
// replicas may reach the repository in either order. A forwarder that stops hands its record
// back (nak) and closes its connection only after the repository read everything.
//
// Delivery is at-least-once, and these are the honest limits:
// - Duplicate window: if the process dies after the TLS write completed and before JetStream
//   recorded the ack, the record is delivered again after ack_wait and sent a second time. The
//   resent bytes are identical (the spool holds the rendered message), so a repository can
//   recognise the repeat.
// - Syslog over TLS (RFC 5425) has no application-level acknowledgement. A completed write means
//   the bytes reached this host's TCP stack, not the repository's disk: a repository that dies
//   after our write and before it read the bytes loses them, and radflow cannot tell. The FHIR
//   copy in RADFLOW_AUDIT is kept independently and is the reference for reconciliation.
import {
  AckPolicy,
  type Consumer,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { headers, type NatsConnection, nanos } from "@nats-io/transport-node";
import { logger } from "../log/logger.ts";
import { auditBacklog, auditRecords } from "../metrics/metrics.ts";
import { type AuditCodeTable, defaultAuditCodes } from "./codes.ts";
import { renderAuditMessage } from "./dicom-audit-message.ts";
import type { AuditFact, AuditSink } from "./facts.ts";
import { renderFhirAuditEvent } from "./fhir-audit-event.ts";
import { type AuditSource, localAuditSource } from "./source.ts";
import { octetFrame, type SyslogTlsOptions, type SyslogTransport, syslogMessage, TlsSyslogClient } from "./syslog.ts";

const log = logger("audit");

export const AUDIT_STREAM = "RADFLOW_AUDIT";
export const AUDIT_SUBJECT_PREFIX = "radflow.audit";
export const SPOOL_STREAM = "RADFLOW_AUDIT_SPOOL";
export const SPOOL_SUBJECT = "radflow.auditspool.syslog";
export const SPOOL_CONSUMER = "radflow-syslog-forwarder";

export interface AuditTrailOptions {
  nc: NatsConnection;
  /** Code table (defaults, or loadAuditCodes(site file)). */
  codes?: AuditCodeTable;
  /** Who reports; defaults to localAuditSource(). */
  source?: AuditSource;
  /**
   * The Audit Record Repository: TLS options, or any SyslogTransport. Without it no syslog copy
   * is made (FHIR events only), and nothing is spooled that no one would ever drain.
   */
  syslog?: SyslogTlsOptions | SyslogTransport;
  /**
   * false: only record (publish and spool); forwarding starts with startForwarding(). Run with
   * false on every replica and start forwarding on the leader. Default true.
   */
  forward?: boolean;
  /** Called with the spool depth whenever it changes (including back to 0). */
  onBacklog?: (n: number) => void;
  /** How often the spool depth is read. Default 5 s. */
  backlogIntervalMs?: number;
  /** Backoff between attempts to reach the repository. Default 500 ms doubling to 10 s. */
  retry?: { initialMs?: number; maxMs?: number };
  /** How long JetStream waits for the forwarder's ack before redelivering. Default 30 s. */
  ackWaitMs?: number;
  /** JetStream replicas of the two streams (3 on a clustered NATS). Default 1. */
  replicas?: number;
  /** Keep FHIR AuditEvents this long; 0 (default) keeps them until the site's policy removes them. */
  auditMaxAgeSeconds?: number;
  /** Spool names, overridable so tests (and several installations on one NATS) do not share a spool. */
  spool?: { stream?: string; subject?: string; consumer?: string };
}

const DUPLICATE_WINDOW_MS = 10 * 60_000;

export class AuditTrail implements AuditSink {
  private readonly nc: NatsConnection;
  private readonly codes: AuditCodeTable;
  private readonly source: AuditSource;
  private readonly transport: SyslogTransport | undefined;
  private readonly o: AuditTrailOptions;
  private readonly spool: { stream: string; subject: string; consumer: string };
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private ready: Promise<void> | undefined;
  private stopping = false;
  private readonly sleepers = new Set<() => void>();
  private loop: Promise<void> | undefined;
  private backlogTimer: NodeJS.Timeout | undefined;
  private lastBacklog = -1;

  constructor(o: AuditTrailOptions) {
    this.o = o;
    this.nc = o.nc;
    this.codes = o.codes ?? defaultAuditCodes();
    this.source = o.source ?? localAuditSource();
    this.transport = !o.syslog ? undefined : "send" in o.syslog ? o.syslog : new TlsSyslogClient(o.syslog);
    this.spool = {
      stream: o.spool?.stream ?? SPOOL_STREAM,
      subject: o.spool?.subject ?? SPOOL_SUBJECT,
      consumer: o.spool?.consumer ?? SPOOL_CONSUMER,
    };
  }

  /**
   * Creates (or finds) the streams and the forwarder's consumer, starts reading the spool depth,
   * and starts forwarding unless `forward: false`.
   */
  async start(): Promise<void> {
    if (!this.ready) {
      this.ready = this.setup();
      // a failed setup may be retried by calling start() again
      this.ready.catch(() => {
        this.ready = undefined;
      });
    }
    await this.ready;
    if (this.transport && !this.backlogTimer) {
      void this.refreshBacklog();
      this.backlogTimer = setInterval(() => void this.refreshBacklog(), this.o.backlogIntervalMs ?? 5000);
      this.backlogTimer.unref();
    }
    if (this.o.forward !== false) this.startForwarding();
  }

  /**
   * Starts draining the spool to the repository (after start()). With several replicas, call
   * it on the leader only: JetStream keeps one record in flight, but records sent over two TLS
   * connections can still reach the repository out of order.
   */
  startForwarding(): void {
    if (!this.ready) throw new Error("AuditTrail.startForwarding() before start()");
    if (!this.transport || this.loop) return;
    this.stopping = false;
    this.loop = this.forward().catch((e: Error) => log.error({ err: e }, "audit forwarder stopped"));
  }

  /**
   * Stops forwarding: the record in flight is finished (or returned to the spool) and the
   * connection closed only after the repository has read everything, so a successor that
   * starts afterwards cannot overtake it.
   */
  async stopForwarding(): Promise<void> {
    this.stopping = true;
    for (const wake of [...this.sleepers]) wake();
    await this.loop;
    this.loop = undefined;
    await this.transport?.close();
  }

  /** Stops forwarding and the backlog reading. record() keeps working (it only publishes). */
  async stop(): Promise<void> {
    if (this.backlogTimer) clearInterval(this.backlogTimer);
    this.backlogTimer = undefined;
    await this.stopForwarding();
  }

  async record(fact: AuditFact): Promise<void> {
    if (!this.ready) throw new Error("AuditTrail.record() before start()");
    if (!fact.id) throw new Error(`audit fact ${fact.kind}: an id is required (it is the dedupe key)`);
    await this.ready;
    const js = this.js!;
    // Render before publishing anything: a fact that cannot be rendered is refused whole.
    const event = renderFhirAuditEvent(fact, this.codes, this.source);
    const spooled = this.transport
      ? syslogMessage(
          {
            time: fact.time,
            hostname: this.source.hostname,
            procId: this.source.processId,
            msgId: this.codes.events[fact.kind].eventId.code,
          },
          renderAuditMessage(fact, this.codes, this.source),
        )
      : undefined;
    const publish = async (sink: "nats" | "syslog", subject: string, data: Uint8Array | string) => {
      const h = headers();
      h.set("Radflow-Audit-Kind", fact.kind);
      try {
        const ack = await js.publish(subject, data, { msgID: fact.id, headers: h });
        auditRecords.inc({ sink, outcome: ack.duplicate ? "duplicate" : sink === "nats" ? "published" : "spooled" });
      } catch (e) {
        auditRecords.inc({ sink, outcome: "failed" });
        throw new Error(`audit record ${fact.kind} ${fact.id}: publishing to ${subject}: ${(e as Error).message}`);
      }
    };
    await Promise.all([
      publish("nats", `${AUDIT_SUBJECT_PREFIX}.${fact.kind}`, JSON.stringify(event)),
      spooled && publish("syslog", this.spool.subject, spooled),
    ]);
  }

  private async setup(): Promise<void> {
    this.js = jetstream(this.nc);
    this.jsm = await jetstreamManager(this.nc);
    const replicas = this.o.replicas ?? 1;
    const maxAgeMs = (this.o.auditMaxAgeSeconds ?? 0) * 1000;
    await ensureStream(this.jsm, {
      name: AUDIT_STREAM,
      description: "FHIR R4 AuditEvents of every radflow lifecycle fact (holds study identifiers: restrict access).",
      subjects: [`${AUDIT_SUBJECT_PREFIX}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
      max_age: nanos(maxAgeMs),
      duplicate_window: nanos(maxAgeMs ? Math.min(maxAgeMs, DUPLICATE_WINDOW_MS) : DUPLICATE_WINDOW_MS),
    });
    if (!this.transport) {
      log.warn("no audit record repository configured: DICOM audit messages are not produced (FHIR events only)");
      return;
    }
    await ensureStream(this.jsm, {
      name: this.spool.stream,
      description: "DICOM audit messages (RFC 5424) waiting for the Audit Record Repository.",
      subjects: [this.spool.subject],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: replicas,
      // a full spool refuses new records (record() fails, the producer retries) rather than
      // silently dropping old ones
      discard: DiscardPolicy.New,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    });
    const want = {
      durable_name: this.spool.consumer,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: this.spool.subject,
      max_ack_pending: 1,
      ack_wait: nanos(this.o.ackWaitMs ?? 30_000),
      max_deliver: -1,
    };
    const have = await this.jsm.consumers.info(this.spool.stream, this.spool.consumer).catch(() => undefined);
    if (!have) {
      await this.jsm.consumers.add(this.spool.stream, want);
    } else if (have.config.max_ack_pending !== 1 || have.config.ack_wait !== want.ack_wait) {
      await this.jsm.consumers.update(this.spool.stream, this.spool.consumer, {
        max_ack_pending: 1,
        ack_wait: want.ack_wait,
      });
    }
  }

  /** Sleeps up to ms, or less if stop() is called. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  private async forward(): Promise<void> {
    const initial = this.o.retry?.initialMs ?? 500;
    const max = this.o.retry?.maxMs ?? 10_000;
    // extend the ack deadline well before it runs out while a record waits for the repository
    const workingEvery = Math.max(1000, (this.o.ackWaitMs ?? 30_000) / 3);
    let consumer: Consumer | undefined;
    let pollErrors = 0;
    while (!this.stopping) {
      let m: JsMsg | null;
      try {
        consumer ??= await this.js!.consumers.get(this.spool.stream, this.spool.consumer);
        m = await consumer.next({ expires: 2000 });
        pollErrors = 0;
      } catch (e) {
        if (pollErrors++ === 0) log.warn({ err: e }, "audit spool: reading the next record failed; retrying");
        await this.sleep(Math.min(max, initial * 2 ** Math.min(pollErrors, 10)));
        continue;
      }
      if (!m) continue;
      if (this.stopping) {
        m.nak(); // hand it straight to whichever forwarder runs next
        break;
      }
      if (!(await this.deliver(m, initial, max, workingEvery))) break;
    }
  }

  /** Sends one record until it is written (true) or the trail stops (false, record returned to the spool). */
  private async deliver(m: JsMsg, initial: number, max: number, workingEvery: number): Promise<boolean> {
    const frame = octetFrame(Buffer.from(m.data));
    let delay = initial;
    let failures = 0;
    for (;;) {
      try {
        await this.transport!.send(frame);
        break;
      } catch (e) {
        auditRecords.inc({ sink: "syslog", outcome: "retry" });
        if (failures++ === 0) {
          log.warn({ err: e }, "audit record repository unreachable; records stay spooled and are resent in order");
        }
        if (this.stopping) {
          m.nak();
          return false;
        }
        // sleep in slices so the ack deadline keeps moving while we wait
        for (let left = delay; left > 0 && !this.stopping; left -= workingEvery) {
          m.working();
          await this.sleep(Math.min(left, workingEvery));
        }
        delay = Math.min(max, delay * 2);
      }
    }
    if (failures > 0) log.info({ attempts: failures + 1 }, "audit record repository reachable again");
    try {
      // ackAck: wait until JetStream has the ack, so a crash right after does not resend needlessly
      await m.ackAck();
    } catch (e) {
      // The record went out but JetStream may not have the ack: it will be sent again (see the
      // duplicate window in the header comment).
      log.warn({ err: e }, "audit spool: ack after delivery failed; the record may be sent twice");
    }
    auditRecords.inc({ sink: "syslog", outcome: "sent" });
    void this.refreshBacklog();
    return true;
  }

  /** The spool depth (undelivered + in flight) into the auditBacklog gauge and onBacklog. */
  private async refreshBacklog(): Promise<void> {
    if (!this.jsm) return;
    try {
      const ci = await this.jsm.consumers.info(this.spool.stream, this.spool.consumer);
      const n = ci.num_pending + ci.num_ack_pending;
      auditBacklog.set({ sink: "syslog" }, n);
      if (n !== this.lastBacklog) {
        this.lastBacklog = n;
        this.o.onBacklog?.(n);
      }
    } catch (e) {
      log.debug({ err: e }, "audit spool: reading the backlog failed");
    }
  }
}

/**
 * Creates the stream, or accepts the one that exists (another replica, or an earlier run, made
 * it) after adding any missing subject. Retention cannot change on a live stream: a mismatch is
 * an error for a human to resolve, not something to paper over.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  cfg: Partial<StreamConfig> & { name: string; subjects: string[] },
): Promise<void> {
  const existing = async () => {
    try {
      return await jsm.streams.info(cfg.name);
    } catch (e) {
      if ((e as { code?: number }).code === 10059 || /stream not found/i.test((e as Error).message)) return undefined;
      throw e;
    }
  };
  let info = await existing();
  if (!info) {
    try {
      await jsm.streams.add(cfg);
      return;
    } catch (e) {
      info = await existing(); // lost a race with another replica?
      if (!info) throw new Error(`creating stream ${cfg.name}: ${(e as Error).message}`);
    }
  }
  if (cfg.retention && info.config.retention !== cfg.retention) {
    throw new Error(
      `stream ${cfg.name} exists with retention ${info.config.retention}, radflow needs ${cfg.retention}; delete or migrate it`,
    );
  }
  const missing = cfg.subjects.filter((s) => !info.config.subjects?.includes(s));
  if (missing.length) {
    await jsm.streams.update(cfg.name, { subjects: [...(info.config.subjects ?? []), ...missing] });
  }
}
