// Study assembly: instances are grouped per StudyInstanceUID until no new instance has come for
// the quiet window (or the maximum wait since the first pending one has passed); then one study
// event — io.radflow.study.received, the series summary built by src/dicom/summary.ts — goes to
// JetStream with a deterministic id, `<study key>-<revision>`. Instances arriving after that
// open the next revision: a follow-up event with the whole study, never a silent loss.
//
// Every state change is journaled first (journal.ts); memory only holds studies with work to do
// and, for a while, recently published ones.
import { STUDY_RECEIVED, type StudyReceivedEvent, SUBJECT } from "../api/v1alpha1/events.ts";
import type { Study } from "../api/v1alpha1/study.ts";
import { summarizeStudies } from "../dicom/summary.ts";
import { logger, studyRef } from "../log/logger.ts";
import { type InstanceRecord, type IntentRecord, type Journal, replay } from "./journal.ts";
import { assemblyWait, pendingStudies, publishErrors, publishLatency, studiesPublished } from "./metrics.ts";
import { studyLocation, uidKey } from "./storage.ts";

const log = logger("gateway");

export interface PublishAck {
  duplicate: boolean;
}
/** Publishes one event with a Nats-Msg-Id; rejects when JetStream did not acknowledge it. */
export type Publish = (subject: string, payload: string, msgID: string) => Promise<PublishAck>;

export interface AssemblerOptions {
  quietMs: number;
  maxWaitMs: number;
  /** How long a published study stays in memory for late instances (it is reloaded from its journal after). */
  retainMs?: number;
  /** CloudEvents `source`. */
  source?: string;
  subject?: string;
  now?: () => number;
}

interface StudyState {
  key: string;
  uid: string;
  instances: InstanceRecord[];
  /** SOP Instance UIDs in published (or being published) revisions. */
  announced: Set<string>;
  covered: number;
  nextRev: number;
  firstPendingAt?: number;
  lastAt: number;
  timer?: NodeJS.Timeout;
  /** After a failed journal write: not before this time (ms). */
  retryAt?: number;
  failures?: number;
  publishing?: Promise<void>;
  evict?: NodeJS.Timeout;
}

/** The deterministic event id of a study's revision (no UID: a hash). */
export function eventId(studyKey: string, rev: number): string {
  return `${studyKey}-${rev}`;
}

/** The study event of a revision: the first `n` instances of the study. Pure. */
export function buildEvent(
  instances: readonly InstanceRecord[],
  intent: IntentRecord,
  source: string,
): { id: string; event: StudyReceivedEvent } | { error: string } {
  const included = instances.slice(0, intent.n);
  const first = included[0];
  if (!first) return { error: "no instances" };
  const r = summarizeStudies(
    included.map((i) => i.header),
    {
      callingAETitle: first.callingAETitle,
      calledAETitle: first.calledAETitle,
      location: studyLocation(first.study),
    },
  )[0];
  if (!r?.ok) return { error: r ? r.error : "no study" };
  const id = eventId(uidKey("study", first.study), intent.rev);
  const event: StudyReceivedEvent & { radflowrevision: number } = {
    specversion: "1.0",
    id,
    source,
    type: STUDY_RECEIVED,
    time: new Date(intent.at).toISOString(),
    datacontenttype: "application/json",
    data: r.study as Study,
    // CloudEvents extension: 0 for the first event of a study, n for its n-th follow-up
    radflowrevision: intent.rev,
  };
  return { id, event };
}

export class Assembler {
  private readonly studies = new Map<string, StudyState>();
  private readonly now: () => number;
  private stopping = false;
  private readonly source: string;

  private readonly journal: Journal;
  private readonly publish: Publish;
  private readonly o: AssemblerOptions;

  constructor(journal: Journal, publish: Publish, o: AssemblerOptions) {
    this.journal = journal;
    this.publish = publish;
    this.o = o;
    this.now = o.now ?? Date.now;
    this.source = o.source ?? "/radflow/gateway";
  }

  /** Replays every journal: unfinished publications go out again, pending instances wait anew. */
  async recover(): Promise<{ studies: number; pending: number; republished: number }> {
    let pending = 0;
    let republished = 0;
    let studies = 0;
    for (const key of await this.journal.keys()) {
      const r = replay(await this.journal.read(key));
      const first = r.instances[0];
      if (!first) continue;
      studies++;
      if (!r.unfinished && r.covered >= r.instances.length) continue;
      const s = this.stateFrom(key, first.study, r.instances, r.covered, r.nextRev);
      if (r.unfinished) {
        republished++;
        await this.send(s, r.unfinished, "republished");
      }
      if (this.hasPending(s)) {
        pending++;
        s.firstPendingAt = this.now();
        s.lastAt = this.now();
        this.schedule(s);
      } else this.scheduleEviction(s);
    }
    this.updateGauge();
    return { studies, pending, republished };
  }

  private stateFrom(
    key: string,
    uid: string,
    instances: InstanceRecord[],
    covered: number,
    nextRev: number,
  ): StudyState {
    const s: StudyState = {
      key,
      uid,
      instances,
      announced: new Set(instances.slice(0, covered).map((i) => i.sop)),
      covered,
      nextRev,
      lastAt: instances.at(-1)?.at ?? this.now(),
    };
    this.studies.set(key, s);
    return s;
  }

  private async load(key: string, uid: string): Promise<StudyState> {
    const existing = this.studies.get(key);
    if (existing) return existing;
    const r = replay(await this.journal.read(key));
    // another add() may have loaded it while we read
    return this.studies.get(key) ?? this.stateFrom(key, uid, r.instances, r.covered, r.nextRev);
  }

  /** Records a stored instance durably; resolves when the sender may be told "success". */
  async add(rec: Omit<InstanceRecord, "t" | "at">): Promise<void> {
    const key = uidKey("study", rec.study);
    const s = await this.load(key, rec.study);
    const full: InstanceRecord = { t: "i", at: this.now(), ...rec };
    await this.journal.append(key, [full]);
    if (s.evict) {
      clearTimeout(s.evict);
      s.evict = undefined;
    }
    s.instances.push(full);
    s.lastAt = full.at;
    if (this.hasPending(s)) {
      s.firstPendingAt ??= full.at;
      this.schedule(s);
    }
    this.updateGauge();
  }

  private hasPending(s: StudyState): boolean {
    for (let i = s.covered; i < s.instances.length; i++) {
      if (!s.announced.has((s.instances[i] as InstanceRecord).sop)) return true;
    }
    return false;
  }

  /** When the study's event is due: the quiet window after the last instance, capped by the maximum wait. */
  dueAt(s: Pick<StudyState, "lastAt" | "firstPendingAt">): number {
    const quiet = s.lastAt + this.o.quietMs;
    return s.firstPendingAt === undefined ? quiet : Math.min(quiet, s.firstPendingAt + this.o.maxWaitMs);
  }

  private schedule(s: StudyState): void {
    if (this.stopping || s.publishing) return; // publishing reschedules when it is done
    if (s.timer) clearTimeout(s.timer);
    const due = Math.max(this.dueAt(s), s.retryAt ?? 0);
    s.timer = setTimeout(() => this.flush(s, due), Math.max(0, due - this.now()));
    s.timer.unref?.();
  }

  /**
   * Takes the study's shared journal as the truth: every replica on the volume appends to the
   * same file, so what this process holds in memory is only its own part. Returns the intent to
   * publish (already journaled), or undefined when nothing is left or another replica is still
   * receiving instances of the study (the window is moved to its last one).
   */
  private async claim(s: StudyState, final: boolean): Promise<IntentRecord | undefined> {
    const release = await this.journal.lock(s.key);
    try {
      const r = replay(await this.journal.read(s.key));
      s.instances = r.instances;
      s.covered = r.covered;
      s.nextRev = Math.max(s.nextRev, r.nextRev);
      s.announced = new Set(r.instances.slice(0, r.covered).map((i) => i.sop));
      if (!this.hasPending(s)) return undefined;
      const lastAt = r.instances.reduce((m, i) => Math.max(m, i.at), s.lastAt);
      if (!final && lastAt > s.lastAt) {
        s.lastAt = lastAt;
        if (this.dueAt(s) > this.now()) return undefined; // rescheduled by flush's end
      }
      // the revision follows the shared journal's last intent: two replicas never take the same one
      const intent: IntentRecord = { t: "p", rev: r.nextRev, n: r.instances.length, at: this.now() };
      await this.journal.append(s.key, [intent]);
      return intent;
    } finally {
      await release();
    }
  }

  private flush(s: StudyState, due: number, final = false): Promise<void> {
    s.timer = undefined;
    if (s.publishing || !this.hasPending(s)) return s.publishing ?? Promise.resolve();
    const started = s.firstPendingAt;
    s.publishing = (async () => {
      const intent = await this.claim(s, final);
      if (!intent) return;
      s.covered = intent.n;
      s.nextRev = intent.rev + 1;
      for (const i of s.instances.slice(0, intent.n)) s.announced.add(i.sop);
      s.firstPendingAt = undefined;
      await this.send(s, intent, intent.rev === 0 ? "first" : "followup");
      publishLatency.observe(Math.max(0, this.now() - due) / 1000);
      if (started !== undefined) assemblyWait.observe((this.now() - started) / 1000);
    })()
      .then(() => {
        s.failures = 0;
        s.retryAt = undefined;
      })
      .catch((e) => {
        // the intent could not be journaled: nothing was published; try again later, backing off
        s.failures = (s.failures ?? 0) + 1;
        s.retryAt = this.now() + Math.min(30_000, 500 * 2 ** Math.min(s.failures, 6));
        log.error({ studyRef: studyRef(s.uid), err: (e as Error).message }, "study event not recorded; retrying");
        s.firstPendingAt ??= started;
      })
      .finally(() => {
        s.publishing = undefined;
        if (this.hasPending(s)) {
          s.firstPendingAt ??= this.now();
          this.schedule(s);
        } else this.scheduleEviction(s);
        this.updateGauge();
      });
    return s.publishing;
  }

  /** Publishes a revision until JetStream acknowledges it (or the gateway stops: the journal keeps it). */
  private async send(s: StudyState, intent: IntentRecord, kind: "first" | "followup" | "republished"): Promise<void> {
    const built = buildEvent(s.instances, intent, this.source);
    if ("error" in built) {
      // e.g. more than 512 series: the schema refuses it; publishing again would not help
      studiesPublished.inc({ kind, outcome: "invalid" });
      log.error({ studyRef: studyRef(s.uid), rev: intent.rev, err: built.error }, "study cannot be summarised");
      await this.journal.append(s.key, [{ t: "d", rev: intent.rev }]);
      return;
    }
    const payload = JSON.stringify(built.event);
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.publish(this.o.subject ?? SUBJECT.studyReceived, payload, built.id);
        studiesPublished.inc({ kind, outcome: ack.duplicate ? "duplicate" : "published" });
        log.info(
          {
            studyRef: studyRef(s.uid),
            rev: intent.rev,
            instances: intent.n,
            eventId: built.id,
            duplicate: ack.duplicate,
          },
          "study event published",
        );
        break;
      } catch (e) {
        publishErrors.inc();
        if (this.stopping) throw new Error("stopping before JetStream acknowledged the study event");
        const delay = Math.min(30_000, 250 * 2 ** Math.min(attempt, 7));
        log.warn(
          { studyRef: studyRef(s.uid), err: (e as Error).message, retryInMs: delay },
          "study event not published",
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    await this.journal.append(s.key, [{ t: "d", rev: intent.rev }]);
  }

  private scheduleEviction(s: StudyState): void {
    if (s.evict) clearTimeout(s.evict);
    s.evict = setTimeout(
      () => {
        if (s.publishing || this.hasPending(s)) return;
        this.studies.delete(s.key);
        void this.journal.close(s.key);
      },
      this.o.retainMs ?? 10 * 60_000,
    );
    s.evict.unref?.();
  }

  private updateGauge(): void {
    let n = 0;
    for (const s of this.studies.values()) if (this.hasPending(s)) n++;
    pendingStudies.set(n);
  }

  /** Studies with instances not yet announced. */
  pending(): number {
    let n = 0;
    for (const s of this.studies.values()) if (this.hasPending(s)) n++;
    return n;
  }

  /** Publishes every pending study now (shutdown: the senders are gone, do not wait for the window). */
  async flushAll(): Promise<void> {
    for (const s of this.studies.values()) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = undefined;
    }
    await Promise.all(
      [...this.studies.values()].map(async (s) => {
        await s.publishing;
        await this.flush(s, this.now(), true);
      }),
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of this.studies.values()) {
      if (s.timer) clearTimeout(s.timer);
      if (s.evict) clearTimeout(s.evict);
    }
    await Promise.allSettled([...this.studies.values()].map((s) => s.publishing));
    await this.journal.closeAll();
  }
}
