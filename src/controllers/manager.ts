// Wires the operator: informers → controllers (src/kube/controller.ts), under leader election.
// Each part of a task's status has one owner (docs/ARCHITECTURE.md §9): the steps controller
// (plan → Jobs → status), the results controller (publish → status.resultsPublished) and the task
// audit controller (audit facts from what status records), beside the AIWorkflow controller. Only
// the leader reconciles, ingests and writes; followers keep warm caches so a hand-over is quick.
// This file is wiring only: what happens to a key lives in the controllers.

import { CustomObjectsApi, type KubeConfig, type V1Job, type V1Pod } from "@kubernetes/client-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import {
  AIWorkflow,
  GROUP,
  type InferenceTask,
  isReady,
  LABEL_MANAGED_BY,
  LABEL_TASK,
  LABEL_WORKFLOW,
  MANAGED_BY,
  PRIORITY_ORDER,
  VERSION,
} from "../api/v1alpha1/index.ts";
import { type AuditSink, noAudit } from "../audit/facts.ts";
import type { OperatorConfig } from "../config/operator-config.ts";
import { cachedJob, cachedPod, cachedTask } from "../kube/cached-shapes.ts";
import { apiClient } from "../kube/client.ts";
import { Controller } from "../kube/controller.ts";
import { EventRecorder } from "../kube/events.ts";
import { type Cache, CombinedCache, errMessage, Informer, keyOf, type ListPage } from "../kube/informer.ts";
import { LeaderElector } from "../kube/lease.ts";
import { logger } from "../log/logger.ts";
import { oldestGpuWait, tasksByPhase, waitingForGpu } from "../metrics/metrics.ts";
import { WorkflowController } from "./aiworkflow.ts";
import { Dispatcher } from "./dispatcher.ts";
import { jobIsRunning, jobView, podView, TaskController } from "./inferencetask.ts";
import { needsResults, ResultsController } from "./results.ts";
import { updateReviewGauges } from "./review-metrics.ts";
import { TaskAuditor } from "./task-audit.ts";
import { sameJson } from "./task-plan.ts";

const log = logger("manager");

export interface ManagerHooks {
  audit?: AuditSink;
  /** where finished tasks' results go (the results controller runs only with it) */
  results?: { js: JetStreamClient; monaiExport: boolean };
  /** started once this replica leads and the caches are synced (study ingest) */
  onLeading?: (workflows: () => AIWorkflow[]) => Promise<void>;
  /** leadership lost: by default the process exits so that it restarts clean */
  onLostLeadership?: () => void;
}

export interface Manager {
  ready(): boolean;
  /** a Kubernetes Event about the operator itself (on its Pod when known, else on its Lease) */
  operatorEvent(type: "Normal" | "Warning", reason: string, note: string): void;
  isLeader(): boolean;
  stop(): Promise<void>;
  workflows: Cache<AIWorkflow>;
  tasks: Cache<InferenceTask>;
}

function informers<T extends { metadata?: { namespace?: string; name?: string; resourceVersion?: string } }>(
  kc: KubeConfig,
  namespaces: string[],
  make: (ns: string | undefined) => ConstructorParameters<typeof Informer<T>>[1],
): CombinedCache<T> {
  const list = namespaces.length ? namespaces : [undefined];
  return new CombinedCache(list.map((ns) => new Informer<T>(kc, make(ns))));
}

type ListPageRequest = { limit: number; continue?: string };
/** A list page request in the typed clients' words (`continue` is `_continue` there). */
const page = (p: ListPageRequest) => ({ limit: p.limit, _continue: p.continue });

export async function startManager(kc: KubeConfig, cfg: OperatorConfig, hooks: ManagerHooks = {}): Promise<Manager> {
  const audit = hooks.audit ?? noAudit;
  const custom = apiClient(kc, CustomObjectsApi);
  const selector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
  const customPath = (ns: string | undefined, plural: string) =>
    ns ? `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${plural}` : `/apis/${GROUP}/${VERSION}/${plural}`;
  // one page of each list (limit/continue): the informers page their initial lists
  const listCustom = (ns: string | undefined, plural: string) => (p: ListPageRequest) =>
    (ns
      ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural, ...page(p) })
      : custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural, ...page(p) })) as Promise<ListPage>;

  const workflows = informers<AIWorkflow>(kc, cfg.namespaces, (ns) => ({
    resource: "aiworkflows",
    path: customPath(ns, "aiworkflows"),
    list: listCustom(ns, "aiworkflows"),
    parse: (o) => AIWorkflow.parse(o),
  }));
  const tasks = informers<InferenceTask>(kc, cfg.namespaces, (ns) => ({
    resource: "inferencetasks",
    path: customPath(ns, "inferencetasks"),
    list: listCustom(ns, "inferencetasks"),
    parse: cachedTask, // finished and published: without steps, study, storage
  }));
  const jobs = informers<V1Job>(kc, cfg.namespaces, (ns) => ({
    resource: "jobs",
    path: ns ? `/apis/batch/v1/namespaces/${ns}/jobs` : "/apis/batch/v1/jobs",
    labelSelector: selector,
    parse: cachedJob, // what radflow reads: no pod template
  }));
  const pods = informers<V1Pod>(kc, cfg.namespaces, (ns) => ({
    resource: "pods",
    path: ns ? `/api/v1/namespaces/${ns}/pods` : "/api/v1/pods",
    labelSelector: selector,
    parse: cachedPod, // what radflow reads: no containers, volumes, env
  }));

  let leading = false;
  const recorder = new EventRecorder(kc, "radflow.io/operator", cfg.identity);
  let elector: LeaderElector | undefined;
  const isLeader = () => leading && (elector ? elector.isLeader() : true);
  recorder.gate(isLeader);

  const laneOfTask = (key: string) => {
    const t = tasks.get(key);
    return t ? PRIORITY_ORDER[t.spec.priority] : 3;
  };
  const running = () => {
    let total = 0;
    const byWorkflow = new Map<string, number>();
    for (const j of jobs.list()) {
      if (!jobIsRunning(j) || j.spec?.suspend) continue;
      total += 1;
      const wk = `${j.metadata?.namespace}/${j.metadata?.labels?.[LABEL_WORKFLOW]}`;
      byWorkflow.set(wk, (byWorkflow.get(wk) ?? 0) + 1);
    }
    return { total, byWorkflow };
  };

  // --- the parts and their controllers
  const auditor = hooks.audit ? new TaskAuditor(audit) : undefined;
  const auditCtl = auditor
    ? new Controller({
        name: "task-audit",
        workers: 2,
        laneOf: laneOfTask,
        active: isLeader,
        reconcile: (k) => auditor.reconcile(k),
      })
    : undefined;
  let steps: Controller | undefined;
  const dispatcher = new Dispatcher({
    globalCap: cfg.maxRunningJobs,
    workflowCap: (wk) => workflows.get(wk)?.spec.concurrency?.maxRunning,
    running,
    wake: (key, priority) => steps?.enqueue(key, PRIORITY_ORDER[priority]),
  });
  const tc = new TaskController({
    kc,
    config: cfg,
    tasks,
    jobs,
    pods,
    workflows,
    dispatcher,
    recorder,
    auditor,
    audited: (k) => auditCtl?.enqueue(k),
    resultsRequired: hooks.results !== undefined,
    isLeader,
  });
  steps = new Controller({
    name: "inferencetask",
    workers: cfg.workers,
    laneOf: laneOfTask,
    active: isLeader,
    reconcile: (k) => tc.reconcile(k),
  });
  const results = hooks.results
    ? new ResultsController({ kc, ...hooks.results, tasks, workflows, audit, auditor, isLeader })
    : undefined;
  const resultsCtl = results
    ? new Controller({
        name: "results",
        workers: 4,
        laneOf: laneOfTask,
        active: isLeader,
        reconcile: (k) => results.reconcile(k),
      })
    : undefined;
  const wc = new WorkflowController(kc, workflows, recorder, audit, isLeader);
  const wfCtl = new Controller({
    name: "aiworkflow",
    workers: 2,
    queue: { lanes: 1 },
    active: isLeader,
    reconcile: async (k) => {
      await wc.reconcile(k);
      return {};
    },
  });
  const controllers = [steps, wfCtl, ...(resultsCtl ? [resultsCtl] : []), ...(auditCtl ? [auditCtl] : [])];

  // --- informer events → keys. Handlers only index and enqueue; they never do I/O.
  tasks.on((type, t) => {
    const key = keyOf(t);
    if (type === "delete") auditor?.forget(t);
    else if (auditor?.observe(t)) auditCtl?.enqueue(key);
    if (type !== "delete" && resultsCtl && needsResults(t)) resultsCtl.enqueue(key);
    // the echo of the steps controller's own write holds nothing it does not know
    if (type === "update" && tc.isOwnWrite(t)) return;
    steps.enqueue(key, PRIORITY_ORDER[t.spec.priority]);
  });
  const ownerKey = (o: { metadata?: { namespace?: string; labels?: Record<string, string> } }) =>
    o.metadata?.labels?.[LABEL_TASK] ? `${o.metadata.namespace}/${o.metadata.labels[LABEL_TASK]}` : undefined;
  jobs.on((type, j, old) => {
    if (type === "delete") tc.jobIndex.remove(j);
    else tc.jobIndex.add(j);
    dispatcher.observed(keyOf(j));
    const owner = ownerKey(j);
    // an update that changes nothing the planner reads (a status field radflow ignores) is no news
    if (owner && !(type === "update" && old && sameJson(jobView(old), jobView(j)))) steps.enqueue(owner);
    // a slot frees when a Job ends or goes away
    if (type === "delete" || (old && jobIsRunning(old) && !jobIsRunning(j))) dispatcher.capacityChanged();
  });
  pods.on((type, p, old) => {
    if (type === "delete") tc.podIndex.remove(p);
    else tc.podIndex.add(p);
    const owner = ownerKey(p);
    // most pod updates (IP, Ready conditions) change nothing the planner reads
    if (owner && !(type === "update" && old && sameJson(podView(old), podView(p)))) steps.enqueue(owner);
  });
  workflows.on((_type, w) => {
    wfCtl.enqueue(keyOf(w));
    dispatcher.capacityChanged(); // maxRunning may have changed
  });

  await Promise.all([workflows.start(), tasks.start(), jobs.start(), pods.start()]);
  const synced = () => workflows.hasSynced() && tasks.hasSynced() && jobs.hasSynced() && pods.hasSynced();

  const phaseTimer = setInterval(() => {
    const byPhase = new Map<string, number>();
    const gpuWait = new Map<string, number>();
    const oldest = new Map<string, number>();
    const now = Date.now();
    for (const t of tasks.list()) {
      const ph = t.status?.phase ?? "Pending";
      byPhase.set(ph, (byPhase.get(ph) ?? 0) + 1);
      for (const s of t.status?.steps ?? []) {
        if (s.phase !== "WaitingForGPU") continue;
        gpuWait.set(t.spec.priority, (gpuWait.get(t.spec.priority) ?? 0) + 1);
        const age = s.startTime ? (now - Date.parse(s.startTime)) / 1000 : 0;
        oldest.set(t.spec.priority, Math.max(oldest.get(t.spec.priority) ?? 0, age));
      }
    }
    tasksByPhase.reset();
    for (const [phase, n] of byPhase) tasksByPhase.set({ phase }, n);
    waitingForGpu.reset();
    for (const [priority, n] of gpuWait) waitingForGpu.set({ priority }, n);
    for (const priority of ["stat", "urgent", "routine", "batch"])
      oldestGpuWait.set({ priority }, oldest.get(priority) ?? 0);
    updateReviewGauges(tasks.list(), now);
  }, 5_000);
  phaseTimer.unref();

  let workersDone: Promise<void> | undefined;
  const startWork = async () => {
    await Promise.all([workflows.waitForSync(), tasks.waitForSync(), jobs.waitForSync(), pods.waitForSync()]);
    if (!isLeader()) return;
    log.info(
      { tasks: [...tasks.list()].length, workflows: [...workflows.list()].length },
      "caches synced: reconciling",
    );
    for (const w of workflows.list()) wfCtl.enqueue(keyOf(w));
    for (const t of tasks.list()) {
      steps.enqueue(keyOf(t), PRIORITY_ORDER[t.spec.priority]);
      if (resultsCtl && needsResults(t)) resultsCtl.enqueue(keyOf(t));
      if (auditor?.owes(keyOf(t))) auditCtl?.enqueue(keyOf(t));
    }
    workersDone = Promise.all(controllers.map((c) => c.start())).then(() => undefined);
    if (hooks.onLeading) await hooks.onLeading(() => [...workflows.list()].filter(isReady));
  };

  const lost = () => {
    leading = false;
    for (const c of controllers) c.queue.shutDown();
    (hooks.onLostLeadership ?? (() => process.exit(1)))();
  };

  if (cfg.leaderElection) {
    elector = new LeaderElector(kc, {
      namespace: cfg.leaseNamespace,
      name: cfg.leaseName,
      identity: cfg.identity,
      leaseDurationMs: cfg.leaseDurationMs,
      renewDeadlineMs: cfg.renewDeadlineMs,
      retryPeriodMs: cfg.retryPeriodMs,
      onStartedLeading: () => {
        leading = true;
        void startWork().catch((err) => {
          log.error({ err: errMessage(err) }, "could not start work as leader");
          lost();
        });
      },
      onStoppedLeading: lost,
    });
    elector.start();
  } else {
    leading = true;
    await startWork();
  }

  const self =
    process.env.POD_NAME && process.env.POD_NAMESPACE
      ? { apiVersion: "v1", kind: "Pod", namespace: process.env.POD_NAMESPACE, name: process.env.POD_NAME }
      : { apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: cfg.leaseNamespace, name: cfg.leaseName };
  return {
    workflows,
    tasks,
    operatorEvent: (type, reason, note) => recorder.event(self, type, reason, note),
    ready: synced,
    isLeader,
    async stop() {
      // stop intake, let in-flight reconciles finish, record the audit facts still owed (a GPU
      // wait is in memory only), then give the lease back
      for (const c of controllers) c.queue.shutDown();
      await workersDone;
      await auditor?.flushAll(10_000).catch((err) => log.warn({ err: errMessage(err) }, "audit facts left unrecorded"));
      leading = false;
      await elector?.stop();
      clearInterval(phaseTimer);
      await Promise.all([workflows.stop(), tasks.stop(), jobs.stop(), pods.stop()]);
    },
  };
}
