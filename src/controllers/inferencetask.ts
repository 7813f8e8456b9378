// The InferenceTask reconciler: level-triggered, one key at a time. It reads the task, its Jobs
// and pods from the informer caches, asks the pure planner what should be, and makes only the
// writes the plan asks for — at most one status write per reconcile, and only on change.
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
  LABEL_STEP,
  LABEL_TASK,
  PRIORITY_ORDER,
  VERSION,
} from "../api/v1alpha1/index.ts";
import type { AuditFact, AuditSink } from "../audit/facts.ts";
import type { OperatorConfig } from "../config/operator-config.ts";
import { buildJob } from "../jobs/job-builder.ts";
import { storageRefusal } from "../jobs/trust.ts";
import { isAlreadyExists, isNotFound, mergePatch, track } from "../kube/client.ts";
import type { Recorder } from "../kube/events.ts";
import { type Cache, errMessage, keyOf } from "../kube/informer.ts";
import { logger } from "../log/logger.ts";
import { queueWait, stepDuration, tasksFinished } from "../metrics/metrics.ts";
import { observeReviewWaits } from "./review-metrics.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { FINALIZER, isTerminal, type JobView, type PodView, planTask, sameJson } from "./task-plan.ts";

const log = logger("inferencetask");
const PLURAL = "inferencetasks";

export type ReconcileResult = { requeueAfterMs?: number };

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
  audit: AuditSink;
  /** publishes the results event(s); resolves once JetStream acknowledged them */
  publishResults?: (task: InferenceTask) => Promise<void>;
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
  private readonly d: TaskControllerDeps;
  private readonly now: () => number;

  constructor(d: TaskControllerDeps) {
    this.d = d;
    this.custom = d.kc.makeApiClient(CustomObjectsApi);
    this.batch = d.kc.makeApiClient(BatchV1Api);
    this.core = d.kc.makeApiClient(CoreV1Api);
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

  async reconcile(key: string): Promise<ReconcileResult> {
    const task = this.current(key);
    if (!task) {
      this.d.dispatcher.forget(key);
      return {};
    }
    const ns = task.metadata.namespace as string;
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
    const input = {
      task,
      jobs: jobs.map(jobView),
      pods: pods.map(podView),
      now,
      capacity: 0,
      resultsRequired: this.d.publishResults !== undefined,
      gpuResource: this.d.config.gpuResource,
      terminationMessageMaxBytes: this.d.config.terminationMessageMaxBytes,
      startTimeoutSeconds: this.d.config.startTimeoutSeconds,
      defaultTtlSeconds: this.d.config.taskTtlSeconds,
      jobConflicts: undefined as Record<string, string> | undefined,
      storageRefusal: storageRefusal(ns, task.spec.storage),
    };
    let plan = planTask(input);
    if (plan.needsLivePods) {
      // the cache lacks a finished pod whose termination message holds the outputs: ask the API server
      const live = await track("list", "pods", () =>
        this.core.listNamespacedPod({ namespace: ns, labelSelector: `${LABEL_TASK}=${task.metadata.name}` }),
      );
      input.pods = live.items.map(podView);
      plan = planTask(input);
    }
    if (plan.waitingForCapacity) {
      // something is ready to start: ask for slots (Kueue decides for itself)
      input.capacity = task.spec.kueue ? Number.POSITIVE_INFINITY : this.d.dispatcher.capacityFor(waiter);
      if (input.capacity > 0) plan = planTask(input);
    }

    // Take the slots now, before any await: concurrent reconciles must not both see them free.
    const jobs_ = plan.create.map((c) => buildJob(task, c.step, c.inputs, this.d.config));
    if (!task.spec.kueue)
      for (const j of jobs_) this.d.dispatcher.reserve(`${ns}/${j.metadata?.name}`, waiter.workflowKey);

    const target = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "InferenceTask",
      namespace: ns,
      name: task.metadata.name as string,
      uid: task.metadata.uid,
    };
    const guard = () => {
      if (!this.d.isLeader()) throw new Error("not the leader any more: stopping writes");
    };

    if (plan.addFinalizer && !task.metadata.deletionTimestamp) {
      guard();
      await this.patchFinalizers(task, [...(task.metadata.finalizers ?? []), FINALIZER]);
    }

    const conflicts: Record<string, string> = {};
    let retryConflict = false;
    for (const job of jobs_) {
      try {
        guard();
        await track("create", "jobs", () => this.batch.createNamespacedJob({ namespace: ns, body: job }));
      } catch (err) {
        if (!isAlreadyExists(err)) {
          for (const j of jobs_) this.d.dispatcher.observed(`${ns}/${j.metadata?.name}`); // release the slots
          throw err;
        }
        // A restart re-plans the same Job: fine if it is ours. Anything else holding the name would
        // leave the step waiting forever for a Job whose events never reach this task.
        const verdict = await this.ownJob(task, job);
        if (verdict === "ours") continue;
        this.d.dispatcher.observed(`${ns}/${job.metadata?.name}`);
        if (verdict === "leaving")
          retryConflict = true; // an earlier incarnation's Job on its way out
        else conflicts[job.metadata?.labels?.[LABEL_STEP] as string] = verdict.conflict;
      }
    }
    if (Object.keys(conflicts).length) {
      input.jobConflicts = conflicts;
      plan = planTask(input);
    }
    for (const name of plan.deleteJobs) {
      guard();
      try {
        await track("delete", "jobs", () =>
          this.batch.deleteNamespacedJob({ name, namespace: ns, propagationPolicy: "Background" }),
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    // Audit before the status write and the results: a crash (or an audit sink that fails) between
    // the write and the audit would lose the facts for good, since the next reconcile sees no
    // transition; recorded first, a retry repeats them under the same ids (the sink drops repeats).
    // It also keeps the trail in order: StepFinished and TaskSucceeded before ResultsPublished.
    for (const a of plan.audits) {
      const fact: AuditFact = {
        id: `${task.metadata.uid}:${a.kind}:${a.step ?? ""}:${a.reason ?? ""}`,
        kind: a.kind,
        time: new Date(now).toISOString(),
        outcome: a.outcome,
        description: a.description,
        namespace: ns,
        workflow: task.spec.workflowRef.name,
        task: task.metadata.name as string,
        step: a.step,
        reason: a.reason,
        study: {
          studyInstanceUID: task.spec.study.studyInstanceUID,
          accessionNumber: task.spec.study.accessionNumber,
          callingAETitle: task.spec.study.callingAETitle,
          calledAETitle: task.spec.study.calledAETitle,
        },
      };
      await this.d.audit.record(fact);
    }

    let publishError: unknown;
    if (plan.publishResults && this.d.publishResults && isTerminal(plan.status.phase)) {
      guard();
      try {
        await this.d.publishResults({ ...task, status: plan.status });
        plan.status = { ...plan.status, resultsPublished: new Date(this.now()).toISOString() };
      } catch (err) {
        publishError = err; // status still records the outcome; the publish is retried
      }
    }

    if (!task.metadata.deletionTimestamp && !sameJson(plan.status, task.status ?? {})) {
      guard();
      const body = { status: nullUndefined(plan.status as Record<string, unknown>) };
      const updated = (await track("patch", `${PLURAL}/status`, () =>
        this.custom.patchNamespacedCustomObjectStatus(
          { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name: task.metadata.name as string, body },
          mergePatch,
        ),
      )) as InferenceTask;
      this.written.set(key, {
        ...task,
        metadata: { ...task.metadata, resourceVersion: updated.metadata?.resourceVersion },
        status: plan.status,
      });
      this.observeTransitions(task, plan.status, now);
    }

    for (const e of plan.events) this.d.recorder.event(target, e.type, e.reason, e.note);

    if (plan.removeFinalizer) {
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
    if (plan.deleteTask && !publishError) {
      guard();
      try {
        await track("delete", PLURAL, () =>
          this.custom.deleteNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: PLURAL,
            name: task.metadata.name as string,
            propagationPolicy: "Background",
          }),
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    if (plan.waitingForCapacity && plan.create.length === 0) this.d.dispatcher.wait(waiter);
    else this.d.dispatcher.forget(key);
    if (plan.deleteJobs.length || plan.create.length) this.d.dispatcher.capacityChanged();

    if (publishError) throw new Error(`publishing results failed: ${errMessage(publishError)}`);
    if (retryConflict) return { requeueAfterMs: Math.min(plan.requeueAfterMs ?? 1000, 1000) };
    return { requeueAfterMs: plan.requeueAfterMs };
  }

  /** Whose is the Job that holds the name we wanted? Read from the API server (the informer may lag,
   * and only sees radflow's Jobs); by name with `list`, the verb the chart already grants. */
  private async ownJob(task: InferenceTask, want: V1Job): Promise<"ours" | "leaving" | { conflict: string }> {
    const ns = task.metadata.namespace as string;
    const name = want.metadata?.name as string;
    const found = await track("list", "jobs", () =>
      this.batch.listNamespacedJob({ namespace: ns, fieldSelector: `metadata.name=${name}` }),
    );
    const verdict = jobOwnership(task, want.metadata?.labels?.[LABEL_STEP] as string, found.items[0]);
    if (verdict !== "ours" && verdict !== "leaving")
      log.warn(
        { task: keyOf(task), step: want.metadata?.labels?.[LABEL_STEP], job: name },
        "job name taken by another object",
      );
    return verdict;
  }

  /** Merge patch of the finalizer list, guarded by the resourceVersion we planned from. */
  private async patchFinalizers(task: InferenceTask, finalizers: string[]): Promise<void> {
    await track("patch", PLURAL, () =>
      this.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace: task.metadata.namespace as string,
          plural: PLURAL,
          name: task.metadata.name as string,
          body: { metadata: { finalizers, resourceVersion: task.metadata.resourceVersion } },
        },
        mergePatch,
      ),
    );
  }

  /** Lane of a task in the work queue: its priority, so STAT keys jump the queue. */
  laneOf(key: string): number {
    const t = this.d.tasks.get(key);
    return t ? PRIORITY_ORDER[t.spec.priority] : 3;
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

/** Merge patch drops undefined members: send null so a field that went away is cleared. */
function nullUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) out[k] = v === undefined ? null : v;
  return out;
}
