// Study events as a gateway sends them (CloudEvents io.radflow.study.received on
// radflow.study.received, Nats-Msg-Id = event id), and publishers: open-loop at a fixed rate,
// or as fast as JetStream takes them.
import { performance } from "node:perf_hooks";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, nanos } from "@nats-io/transport-node";
import { STUDY_RECEIVED, SUBJECT } from "../../src/api/v1alpha1/events.ts";
import { ensureStreams, STREAM } from "../../src/ingest/streams.ts";
import { sleep } from "./operator.ts";

export interface StudyShape {
  bodyPart: string; // routes the study: each benchmark workflow matches one body part
  modality?: string;
}

const RUN = String(Date.now());
let seq = 0;

/** The CloudEvents `source` of every benchmark study: with `id`, the event's identity. */
export const SOURCE = "/bench/gateway";

/** A study event; ids are unique per benchmark run. */
export function studyEvent(idPrefix: string, shape: StudyShape): { id: string; source: string; body: string } {
  const n = ++seq;
  const id = `${idPrefix}-${n}`;
  const uid = `1.2.826.0.1.3680043.8.498.${RUN}.${n}`;
  const modality = shape.modality ?? "CT";
  const series = [1, 2, 3].map((k) => ({
    seriesInstanceUID: `${uid}.${k}`,
    modality,
    bodyPartExamined: shape.bodyPart,
    seriesDescription: k === 1 ? "AX 5mm" : k === 2 ? "COR 2mm" : "localizer",
    sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
    numberOfInstances: k === 3 ? 3 : 180,
  }));
  const event = {
    specversion: "1.0",
    id,
    source: SOURCE,
    type: STUDY_RECEIVED,
    time: new Date().toISOString(),
    datacontenttype: "application/json",
    data: {
      studyInstanceUID: uid,
      accessionNumber: `B${n}`,
      callingAETitle: "BENCH-CT",
      calledAETitle: "RADFLOW-GW",
      location: `studies/${n}`,
      series,
    },
  };
  return { id, source: SOURCE, body: JSON.stringify(event) };
}

export class Publisher {
  nc!: NatsConnection;
  js!: JetStreamClient;
  jsm!: JetStreamManager;
  errors = 0;

  async connect(url: string): Promise<void> {
    this.nc = await connect({ servers: url, name: "radflow-bench" });
    this.js = jetstream(this.nc);
    this.jsm = await jetstreamManager(this.nc);
  }

  /**
   * The operator's durable consumer, created here first with deliver policy "new" and the
   * operator's own settings (which it then keeps): study events of earlier runs left in the
   * stream are not replayed into this one.
   */
  async prepareConsumer(name: string): Promise<void> {
    await ensureStreams(this.jsm);
    await this.jsm.consumers.delete(STREAM.studies, name).catch(() => undefined);
    await this.jsm.consumers.add(STREAM.studies, {
      durable_name: name,
      description: "radflow: study events to InferenceTasks",
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      ack_wait: nanos(30_000),
      max_deliver: 11,
      max_ack_pending: 4096, // the operator's default: its STAT-first window is this wide
    });
  }

  async deleteConsumer(name: string): Promise<void> {
    await this.jsm.consumers.delete(STREAM.studies, name).catch(() => undefined);
  }

  /** Messages the consumer has not delivered yet, and delivered but not acked. */
  async consumerLag(name: string): Promise<{ pending: number; ackPending: number }> {
    const ci = await this.jsm.consumers.info(STREAM.studies, name);
    return { pending: ci.num_pending, ackPending: ci.num_ack_pending };
  }

  private send(e: { id: string; body: string }): Promise<void> {
    return this.js.publish(SUBJECT.studyReceived, e.body, { msgID: e.id }).then(
      () => undefined,
      () => {
        this.errors += 1;
      },
    );
  }

  /**
   * Open loop: event i is published at start + i/rate whatever the operator does. Returns the
   * publish time of each event (performance.now()) and how late the publisher itself ran.
   */
  async openLoop(
    events: { id: string; body: string }[],
    rate: number,
  ): Promise<{ sentAt: number[]; maxLagMs: number }> {
    const sentAt: number[] = [];
    const acks: Promise<void>[] = [];
    const interval = 1000 / rate;
    const start = performance.now();
    let maxLagMs = 0;
    let i = 0;
    while (i < events.length) {
      const now = performance.now();
      while (i < events.length && start + i * interval <= now) {
        maxLagMs = Math.max(maxLagMs, now - (start + i * interval));
        sentAt[i] = performance.now();
        acks.push(this.send(events[i] as { id: string; body: string }));
        i++;
      }
      if (i < events.length) await sleep(Math.max(0, start + i * interval - performance.now()));
    }
    await Promise.all(acks);
    return { sentAt, maxLagMs };
  }

  /** As fast as JetStream acknowledges, at most `inflight` unacknowledged. */
  async burst(events: { id: string; body: string }[], inflight = 512): Promise<{ sentAt: number[] }> {
    const sentAt: number[] = [];
    const pending = new Set<Promise<void>>();
    for (const [i, e] of events.entries()) {
      sentAt[i] = performance.now();
      const p: Promise<void> = this.send(e).finally(() => pending.delete(p));
      pending.add(p);
      if (pending.size >= inflight) await Promise.race(pending);
    }
    await Promise.all(pending);
    return { sentAt };
  }

  async close(): Promise<void> {
    await this.nc?.drain();
  }
}
