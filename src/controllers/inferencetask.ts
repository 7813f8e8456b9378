// The steps controller: level-triggered, one InferenceTask at a time. It reads the task, its Jobs
// and pods from the informer caches, asks the pure planner what should be, and makes only the
// writes the plan asks for — the Jobs, then at most one status write per reconcile, and only on
// change. It owns the task's status except status.resultsPublished (the results controller's);
// it never waits for NATS: audit facts go to the task audit controller (noted here, recorded
// there) and results to the results controller, so neither an audit repository nor a NATS outage
// stops the Jobs of tasks in flight.
import {
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Job,
  type V1Pod,
} from "@kubernetes/client-node";
import {
  type AIWorkflow,
  GROUP,
  type InferenceTask,
  type InferenceTaskStatus,
  LABEL_STEP,
  LABEL_TASK,
  VERSION,
} from "../api/v1alpha1/index.ts";
import type { OperatorConfig } from "../config/operator-config.ts";
import { buildJob } from "../jobs/job-builder.ts";
import { storageRefusal } from "../jobs/trust.ts";
import { apiClient, isAlreadyExists, isNotFound, mergePatch, statusCode } from "../kube/client.ts";
import type { Result } from "../kube/controller.ts";
import type { Recorder } from "../kube/events.ts";
import { type Cache, errMessage, keyOf } from "../kube/informer.ts";
import { logger } from "../log/logger.ts";
import { queueWait, stepDuration, tasksFinished } from "../metrics/metrics.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { observeReviewWaits } from "./review-metrics.ts";
import { writeDecision } from "./status-writes.ts";
import type { TaskAuditor } from "./task-audit.ts";
import { FINALIZER, isTerminal, type JobView, type PlanInput, type PodView, planTask, sameJson } from "./task-plan.ts";

const log = logger("inferencetask");
const PLURAL = "inferencetasks";

export interface TaskControllerDeps {
  kc: KubeConfig;
  config: Pick<
    OperatorConfig,
    | "gpuResource"
    | "gpuProductLabel"
    | "gpuTolerations"
    | "priorityClasses"
    | "terminationMessageMaxBytes"
    | "startTimeoutSeconds"
    | "taskTtlSeconds"
  >;
  tasks: Cache<InferenceTask>;
  jobs: Cache<V1Job>;
  pods: Cache<V1Pod>;
  workflows: Cache<AIWorkflow>;
  dispatcher: Dispatcher;
  recorder: Recorder;
  /** notes the audit facts of each plan (recorded by the task audit controller); none: not audited */
  auditor?: TaskAuditor;
  /** asks the task audit controller to record what a task owes */
  audited?: (key: string) => void;
  /** results are published (by the results controller) before a finished task may be deleted */
  resultsRequired: boolean;
  /** false as soon as this replica is not the leader: no write may follow */
  isLeader: () => boolean;
  now?: () => number;
}

/** Jobs and pods by owning task, maintained from informer events (handlers never do I/O). */
export class OwnedIndex<
  T extends { metadata?: { namespace?: string; name?: string; labels?: Record<string, string> } },
> {
  private readonly byTask = new Map<string, Set<string>>();
  add(o: T): void {
    const t = o.metadata?.labels?.[LABEL_TASK];
    if (!t) return;
    const k = `${o.metadata?.namespace}/${t}`;
    const s = this.byTask.get(k) ?? new Set<string>();
    this.byTask.set(k, s);
    s.add(keyOf(o));
  }
  remove(o: T): void {
    const t = o.metadata?.labels?.[LABEL_TASK];
    if (!t) return;
    const k = `${o.metadata?.namespace}/${t}`;
    const s = this.byTask.get(k);
    s?.delete(keyOf(o));
    if (s?.size === 0) this.byTask.delete(k);
  }
  keys(taskKey: string): string[] {
    return [...(this.byTask.get(taskKey) ?? [])];
  }
}

export function jobView(j: V1Job): JobView {
  const cond = (t: string) => j.status?.conditions?.find((c) => c.type === t && c.status === "True");
  const complete = cond("Complete");
  const failed = cond("Failed");
  return {
    name: j.metadata?.name as string,
    step: j.metadata?.labels?.[LABEL_STEP] as string,
    active: j.status?.active ?? 0,
    succeeded: j.status?.succeeded ?? 0,
    failed: j.status?.failed ?? 0,
    suspended: j.spec?.suspend === true,
    deleting: !!j.metadata?.deletionTimestamp,
    created: j.metadata?.creationTimestamp ? toIso(j.metadata.creationTimestamp).replace(/\.\d{3}Z$/, "Z") : undefined,
    complete: complete
      ? {
          reason: complete.reason,
          message: complete.message,
          at: j.status?.completionTime ? String(j.status.completionTime) : undefined,
        }
      : undefined,
    failedCondition: failed ? { reason: failed.reason, message: failed.message } : undefined,
  };
}

export function podView(p: V1Pod): PodView {
  const sched = p.status?.conditions?.find((c) => c.type === "PodScheduled");
  const state = p.status?.containerStatuses?.[0]?.state;
  const t = state?.terminated;
  const w = state?.waiting;
  return {
    name: p.metadata?.name as string,
    step: p.metadata?.labels?.[LABEL_STEP] as string,
    phase: p.status?.phase ?? "Pending",
    created: String(p.metadata?.creationTimestamp ?? ""),
    unschedulable:
      sched?.status === "False" && sched.reason === "Unschedulable" ? (sched.message ?? "unschedulable") : undefined,
    terminated: t ? { exitCode: t.exitCode, reason: t.reason, message: t.message } : undefined,
    runningSince: state?.running?.startedAt ? String(state.running.startedAt) : undefined,
    scheduledAt: sched?.status === "True" && sched.lastTransitionTime ? toIso(sched.lastTransitionTime) : undefined,
    waiting: w?.reason ? { reason: w.reason, message: w.message } : undefined,
  };
}

/** client-node gives Date objects for date-time fields; the planner wants RFC 3339 strings. */
function toIso(v: Date | string): string {
  return v instanceof Date ? v.toISOString() : String(v);
}

/**
 * Whose is the Job that holds the name this task's step wanted? "ours": the task's own (a re-plan
 * after a restart); "leaving": gone or an earlier incarnation's being deleted (create again
 * shortly); otherwise what holds it, for the step's JobNameConflict message (names only, no PHI).
 */
export function jobOwnership(
  task: InferenceTask,
  step: string,
  existing: V1Job | undefined,
): "ours" | "leaving" | { conflict: string } {
  if (!existing) return "leaving";
  const labels = existing.metadata?.labels ?? {};
  const controllers = (existing.metadata?.ownerReferences ?? []).filter((o) => o.controller).map((o) => o.uid);
  const sameTask = labels[LABEL_TASK] === task.metadata.name && labels[LABEL_STEP] === step;
  if (sameTask && controllers.includes(task.metadata.uid as string)) return "ours";
  if (sameTask && existing.metadata?.deletionTimestamp) return "leaving";
  if (!labels[LABEL_TASK]) return { conflict: "a Job of that name exists that radflow did not make for this task" };
  const whose = `task ${labels[LABEL_TASK]}${labels[LABEL_STEP] ? ` step ${labels[LABEL_STEP]}` : ""}`;
  return { conflict: `it belongs to ${whose}${sameTask ? " of an earlier incarnation (another uid)" : ""}` };
}

/** True for a Job that holds (or will hold) a GPU slot: not finished and not being deleted. */
export function jobIsRunning(j: V1Job): boolean {
  const v = jobView(j);
  return !v.complete && !v.failedCondition && !v.deleting;
}

export class TaskController {
  readonly jobIndex = new OwnedIndex<V1Job>();
  readonly podIndex = new OwnedIndex<V1Pod>();
  private readonly custom: CustomObjectsApi;
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;
  /** our own last status writes: the informer may not have seen them yet */
  private readonly written = new Map<string, InferenceTask>();
  /** status planned and not worth a write yet (status-writes.ts), with the version it was planned on
   * and, for news that settles first, since when it has been planned */
  private readonly unwritten = new Map<
    string,
    { rv: string | undefined; status: InferenceTaskStatus; settlingSince?: number }
  >();
  /** the resourceVersion of our last write of each task: its watch echo needs no reconcile */
  private readonly ownVersions = new Map<string, string>();
  private readonly d: TaskControllerDeps;
  private readonly now: () => number;

  constructor(d: TaskControllerDeps) {
    this.d = d;
    this.custom = apiClient(d.kc, CustomObjectsApi);
    this.batch = apiClient(d.kc, BatchV1Api);
    this.core = apiClient(d.kc, CoreV1Api);
    this.now = d.now ?? Date.now;
  }

  /** The freshest copy we know: the informer's, or our own write if that is newer. */
  private current(key: string): InferenceTask | undefined {
    const cached = this.d.tasks.get(key);
    const mine = this.written.get(key);
    if (!cached) {
      this.written.delete(key);
      return undefined;
    }
    if (mine && Number(mine.metadata.resourceVersion) > Number(cached.metadata.resourceVersion)) return mine;
    this.written.delete(key);
    return cached;
  }

  /** The informer's copy is the echo of our own last write: nothing in it is news to us. */
  isOwnWrite(t: InferenceTask): boolean {
    return t.metadata.resourceVersion !== undefined && this.ownVersions.get(keyOf(t)) === t.metadata.resourceVersion;
  }

  async reconcile(key: string): Promise<Result> {
    const stored = this.current(key);
    if (!stored) {
      this.d.dispatcher.forget(key);
      this.unwritten.delete(key);
      this.ownVersions.delete(key);
      return {};
    }
    // plan from what we planned last, written or not (as long as nobody else wrote the task since)
    const kept = this.unwritten.get(key);
    const mem = kept && kept.rv === stored.metadata.resourceVersion ? kept : undefined;
    let task: InferenceTask = mem ? { ...stored, status: mem.status } : stored;
    const ns = task.metadata.namespace as string;
    const guard = () => {
      if (!this.d.isLeader()) throw new Error("not the leader any more: stopping writes");
    };
    // The finalizer first, before any slot is taken: a failed patch then holds nothing.
    if (!task.metadata.deletionTimestamp && !(task.metadata.finalizers ?? []).includes(FINALIZER)) {
      guard();
      const finalizers = [...(task.metadata.finalizers ?? []), FINALIZER];
      const rv = await this.patchFinalizers(task, finalizers);
      task = {
        ...task,
        metadata: { ...task.metadata, finalizers, resourceVersion: rv ?? task.metadata.resourceVersion },
      };
    }
    const jobs = this.jobIndex
      .keys(key)
      .map((k) => this.d.jobs.get(k))
      .filter((j): j is V1Job => !!j);
    const pods = this.podIndex
      .keys(key)
      .map((k) => this.d.pods.get(k))
      .filter((p): p is V1Pod => !!p);
    const waiter = {
      key,
      workflowKey: `${ns}/${task.spec.workflowRef.name}`,
      priority: task.spec.priority,
      created: String(task.metadata.creationTimestamp ?? ""),
    };
    const now = this.now();
    const input: PlanInput = {
      task,
      jobs: jobs.map(jobView),
      pods: pods.map(podView),
      now,
      capacity: 0,
      resultsRequired: this.d.resultsRequired,
      gpuResource: this.d.config.gpuResource,
      terminationMessageMaxBytes: this.d.config.terminationMessageMaxBytes,
      startTimeoutSeconds: this.d.config.startTimeoutSeconds,
      defaultTtlSeconds: this.d.config.taskTtlSeconds,
      storageRefusal: storageRefusal(ns, task.spec.storage),
    };
    let plan = planTask(input);
    if (plan.needsLivePods) {
      // the cache lacks a finished pod whose termination message holds the outputs: ask the API server
      const live = await this.core.listNamespacedPod({
        namespace: ns,
        labelSelector: `${LABEL_TASK}=${task.metadata.name}`,
      });
      input.pods = live.items.map(podView);
      plan = planTask(input);
    }
    if (plan.waitingForCapacity) {
      // something is ready to start: ask for slots (Kueue decides for itself)
      input.capacity = task.spec.kueue ? Number.POSITIVE_INFINITY : this.d.dispatcher.capacityFor(waiter);
      if (input.capacity > 0) plan = planTask(input);
    }

    // Take the slots now, with no await since capacityFor: concurrent reconciles must not both see them free.
    const planned = plan.create.map((c) => buildJob(task, c.step, c.inputs, this.d.config));
    const slot = (j: V1Job) => `${ns}/${j.metadata?.name}`;
    if (!task.spec.kueue) for (const j of planned) this.d.dispatcher.reserve(slot(j), waiter.workflowKey);

    const conflicts: Record<string, string> = {};
    const refused: Record<string, { message: string; permanent: boolean }> = {};
    let retryConflict = false;
    for (const job of planned) {
      const step = job.metadata?.labels?.[LABEL_STEP] as string;
      try {
        guard();
        await this.batch.createNamespacedJob({ namespace: ns, body: job });
      } catch (err) {
        if (!this.d.isLeader()) {
          for (const j of planned) this.d.dispatcher.observed(slot(j)); // release the slots
          throw err;
        }
        this.d.dispatcher.observed(slot(job));
        if (!isAlreadyExists(err)) {
          refused[step] = createRefusal(job.metadata?.name as string, err);
          continue;
        }
        // A restart re-plans the same Job: fine if it is ours. Anything else holding the name would
        // leave the step waiting forever for a Job whose events never reach this task.
        const verdict = await this.ownJob(task, job);
        if (verdict === "ours") continue;
        if (verdict === "leaving")
          retryConflict = true; // an earlier incarnation's Job on its way out
        else conflicts[step] = verdict.conflict;
      }
    }
    if (Object.keys(conflicts).length || Object.keys(refused).length) {
      input.jobConflicts = conflicts;
      input.jobCreateFailures = refused;
      plan = planTask(input);
    }
    for (const name of plan.deleteJobs) {
      guard();
      try {
        await this.batch.deleteNamespacedJob({ name, namespace: ns, propagationPolicy: "Background" });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    // status.resultsPublished is the results controller's: never sent from here
    const { resultsPublished: _stamp, ...status } = plan.status;
    const { resultsPublished: _was, ...was } = stored.status ?? {};
    const changed = !sameJson(plan.status, task.status ?? {});
    const decision = task.metadata.deletionTimestamp ? "skip" : writeDecision(status, was);
    // news that settles first (status-writes.ts): written once it has been planned long enough
    const settling = typeof decision === "object";
    const settlingSince = settling ? (mem?.settlingSince ?? now) : undefined;
    const settleLeft = settling && settlingSince !== undefined ? settlingSince + decision.settleMs - now : 0;
    if (decision === "write" || (settling && settleLeft <= 0)) {
      guard();
      const body = { status: nullUndefined(status as Record<string, unknown>) };
      const updated = (await this.custom.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: task.metadata.name as string, body },
        mergePatch,
      )) as InferenceTask;
      const rv = updated.metadata?.resourceVersion;
      this.written.set(key, { ...task, metadata: { ...task.metadata, resourceVersion: rv }, status: plan.status });
      if (rv) this.ownVersions.set(key, rv);
      this.unwritten.delete(key);
    } else if ((changed || settlingSince !== mem?.settlingSince) && !task.metadata.deletionTimestamp) {
      this.unwritten.set(key, { rv: task.metadata.resourceVersion, status: plan.status, settlingSince });
    }
    if (changed) this.observeTransitions(task, plan.status, now);
    // Facts are noted once their status is written (a crash before: the next reconcile plans
    // them again); the task audit controller records them, retrying while the sink is away.
    if (this.d.auditor && plan.audits.length) {
      this.d.auditor.planned(task, plan.audits, new Date(now).toISOString());
      this.d.audited?.(key);
    }

    const target = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "InferenceTask",
      namespace: ns,
      name: task.metadata.name as string,
      uid: task.metadata.uid,
    };
    for (const e of plan.events) this.d.recorder.event(target, e.type, e.reason, e.note);

    if (plan.removeFinalizer) {
      // a task deleted before it ended owes its TaskCanceled fact: kept until that is recorded
      if (this.d.auditor?.owes(key)) return { requeueAfterMs: 1000 };
      guard();
      try {
        await this.patchFinalizers(
          task,
          (task.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    if (plan.deleteTask) {
      guard();
      try {
        await this.custom.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          name: task.metadata.name as string,
          propagationPolicy: "Background",
        });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    if (plan.waitingForCapacity && plan.create.length === 0) this.d.dispatcher.wait(waiter);
    else this.d.dispatcher.forget(key);
    if (plan.deleteJobs.length || plan.create.length) this.d.dispatcher.capacityChanged();

    const failed = Object.entries(refused).filter(([, r]) => !r.permanent);
    if (failed.length)
      throw new Error(`creating Jobs failed: ${failed.map(([s, r]) => `step ${s}: ${r.message}`).join("; ")}`);
    const settle = settleLeft > 0 ? settleLeft : undefined;
    const after = [plan.requeueAfterMs, settle, retryConflict ? 1000 : undefined].filter((v) => v !== undefined);
    return { requeueAfterMs: after.length ? Math.min(...after) : undefined };
  }

  /** Whose is the Job that holds the name we wanted? Read from the API server (the informer may lag,
   * and only sees radflow's Jobs); by name with `list`, the verb the chart already grants. */
  private async ownJob(task: InferenceTask, want: V1Job): Promise<"ours" | "leaving" | { conflict: string }> {
    const ns = task.metadata.namespace as string;
    const name = want.metadata?.name as string;
    const found = await this.batch.listNamespacedJob({ namespace: ns, fieldSelector: `metadata.name=${name}` });
    const verdict = jobOwnership(task, want.metadata?.labels?.[LABEL_STEP] as string, found.items[0]);
    if (verdict !== "ours" && verdict !== "leaving")
      log.warn(
        { task: keyOf(task), step: want.metadata?.labels?.[LABEL_STEP], job: name },
        "job name taken by another object",
      );
    return verdict;
  }

  /** Merge patch of the finalizer list, guarded by the resourceVersion we planned from; the new one. */
  private async patchFinalizers(task: InferenceTask, finalizers: string[]): Promise<string | undefined> {
    const updated = (await this.custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: task.metadata.namespace as string,
        plural: PLURAL,
        name: task.metadata.name as string,
        body: { metadata: { finalizers, resourceVersion: task.metadata.resourceVersion } },
      },
      mergePatch,
    )) as InferenceTask;
    return updated.metadata?.resourceVersion;
  }

  private observeTransitions(task: InferenceTask, next: InferenceTask["status"], now: number): void {
    const wf = task.spec.workflowRef.name;
    const prevSteps = new Map((task.status?.steps ?? []).map((s) => [s.name, s]));
    for (const s of next?.steps ?? []) {
      const was = prevSteps.get(s.name);
      // a review step runs no pod: its wait is the review-wait histogram's, not a queue wait
      if (s.phase === "Running" && was?.phase !== "Running" && s.startTime && !s.review) {
        queueWait.observe({ workflow: wf, priority: task.spec.priority }, (now - Date.parse(s.startTime)) / 1000);
      }
      if ((s.phase === "Succeeded" || s.phase === "Failed") && was?.phase !== s.phase && s.startTime && s.jobName) {
        stepDuration.observe(
          { workflow: wf, priority: task.spec.priority, step: s.name, outcome: s.phase },
          (now - Date.parse(s.startTime)) / 1000,
        );
      }
    }
    observeReviewWaits(task, next);
    if (next?.phase && next.phase !== task.status?.phase && isTerminal(next.phase)) {
      const reason = next.conditions?.find((c) => c.type === "Succeeded")?.reason ?? next.phase;
      tasksFinished.inc({ workflow: wf, priority: task.spec.priority, phase: next.phase, reason });
      log.info({ task: keyOf(task), workflow: wf, phase: next.phase, reason, duration: next.duration }, "task ended");
    }
  }
}

/**
 * Why the API server refused a Job, for the step's message: the HTTP code and the Status reason
 * only (its message may quote field values). 400/422 (invalid) and 403 with a quota will not
 * pass by retrying the same Job... except a quota can free up, so only invalid is permanent.
 */
export function createRefusal(job: string, err: unknown): { message: string; permanent: boolean } {
  const code = statusCode(err);
  const body = (err as { body?: unknown })?.body;
  let reason: string | undefined;
  try {
    const parsed =
      typeof body === "string" ? (JSON.parse(body) as { reason?: unknown }) : (body as { reason?: unknown });
    if (typeof parsed?.reason === "string" && /^[A-Za-z]{1,64}$/.test(parsed.reason)) reason = parsed.reason;
  } catch {
    // not a Status object
  }
  const why = code ? `HTTP ${code}${reason ? ` ${reason}` : ""}` : `no answer (${errMessage(err).slice(0, 200)})`;
  return { message: `the API server refused Job ${job}: ${why}`, permanent: code === 400 || code === 422 };
}

/** Merge patch drops undefined members: send null so a field that went away is cleared. */
function nullUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = v === undefined ? null : v;
  return out;
}
