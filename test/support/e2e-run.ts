// One end-to-end test file's share of the shared test cluster and study stream: a namespace, a run
// id, a study subject and a UID root of its own (events of other files never match its workflows),
// a NATS connection, and the `radflow operator` processes it starts. Its teardown kills those
// operators, releases the namespace's tasks, and leaves nothing of the run on the shared streams.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { PubAck } from "@nats-io/jetstream";
import { afterAll, beforeAll, onTestFailed } from "vitest";
import { STREAM } from "../../src/ingest/streams.ts";
import { useNamespace, waitFor } from "../integration/helpers.ts";
import { type OperatorOptions, type OperatorProcess, startOperator } from "../integration/operator-process.ts";
import {
  createWorkflow,
  lastSeq,
  listTasks,
  type Nats,
  natsConnect,
  numericRunId,
  publishRetry,
  readStream,
  releaseTasks,
  type StepSpec,
  tail,
  waitTasksFinished,
} from "./e2e.ts";

export interface E2ERunOptions {
  /** the connection (default: the test cluster's nats-server) */
  connect?: () => Promise<Nats>;
  /** the file's own cleanup, once its operators are gone and before the connection is drained */
  cleanup?: (nats: Nats | undefined) => Promise<void>;
  /** last of all, after the connection is drained (a NATS cluster of the file's own goes down here) */
  shutdown?: () => Promise<void>;
}

export class E2ERun {
  readonly name: string;
  readonly ns: { name: string };
  /** digits (it goes into DICOM UIDs) */
  readonly id = numericRunId();
  /** the study subject only this run publishes on; purged at the end */
  readonly subject: string;
  readonly uidRoot: string;
  readonly operators: OperatorProcess[] = [];
  #nats: Nats | undefined;

  constructor(name: string) {
    this.name = name;
    this.ns = useNamespace(name);
    this.subject = `radflow.study.${name}.${this.id}`;
    this.uidRoot = `1.2.826.0.1.3680043.8.498.${this.id}`;
  }

  get nats(): Nats {
    if (!this.#nats) throw new Error(`${this.name}: no NATS connection (before beforeAll?)`);
    return this.#nats;
  }

  /** Registers the run's beforeAll (connect) and afterAll (teardown). */
  hooks(o: E2ERunOptions): this {
    beforeAll(async () => {
      this.#nats = await (o.connect ?? (() => natsConnect(this.name)))();
    });
    afterAll(async () => {
      await Promise.all(this.operators.map((op) => op.kill().catch(() => undefined)));
      await releaseTasks(this.ns.name);
      const nats = this.#nats;
      await o.cleanup?.(nats);
      if (nats) {
        await nats.jsm.consumers.delete(STREAM.studies, `op-${this.ns.name}`).catch(() => undefined);
        await nats.jsm.streams.purge(STREAM.studies, { filter: this.subject }).catch(() => undefined);
        await nats.nc.drain().catch(() => undefined);
      }
      await o.shutdown?.();
    });
    return this;
  }

  /** `radflow operator` on this namespace and NATS, leader election off; killed at the end. */
  startOperator(o: Omit<OperatorOptions, "namespace" | "nats"> & { metricsPort?: number } = {}): OperatorProcess {
    const metrics = o.metricsPort === undefined ? [] : ["--metrics-port", String(o.metricsPort)];
    const op = startOperator({
      ...o,
      namespace: this.ns.name,
      nats: true,
      args: ["--leader-elect=false", ...metrics, ...(o.args ?? [])],
    });
    this.operators.push(op);
    return op;
  }

  /**
   * On failure: the full logs of every operator started from now on into a file (with `more`,
   * e.g. its metrics, when given), and their last lines into the report.
   */
  logsOnFailure(more?: (op: OperatorProcess) => Promise<string>): void {
    const from = this.operators.length;
    onTestFailed(async () => {
      for (const op of this.operators.slice(from)) {
        const file = path.join(tmpdir(), `radflow-${this.name}-${op.identity}.log`);
        writeFileSync(file, more ? `${op.logs()}\n${await more(op)}` : op.logs());
        console.error(`--- operator ${op.identity} (full logs in ${file}) ---\n${tail(op.logs(), 3000)}`);
      }
    });
  }

  /** Publishes a study event on this run's subject (retrying through a restarting server). */
  publish(ev: { id: string }, msgID = ev.id, timeoutMs?: number): Promise<PubAck> {
    return publishRetry(this.nats.js, this.subject, JSON.stringify(ev), msgID, timeoutMs);
  }

  createWorkflow(name: string, calledAE: string, steps: StepSpec[], spec?: Record<string, unknown>) {
    return createWorkflow(this.ns.name, name, calledAE, steps, spec);
  }

  /** The namespace's tasks (of one workflow). */
  tasks(workflow?: string) {
    return listTasks(this.ns.name, workflow);
  }

  tasksFinished(workflow: string, n: number, timeoutMs: number) {
    return waitTasksFinished(this.ns.name, workflow, n, timeoutMs);
  }

  lastSeq(stream: string) {
    return lastSeq(this.nats.jsm, stream);
  }

  /** What `stream` stored on `subjects` after `afterSeq` (see readStream). */
  read(stream: string, subjects: string[], afterSeq: number) {
    return readStream(this.nats.js, this.nats.jsm, stream, subjects, afterSeq);
  }
}

/** The run of the calling test file, its hooks registered (call at the top of the file). */
export function useE2ERun(name: string, o: E2ERunOptions = {}): E2ERun {
  return new E2ERun(name).hooks(o);
}

/** Resolves once the operator consumes studies (its caches synced and ingest started). */
export async function ingesting(op: OperatorProcess, timeoutMs = 60_000): Promise<void> {
  await waitFor(`operator ${op.identity} to start study ingest`, timeoutMs, async () => ({
    done: /study ingest started/.test(op.logs()),
    seen: op.proc.exitCode === null ? "running" : `exited ${op.proc.exitCode}:\n${tail(op.logs(), 2000)}`,
  }));
}
