// The task audit controller: records the audit facts of InferenceTasks (src/audit/task-facts.ts)
// from what their status says, off the path that creates Jobs. The steps controller writes
// status and moves on; this one records the facts that status implies, one task at a time and in
// lifecycle order. While the audit sink is down (NATS restarting, a full spool) its reconciles
// fail and back off; Jobs keep being created, and when the sink is back every fact still pending
// is recorded — nothing is lost while the process lives, and what status records durably is
// derived again after a restart.
//
// A task whose results are published (status.resultsPublished) has had every fact recorded: the
// results controller records them before it publishes (StepFinished and TaskSucceeded come before
// ResultsPublished), so such a task is left alone — also after a restart, which therefore does
// not repeat the facts of thousands of finished tasks.
import type { InferenceTask } from "../api/v1alpha1/index.ts";
import type { AuditFact, AuditSink } from "../audit/facts.ts";
import { lifecycleRank, taskDeletedFact, taskFact, taskFacts } from "../audit/task-facts.ts";
import type { Result } from "../kube/controller.ts";
import { keyOf } from "../kube/informer.ts";
import { isTerminal, type PlannedAudit } from "./task-plan.ts";

interface Ledger {
  uid: string;
  /** ids recorded (the sink acknowledged them) */
  recorded: Set<string>;
  /** facts observed and not yet recorded, by id */
  pending: Map<string, AuditFact>;
  /** the task is gone: forget the ledger once nothing is pending */
  gone: boolean;
}

export class TaskAuditor {
  private readonly sink: AuditSink;
  /** by task key, then by uid: a task deleted and made again under its name owes its own facts */
  private readonly ledgers = new Map<string, Map<string, Ledger>>();
  /** one flush per task at a time: two would record its facts out of order */
  private readonly busy = new Map<string, Promise<void>>();

  constructor(sink: AuditSink) {
    this.sink = sink;
  }

  /**
   * An informer saw this version of the task (add or update): note the facts it implies. Pure
   * bookkeeping, no I/O (handlers must not wait). Returns whether anything is left to record.
   */
  observe(task: InferenceTask): boolean {
    const key = keyOf(task);
    const uid = task.metadata.uid ?? "";
    // published results: every fact of the task was recorded before the stamp (and the cache may
    // keep such a task without its study and steps: src/kube/cached-shapes.ts)
    if (task.status?.resultsPublished) {
      const settled = this.ledgers.get(key)?.get(uid);
      if (settled) settled.gone = true;
      this.tidy(key);
      return this.owes(key);
    }
    const l = this.ledger(task);
    const facts = taskFacts(task);
    if (task.metadata.deletionTimestamp && !isTerminal(task.status?.phase)) facts.push(taskDeletedFact(task));
    for (const f of facts) if (!l.recorded.has(f.id) && !l.pending.has(f.id)) l.pending.set(f.id, f);
    this.tidy(key);
    return this.owes(key);
  }

  /**
   * The steps controller planned these facts and wrote the status they follow from: note them
   * (transitions a later status no longer shows, such as a GPU wait, are kept this way).
   */
  planned(task: InferenceTask, audits: readonly PlannedAudit[], time: string): void {
    const l = this.ledger(task);
    for (const a of audits) {
      const f = taskFact(task, a.kind, a.outcome, time, {
        ...(a.step !== undefined ? { step: a.step } : {}),
        ...(a.reason !== undefined ? { reason: a.reason } : {}),
        ...(a.description !== undefined ? { description: a.description } : {}),
      });
      if (!l.recorded.has(f.id) && !l.pending.has(f.id)) l.pending.set(f.id, f);
    }
  }

  /** The task was deleted: its ledger goes once what it owes is recorded. */
  forget(task: InferenceTask): void {
    const l = this.ledgers.get(keyOf(task))?.get(task.metadata.uid ?? "");
    if (!l) return;
    l.gone = true;
    this.tidy(keyOf(task));
  }

  /** Whether the task under this key has facts waiting for the sink. */
  owes(key: string): boolean {
    for (const l of this.ledgers.get(key)?.values() ?? []) if (l.pending.size) return true;
    return false;
  }

  /** How many facts are waiting for the sink (all tasks). */
  get pendingCount(): number {
    let n = 0;
    for (const byUid of this.ledgers.values()) for (const l of byUid.values()) n += l.pending.size;
    return n;
  }

  /**
   * Records the task's pending facts in lifecycle order; with `task`, its current facts too (the
   * results controller passes the finished task it is about to publish). Rejects on the first
   * fact the sink refuses; what was recorded stays recorded.
   */
  async flush(key: string, task?: InferenceTask): Promise<void> {
    const prior = this.busy.get(key);
    const run = (async () => {
      await prior?.catch(() => undefined);
      if (task) this.observe(task);
      for (const l of [...(this.ledgers.get(key)?.values() ?? [])]) {
        const owed = [...l.pending.values()].sort((a, b) => lifecycleRank(a) - lifecycleRank(b));
        for (const f of owed) {
          await this.sink.record(f);
          l.recorded.add(f.id);
          l.pending.delete(f.id);
        }
      }
      this.tidy(key);
    })();
    this.busy.set(key, run);
    try {
      await run;
    } finally {
      if (this.busy.get(key) === run) this.busy.delete(key);
    }
  }

  /** Records what every task owes (a graceful stop), giving up after `timeoutMs`. */
  async flushAll(timeoutMs: number): Promise<void> {
    const keys = [...this.ledgers.keys()].filter((k) => this.owes(k));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.pendingCount} audit fact(s) still owed after ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all(keys.map((k) => this.flush(k))), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The controller's reconcile: record what the task owes; the queue retries with backoff. */
  async reconcile(key: string): Promise<Result> {
    await this.flush(key);
    return {};
  }

  private ledger(task: InferenceTask): Ledger {
    const key = keyOf(task);
    const uid = task.metadata.uid ?? "";
    let byUid = this.ledgers.get(key);
    if (!byUid) {
      byUid = new Map();
      this.ledgers.set(key, byUid);
    }
    let l = byUid.get(uid);
    if (!l) {
      l = { uid, recorded: new Set(), pending: new Map(), gone: false };
      byUid.set(uid, l);
    }
    return l;
  }

  /** Drops ledgers of tasks that are gone (or stamped) and owe nothing. */
  private tidy(key: string): void {
    const byUid = this.ledgers.get(key);
    if (!byUid) return;
    for (const [uid, l] of byUid) if (l.gone && l.pending.size === 0) byUid.delete(uid);
    if (byUid.size === 0) this.ledgers.delete(key);
  }
}
