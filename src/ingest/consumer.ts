// StudyIngest: study events from JetStream → InferenceTasks (docs/ARCHITECTURE.md §4).
//
// A durable pull consumer with explicit ack. Every message ends in exactly one of:
//   - every matched InferenceTask exists (created, already there, or made before and recorded in
//     the processed-events bucket) → each recorded there, ack;
//   - no workflow matched → counted, audited, ack;
//   - the event is invalid (too large or deep, malformed), a workflow's trigger could not be
//     evaluated, routing threw, the API server refuses a task for good, or the last delivery
//     failed or timed out → one record on radflow.dlq.study with a reason, ack;
//   - a transient failure (API server down, 5xx, 429, timeout) → nak with a growing delay.
// The ack comes only after the task exists, so a crash at any point means a redelivery, and the
// deterministic task name turns a redelivery into "already exists"; the processed-events bucket
// keeps that promise after the task is gone (a re-created consumer replays the whole stream, and
// tasks removed by their TTL must not run again).
// Nothing is redelivered until JetStream gives up: the last delivery dead-letters whatever
// happens, and a delivery beyond it (an earlier one crashed or stalled) dead-letters at once.
//
// Priority: JetStream delivers in stream order, so a STAT study published behind 2,000 batch
// events would wait for all of them. The ingest therefore holds a window of delivered events
// (max_ack_pending, default 4096): each is parsed and routed as it arrives (pure and cheap) and
// waits in the lane of its most urgent task (priority-window.ts); `concurrency` workers take the
// most urgent first, in stream order within a priority. Behind a backlog (a restart with
// thousands of events waiting), the workers start only once the backlog is in the window
// (StartGate), so the first events delivered do not go first merely for being first. Acks are
// unchanged — each only after its tasks exist — so a crash anywhere loses nothing, and the
// deterministic names and the processed bucket make the redelivery a no-op. Events held are kept
// alive with working() until taken; a taken one for at most processTimeoutMs. On stop, events
// not yet taken are nak'ed at once.
import { performance } from "node:perf_hooks";
import * as k8s from "@kubernetes/client-node";
import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import {
  ClosedConnectionError,
  ConnectionError,
  headers,
  type NatsConnection,
  NoRespondersError,
  nanos,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { AIWorkflow } from "../api/v1alpha1/aiworkflow.ts";
import { GROUP, PRIORITY_ORDER, VERSION } from "../api/v1alpha1/common.ts";
import { type DeadLetter, eventKey, type StudyEvent, SUBJECT, toStudyEvent } from "../api/v1alpha1/events.ts";
import type { InferenceTask } from "../api/v1alpha1/inferencetask.ts";
import type { Study } from "../api/v1alpha1/study.ts";
import { type AuditFact, type AuditSink, noAudit, patientIdOf } from "../audit/facts.ts";
import { logger, studyRef } from "../log/logger.ts";
import {
  dlqRecords,
  natsAckPending,
  natsPending,
  natsRedeliveries,
  studyEvents,
  tasksCreated,
} from "../metrics/metrics.ts";
import { connectNats, type NatsSettings, reconnectDelay } from "./connect.ts";
import { PriorityWindow, StartGate } from "./priority-window.ts";
import { ProcessedTasks } from "./processed.ts";
import { type RouteResult, route, stableId } from "./route.ts";
import { ensureProcessedBucket, ensureStreams, PROCESSED_BUCKET, STREAM, type StreamOptions } from "./streams.ts";

const log = logger("ingest");

export interface StudyIngestOptions {
  /** An open NATS connection (kept open by stop()), or settings to open one (closed by stop()). */
  nc?: NatsConnection;
  nats?: NatsSettings;
  kubeConfig: k8s.KubeConfig;
  /** The Ready AIWorkflows (the operator's informer cache). Start ingest only once it has synced. */
  workflows: { list(): AIWorkflow[] };
  audit?: AuditSink;
  /** Durable consumer name; default "radflow-ingest". */
  consumer?: string;
  /** Stream to read; default RADFLOW_STUDIES. */
  stream?: string;
  /** Subjects to read from it; default all of the stream's. */
  subjects?: string[];
  /**
   * Where a newly created consumer starts: "all" (default) takes every event the stream still
   * holds, so events published before radflow first started are not lost; "new" only takes
   * events published from now on. An existing consumer keeps its position either way.
   */
  deliverPolicy?: "all" | "new";
  /** Create or update radflow's streams at start with these options; false leaves streams alone. */
  streams?: StreamOptions | false;
  /**
   * Messages delivered and not yet acked, at most: the window of events routed ahead and taken
   * most urgent first (a STAT event this far behind others is seen at once), and the
   * backpressure; default 4096.
   */
  maxAckPending?: number;
  /** Deliveries of one message before it goes to the DLQ as retries-exhausted; default 10. */
  maxDeliver?: number;
  /** Redelivery after this long without ack (a crashed replica); default 30 s. */
  ackWaitMs?: number;
  /** nak delay: retryBaseMs · 2^(delivery-1), at most retryMaxMs; default 1 s … 60 s. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Messages worked on at once (taken from the window, most urgent first); default 16. */
  concurrency?: number;
  /** How often consumer lag is read into metrics; default 5 s. */
  lagIntervalMs?: number;
  /** KV bucket of the tasks study events made; default RADFLOW_PROCESSED. */
  processedBucket?: string;
  /** Events over this many bytes go to the DLQ as too-large unread; default 1 MiB. */
  maxEventBytes?: number;
  /** Events nesting objects/arrays deeper go to the DLQ as too-deep unread; default 64. */
  maxEventDepth?: number;
  /** Routing time budget per event, ms; workflows not reached in it count as trigger errors. Default 2 s. */
  routeBudgetMs?: number;
  /** One delivery is given up after this long (nak, or the DLQ on the last delivery); default 2 min. */
  processTimeoutMs?: number;
}

type Outcome = "matched" | "unmatched" | "invalid" | "duplicate" | "retried";

/** What a delivered message is, known on arrival (parsing and routing are pure). */
type Prepared =
  | { kind: "exhausted" }
  | { kind: "invalid"; reason: string; detail: string }
  | { kind: "routing-failed"; event: StudyEvent; error: unknown }
  | { kind: "routed"; event: StudyEvent; routed: RouteResult };

/** A delivered message in the window. */
interface Held {
  m: JsMsg;
  reply: Reply;
  deliveries: number;
  prepared: Prepared;
}

/** Lanes of the window: the priorities, most urgent first. */
const LANES = Math.max(...Object.values(PRIORITY_ORDER)) + 1;

/**
 * The lane of an event: that of its most urgent task. An event that makes no task (invalid,
 * unmatched, routing failed) waits in the last lane: no study is waiting on it.
 */
export function laneOf(p: Prepared): number {
  if (p.kind !== "routed" || p.routed.tasks.length === 0) return LANES - 1;
  return Math.min(...p.routed.tasks.map((t) => PRIORITY_ORDER[t.spec.priority]));
}

/** A failure creating a task: permanent (the API server will never accept it) or not. */
class CreateError extends Error {
  readonly permanent: boolean;
  constructor(message: string, permanent: boolean) {
    super(message);
    this.permanent = permanent;
  }
}

class ProcessingTimeout extends Error {
  constructor(ms: number) {
    super(`not processed within ${ms} ms`);
  }
}

/**
 * An error as DLQ detail and log text without study values. Our own errors and NATS' say what
 * failed, never with what; anything else (a TypeError, a parser's "Unexpected token … in '<value>'")
 * may quote the event, so only its class goes out.
 */
export function safeError(e: unknown): string {
  if (
    e instanceof CreateError ||
    e instanceof ProcessingTimeout ||
    e instanceof JetStreamApiError ||
    e instanceof TimeoutError ||
    e instanceof NoRespondersError ||
    e instanceof ConnectionError ||
    e instanceof ClosedConnectionError ||
    e instanceof RequestError
  ) {
    return e.message;
  }
  if (e instanceof RangeError && /^(Maximum call stack size exceeded|Invalid string length)$/.test(e.message)) {
    return `${e.name}: ${e.message}`;
  }
  const name = e instanceof Error ? e.name : typeof e;
  return `${name} (message withheld: it may quote study values)`;
}

/**
 * The message's answer, given once: a delivery that was given up on (timed out) may still finish
 * later, and its late ack or nak must not override what was decided.
 */
class Reply {
  private settled = false;
  private readonly m: JsMsg;
  constructor(m: JsMsg) {
    this.m = m;
  }
  ack(): void {
    if (this.settled) return;
    this.settled = true;
    this.m.ack();
  }
  nak(delayMs: number): void {
    if (this.settled) return;
    this.settled = true;
    this.m.nak(delayMs);
  }
  working(): void {
    if (!this.settled) this.m.working();
  }
}

export class StudyIngest {
  private readonly o: Required<
    Pick<
      StudyIngestOptions,
      | "consumer"
      | "stream"
      | "maxAckPending"
      | "maxDeliver"
      | "ackWaitMs"
      | "retryBaseMs"
      | "retryMaxMs"
      | "concurrency"
      | "lagIntervalMs"
      | "processedBucket"
      | "routeBudgetMs"
      | "processTimeoutMs"
    >
  > &
    StudyIngestOptions;
  private readonly api: k8s.CustomObjectsApi;
  private readonly audit: AuditSink;
  private nc?: NatsConnection;
  private js?: JetStreamClient;
  private processed?: ProcessedTasks;
  private messages?: ConsumerMessages;
  private consumer?: Consumer;
  private stopping = false;
  /** Events waiting for this consumer when it was (re)opened: routed before any is taken. */
  private backlog = 0;
  private loop?: Promise<void>;
  private lagTimer?: NodeJS.Timeout;

  constructor(opts: StudyIngestOptions) {
    if (!opts.nc && !opts.nats) throw new Error("StudyIngest: give either nc or nats settings");
    this.o = {
      ...opts,
      consumer: opts.consumer ?? "radflow-ingest",
      stream: opts.stream ?? STREAM.studies,
      maxAckPending: opts.maxAckPending ?? 4096,
      maxDeliver: opts.maxDeliver ?? 10,
      ackWaitMs: opts.ackWaitMs ?? 30_000,
      retryBaseMs: opts.retryBaseMs ?? 1_000,
      retryMaxMs: opts.retryMaxMs ?? 60_000,
      concurrency: opts.concurrency ?? 16,
      lagIntervalMs: opts.lagIntervalMs ?? 5_000,
      processedBucket: opts.processedBucket ?? PROCESSED_BUCKET,
      routeBudgetMs: opts.routeBudgetMs ?? 2_000,
      processTimeoutMs: opts.processTimeoutMs ?? 120_000,
    };
    this.api = opts.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.audit = opts.audit ?? noAudit;
  }

  /**
   * Connects, ensures the streams and the durable consumer, and starts consuming. Rejects if
   * that first setup fails (e.g. a stream's subjects clash with another stream); afterwards a
   * lost consumer or stream is re-created with backoff until stop().
   */
  async start(): Promise<void> {
    if (this.loop) return;
    this.stopping = false;
    this.nc = this.o.nc ?? (await connectNats(this.o.nats as NatsSettings));
    this.js = jetstream(this.nc);
    const first = await this.subscribe();
    this.loop = this.runForever(first);
    this.lagTimer = setInterval(() => void this.exportLag(), this.o.lagIntervalMs);
    this.lagTimer.unref();
    log.info({ stream: this.o.stream, consumer: this.o.consumer }, "study ingest started");
  }

  /** Stops pulling, finishes the messages in hand, and closes the connection if it opened it. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.lagTimer);
    await this.messages?.close();
    await this.loop;
    this.loop = undefined;
    if (!this.o.nc && this.nc && !this.nc.isClosed()) await this.nc.drain();
    log.info({ consumer: this.o.consumer }, "study ingest stopped");
  }

  /** Ensures streams and consumer and opens a consume() iterator on it. */
  private async subscribe(): Promise<ConsumerMessages> {
    const nc = this.nc as NatsConnection;
    const jsm = await jetstreamManager(nc);
    if (this.o.streams !== false) {
      await ensureStreams(jsm, this.o.streams ?? {});
      await ensureProcessedBucket(jsm, this.o.streams ?? {}, this.o.processedBucket);
    }
    this.processed = new ProcessedTasks(this.js as JetStreamClient, jsm, this.o.processedBucket);
    await this.ensureConsumer(jsm);
    this.consumer = await (this.js as JetStreamClient).consumers.get(this.o.stream, this.o.consumer);
    const info = await this.consumer.info();
    this.backlog = Math.min(this.o.maxAckPending, info.num_pending + info.num_ack_pending);
    // the client pulls again as messages arrive (not as they are acked), so the window fills up
    // to max_ack_pending whatever the batch size; 256 keeps each pull request moderate
    const messages = await this.consumer.consume({ max_messages: Math.min(this.o.maxAckPending, 256) });
    this.messages = messages;
    void this.watch(messages);
    return messages;
  }

  // consume() rides out disconnects by itself; a consumer or stream that is gone (deleted, or
  // JetStream lost its state) ends the iterator here so that runForever creates it again.
  private async watch(messages: ConsumerMessages): Promise<void> {
    for await (const st of messages.status()) {
      if (st.type === "consumer_not_found" || st.type === "consumer_deleted" || st.type === "stream_not_found") {
        log.warn({ consumer: this.o.consumer, stream: this.o.stream, status: st.type }, "JetStream consumer lost");
        await messages.close();
        return;
      }
    }
  }

  private async runForever(first: ConsumerMessages): Promise<void> {
    let messages: ConsumerMessages | undefined = first;
    let attempt = 0;
    while (!this.stopping) {
      try {
        messages ??= await this.subscribe();
        if (this.stopping) {
          await messages.close(); // stop() came while subscribing
          break;
        }
        attempt = 0;
        await this.run(messages);
      } catch (e) {
        log.error({ err: (e as Error).message, consumer: this.o.consumer }, "study consumer failed");
      }
      messages = undefined;
      // a closed connection never comes back (the client reconnects by itself while it is open)
      if (this.stopping || this.nc?.isClosed()) break;
      await new Promise((r) => setTimeout(r, reconnectDelay(attempt++)));
    }
  }

  private async ensureConsumer(jsm: JetStreamManager): Promise<void> {
    const cfg: Partial<ConsumerConfig> = {
      durable_name: this.o.consumer,
      description: "radflow: study events to InferenceTasks",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: this.o.deliverPolicy === "new" ? DeliverPolicy.New : DeliverPolicy.All,
      ack_wait: nanos(this.o.ackWaitMs),
      // the DLQ takes a message on its last delivery; +1 covers a crash during that one
      max_deliver: this.o.maxDeliver + 1,
      max_ack_pending: this.o.maxAckPending,
      ...(this.o.subjects?.length ? { filter_subjects: this.o.subjects } : {}),
    };
    try {
      const info = await jsm.consumers.info(this.o.stream, this.o.consumer);
      const c = info.config;
      const same =
        c.ack_wait === cfg.ack_wait &&
        c.max_deliver === cfg.max_deliver &&
        c.max_ack_pending === cfg.max_ack_pending &&
        (c.filter_subjects ?? (c.filter_subject ? [c.filter_subject] : [])).join(" ") ===
          (cfg.filter_subjects ?? []).join(" ");
      if (!same) {
        const { durable_name: _d, ack_policy: _a, deliver_policy: _p, ...updatable } = cfg;
        await jsm.consumers.update(this.o.stream, this.o.consumer, updatable);
      }
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound)) throw e;
      await jsm.consumers.add(this.o.stream, cfg);
    }
  }

  /**
   * Reads every delivered message into the window at once (routing it), while `concurrency`
   * workers take from the window most urgent first. Held messages are kept alive until answered.
   */
  private async run(messages: ConsumerMessages): Promise<void> {
    const window = new PriorityWindow<Held>(LANES);
    const held = new Set<Held>();
    const keepAlive = setInterval(
      () => {
        for (const h of held) h.reply.working();
      },
      Math.max(1_000, this.o.ackWaitMs / 3),
    );
    // behind a backlog, the workers wait until it is routed (bounded: 100 ms idle, 3 s at most)
    const gate = new StartGate(this.backlog, 100, 3_000);
    if (this.backlog > 0) {
      const t0 = performance.now();
      void gate.opened.then(() =>
        log.info(
          { backlog: this.backlog, held: window.size, ms: Math.round(performance.now() - t0) },
          "backlog routed",
        ),
      );
    }
    const worker = async () => {
      await gate.opened;
      for (let h = await window.take(); h; h = await window.take()) {
        await this.handle(h);
        held.delete(h);
      }
    };
    const workers = Array.from({ length: this.o.concurrency }, worker);
    try {
      let n = 0;
      for await (const m of messages) {
        const h = this.hold(m);
        held.add(h);
        window.push(h, laneOf(h.prepared));
        gate.arrived();
        // a burst of thousands is routed in slices: the workers and the rest of the operator run between
        if (++n % 64 === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      // the iterator ended (stop(), or the consumer is gone): what no worker took goes back to
      // JetStream at once for whoever consumes next; what the workers hold they finish
      gate.release();
      for (const h of window.drain()) {
        h.reply.nak(0);
        held.delete(h);
      }
      window.close();
      await Promise.all(workers);
      clearInterval(keepAlive);
    }
  }

  /** Parses and routes a message as it arrives: both are pure, and what they say sets its lane. */
  private hold(m: JsMsg): Held {
    const deliveries = m.info.deliveryCount;
    const h = (prepared: Prepared): Held => ({ m, reply: new Reply(m), deliveries, prepared });
    // every delivery we try has been used: the last one crashed or stalled the process
    if (deliveries > this.o.maxDeliver) return h({ kind: "exhausted" });
    const parsed = toStudyEvent(m.data, m.time.toISOString(), {
      maxBytes: this.o.maxEventBytes,
      maxDepth: this.o.maxEventDepth,
    });
    if (!parsed.ok) return h({ kind: "invalid", reason: parsed.reason, detail: parsed.detail });
    try {
      const routed = route(parsed.event, this.o.workflows.list(), { budgetMs: this.o.routeBudgetMs });
      return h({ kind: "routed", event: parsed.event, routed });
    } catch (error) {
      return h({ kind: "routing-failed", event: parsed.event, error });
    }
  }

  private async exportLag(): Promise<void> {
    try {
      if (!this.consumer) return;
      const ci = await this.consumer.info();
      natsPending.set({ consumer: this.o.consumer }, ci.num_pending);
      natsAckPending.set({ consumer: this.o.consumer }, ci.num_ack_pending);
    } catch (e) {
      log.debug({ err: (e as Error).message }, "cannot read consumer info");
    }
  }

  /** Never rejects: every path acks or naks. (The window keeps the message alive meanwhile.) */
  private async handle(h: Held): Promise<void> {
    const { m, reply, deliveries } = h;
    if (deliveries > 1) natsRedeliveries.inc({ consumer: this.o.consumer });
    let timer: NodeJS.Timeout | undefined;
    let outcome: Outcome;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ProcessingTimeout(this.o.processTimeoutMs)), this.o.processTimeoutMs);
      });
      outcome = await Promise.race([this.process(h), timeout]);
    } catch (e) {
      outcome = await this.failed(m, reply, deliveries, e);
    } finally {
      clearTimeout(timer);
    }
    studyEvents.inc({ outcome });
  }

  /** A delivery that threw or timed out: retried later, or on the last delivery dead-lettered. */
  private async failed(m: JsMsg, reply: Reply, deliveries: number, e: unknown): Promise<Outcome> {
    const why = safeError(e);
    if (deliveries >= this.o.maxDeliver) {
      const reason =
        e instanceof ProcessingTimeout
          ? "processing-timeout"
          : e instanceof CreateError
            ? "retries-exhausted"
            : "processing-failed";
      try {
        await this.reject(m, reason, `gave up after ${deliveries} deliveries: ${why}`);
        reply.ack();
        return "invalid";
      } catch (e2) {
        // NATS itself is failing: the message comes back once more (max_deliver has room for it)
        log.error({ err: safeError(e2), deliveries }, "cannot dead-letter a study event; it will be redelivered");
      }
    }
    const delay = this.retryDelay(deliveries);
    log.warn({ err: why, deliveries, retryInMs: delay }, "study event not processed; will retry");
    reply.nak(delay);
    return "retried";
  }

  private retryDelay(deliveries: number): number {
    return Math.min(this.o.retryMaxMs, this.o.retryBaseMs * 2 ** Math.max(0, deliveries - 1));
  }

  private async process(h: Held): Promise<Outcome> {
    const { m, reply, deliveries, prepared } = h;
    if (prepared.kind === "exhausted") {
      await this.reject(
        m,
        "retries-exhausted",
        `delivered ${deliveries} times without finishing (the operator crashed, stalled or timed out processing it)`,
      );
      reply.ack();
      return "invalid";
    }
    if (prepared.kind === "invalid") {
      await this.reject(m, prepared.reason, prepared.detail);
      reply.ack();
      return "invalid";
    }
    const event = prepared.event;
    if (prepared.kind === "routing-failed") {
      // routing is pure: what threw once throws again, so no retry
      await this.reject(m, "routing-failed", `routing threw ${safeError(prepared.error)}`, event);
      reply.ack();
      return "invalid";
    }
    const key = eventKey(event);
    const ref = studyRef(event.study.studyInstanceUID);
    const { tasks, errors } = prepared.routed;
    for (const e of errors) {
      log.warn(
        { namespace: e.namespace, workflow: e.workflow, field: e.field, studyRef: ref, err: e.error },
        "trigger not evaluable",
      );
    }
    if (tasks.length === 0 && errors.length === 0) {
      await this.audit.record(this.fact(event, "StudyUnmatched", "received-unmatched"));
      log.debug({ studyRef: ref, eventKey: key }, "study matched no workflow");
      reply.ack();
      return "unmatched";
    }

    const processed = this.processed as ProcessedTasks;
    const keys = tasks.map((t) => ProcessedTasks.key(t.metadata.namespace ?? "", t.metadata.name ?? ""));
    const results = await Promise.allSettled(
      tasks.map(async (t, i) => ((await processed.has(keys[i] as string)) ? "made-before" : this.createTask(t))),
    );
    const transient = results.filter((r) => r.status === "rejected" && !(r.reason as CreateError).permanent);
    if (transient.length) throw (transient[0] as PromiseRejectedResult).reason;
    if (errors.length === 0 && results.every((r) => r.status === "fulfilled" && r.value === "made-before")) {
      log.debug(
        { studyRef: ref, eventKey: key, tasks: tasks.length },
        "study event replayed; its tasks were made before",
      );
      reply.ack();
      return "duplicate";
    }

    let created = 0;
    for (const [i, r] of results.entries()) {
      const t = tasks[i] as InferenceTask;
      if (r.status === "rejected") continue;
      if (r.value === "made-before") {
        // made by an earlier delivery and perhaps long gone (TTL): a replay, not a new study
        log.debug(
          { namespace: t.metadata.namespace, task: t.metadata.name, studyRef: ref },
          "task made before; skipped",
        );
        continue;
      }
      if (r.value === "created") {
        created++;
        tasksCreated.inc({ workflow: t.spec.workflowRef.name, priority: t.spec.priority });
        log.info(
          { namespace: t.metadata.namespace, task: t.metadata.name, workflow: t.spec.workflowRef.name, studyRef: ref },
          "InferenceTask created",
        );
      }
      // also for "exists": the audit sink de-duplicates by id, and the earlier delivery may have
      // crashed between creating the task and auditing it
      await this.audit.record({
        ...this.fact(event, "TaskCreated", `task:${t.metadata.namespace}/${t.metadata.name}`),
        namespace: t.metadata.namespace,
        workflow: t.spec.workflowRef.name,
        task: t.metadata.name,
      });
    }
    const permanent = results.filter((r) => r.status === "rejected");
    // the API server refuses these tasks whatever we do, these rules could not be evaluated; the
    // other tasks exist. One DLQ record says what is missing (never a CEL message: it may quote
    // study values), so that the event can be replayed once the workflow is fixed.
    const missing = [
      ...permanent.map((r) => ((r as PromiseRejectedResult).reason as Error).message),
      ...errors.map((e) => `${e.namespace}/${e.workflow}: ${e.field} could not be evaluated`),
    ];
    if (missing.length) {
      const shown = missing.slice(0, 20).join("; ");
      const more = missing.length > 20 ? `; … ${missing.length - 20} more` : "";
      await this.reject(m, permanent.length ? "task-rejected" : "trigger-error", shown + more, event);
    }
    await this.audit.record(this.fact(event, "StudyReceived", "received"));
    // every task that exists now is recorded before the ack (a crash before it: the redelivery
    // finds the task by name and records it then)
    const at = new Date().toISOString();
    await Promise.all(
      results.map((r, i) =>
        r.status === "fulfilled" && r.value !== "made-before"
          ? processed.record(keys[i] as string, { event: key, at })
          : undefined,
      ),
    );
    reply.ack();
    if (results.length === permanent.length) return "invalid";
    return created === 0 ? "duplicate" : "matched";
  }

  /** Creates the task; resolves "created" or "exists", rejects with a CreateError. */
  private async createTask(t: InferenceTask): Promise<"created" | "exists"> {
    const where = `InferenceTask ${t.metadata.namespace}/${t.metadata.name} (workflow ${t.spec.workflowRef.name})`;
    try {
      await this.api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: t.metadata.namespace ?? "",
        plural: "inferencetasks",
        body: t,
      });
      return "created";
    } catch (e) {
      const code = e instanceof k8s.ApiException ? e.code : undefined;
      if (code === 409) return "exists";
      // 400/422: the object is invalid and stays invalid. The API server's message can quote
      // field values (PHI), so only the code goes into the reason.
      if (code === 400 || code === 422)
        throw new CreateError(`${where}: rejected by the API server (HTTP ${code})`, true);
      throw new CreateError(`${where}: ${code ? `HTTP ${code}` : (e as Error).message}`, false);
    }
  }

  /**
   * Writes one DLQ record for the message (idempotent per stream sequence) and audits it. On the
   * last delivery the audit is best effort: the record in the DLQ matters more than its audit
   * fact, which must not send the message round again.
   */
  private async reject(m: JsMsg, reason: string, detail: string, event?: StudyEvent): Promise<void> {
    const js = this.js as JetStreamClient;
    // the record must fit in one NATS message: a payload near the limit is left in its stream
    const maxPayload = this.nc?.info?.max_payload ?? 1024 * 1024;
    const copy = Math.ceil(m.data.length / 3) * 4 + 4096 <= maxPayload;
    if (!copy)
      detail += ` (payload of ${m.data.length} bytes not copied: it stays in ${m.info.stream} at sequence ${m.seq})`;
    const record: DeadLetter = {
      reason,
      detail,
      subject: m.subject,
      stream: m.info.stream,
      streamSequence: m.seq,
      deliveries: m.info.deliveryCount,
      receivedAt: m.time.toISOString(),
      rejectedAt: new Date().toISOString(),
      payload: copy ? Buffer.from(m.data).toString("base64") : "",
    };
    const h = headers();
    h.set("Radflow-Reason", reason);
    const ack = await js.publish(SUBJECT.dlqStudy, JSON.stringify(record), {
      msgID: `dlq-${m.info.stream}-${m.seq}`,
      headers: h,
      expect: { streamName: STREAM.dlq },
    });
    if (!ack.duplicate) dlqRecords.inc({ reason });
    log.warn({ reason, detail, subject: m.subject, streamSequence: m.seq }, "study event sent to the DLQ");
    const audited = this.audit.record({
      id: stableId(`${m.info.stream}/${m.seq}`, "rejected", reason),
      kind: "StudyRejected",
      time: new Date().toISOString(),
      outcome: "minorFailure",
      reason,
      description: detail,
      ...(event ? { study: auditStudy(event.study) } : {}),
    });
    if (m.info.deliveryCount < this.o.maxDeliver) return audited;
    await audited.catch((e) => log.error({ err: safeError(e), reason }, "audit of a dead-lettered study event failed"));
  }

  private fact(event: StudyEvent, kind: AuditFact["kind"], key: string): AuditFact {
    return {
      id: stableId(eventKey(event), kind, key),
      kind,
      time: new Date().toISOString(),
      outcome: "success",
      study: auditStudy(event.study),
      // the transfer's Source participant when no calling AE title names the sender
      sender: event.source,
    };
  }
}

function auditStudy(s: Study): NonNullable<AuditFact["study"]> {
  const counts = new Map<string, number>();
  for (const x of s.series)
    if (x.sopClassUID) counts.set(x.sopClassUID, (counts.get(x.sopClassUID) ?? 0) + x.numberOfInstances);
  return {
    studyInstanceUID: s.studyInstanceUID,
    ...(s.accessionNumber ? { accessionNumber: s.accessionNumber } : {}),
    // the Patient participant (PS3.15 A.5.3.4) where the gateway sent the patient ID
    ...(patientIdOf(s.series) ? { patientId: patientIdOf(s.series) } : {}),
    ...(s.callingAETitle ? { callingAETitle: s.callingAETitle } : {}),
    ...(s.calledAETitle ? { calledAETitle: s.calledAETitle } : {}),
    ...(counts.size
      ? {
          sopClassUIDs: [...counts.keys()],
          sopClasses: [...counts].map(([uid, instances]) => ({ uid, instances })),
        }
      : {}),
  };
}
