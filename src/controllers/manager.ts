// Wires the operator: informers → work queues → reconcilers, under leader election, with study
// ingest and results publishing on NATS when configured. Only the leader reconciles, ingests
// and writes; followers keep warm caches so a hand-over is quick.
import { performance } from "node:perf_hooks";
import { CustomObjectsApi, type KubeConfig, type V1Job, type V1Pod } from "@kubernetes/client-node";
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
import { EventRecorder } from "../kube/events.ts";
import { type Cache, CombinedCache, errMessage, Informer, keyOf, type ListPage } from "../kube/informer.ts";
import { LeaderElector } from "../kube/lease.ts";
import { runWorkers, WorkQueue } from "../kube/work-queue.ts";
import { logger } from "../log/logger.ts";
import { oldestGpuWait, reconcileDuration, reconciles, tasksByPhase, waitingForGpu } from "../metrics/metrics.ts";
import { updateReviewGauges } from "./review-metrics.ts";
import { WorkflowController } from "./aiworkflow.ts";
import { Dispatcher } from "./dispatcher.ts";
import { jobIsRunning, TaskController } from "./inferencetask.ts";

const log = logger("manager");

export interface ManagerHooks {
  audit?: AuditSink;
  /** publishes a finished task's results; resolves after JetStream acknowledged */
  publishResults?: (task: InferenceTask) => Promise<void>;
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
  const custom = kc.makeApiClient(CustomObjectsApi);
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

  const taskQueue = new WorkQueue({ name: "inferencetask", lanes: 4 });
  const wfQueue = new WorkQueue({ name: "aiworkflow", lanes: 1 });

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
  const laneOfTask = (key: string) => {
    const t = tasks.get(key);
    return t ? PRIORITY_ORDER[t.spec.priority] : 3;
  };
  const dispatcher = new Dispatcher({
    globalCap: cfg.maxRunningJobs,
    workflowCap: (wk) => workflows.get(wk)?.spec.concurrency?.maxRunning,
    running,
    wake: (key, priority) => taskQueue.add(key, PRIORITY_ORDER[priority]),
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
    audit,
    publishResults: hooks.publishResults,
    isLeader,
  });
  const wc = new WorkflowController(kc, workflows, recorder, audit, isLeader);

  // Handlers only index and enqueue; they never do I/O.
  tasks.on((_type, t) => taskQueue.add(keyOf(t), PRIORITY_ORDER[t.spec.priority]));
  const ownerKey = (o: { metadata?: { namespace?: string; labels?: Record<string, string> } }) =>
    o.metadata?.labels?.[LABEL_TASK] ? `${o.metadata.namespace}/${o.metadata.labels[LABEL_TASK]}` : undefined;
  jobs.on((type, j, old) => {
    if (type === "delete") tc.jobIndex.remove(j);
    else tc.jobIndex.add(j);
    dispatcher.observed(keyOf(j));
    const owner = ownerKey(j);
    if (owner) taskQueue.add(owner, laneOfTask(owner));
    // a slot frees when a Job ends or goes away
    if (type === "delete" || (old && jobIsRunning(old) && !jobIsRunning(j))) dispatcher.capacityChanged();
  });
  pods.on((type, p) => {
    if (type === "delete") tc.podIndex.remove(p);
    else tc.podIndex.add(p);
    const owner = ownerKey(p);
    if (owner) taskQueue.add(owner, laneOfTask(owner));
  });
  workflows.on((_type, w) => {
    wfQueue.add(keyOf(w));
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
    for (const w of workflows.list()) wfQueue.add(keyOf(w));
    for (const t of tasks.list()) taskQueue.add(keyOf(t), PRIORITY_ORDER[t.spec.priority]);
    const taskWorkers = runWorkers(taskQueue, cfg.workers, async (key) => {
      const t0 = performance.now();
      const lane = laneOfTask(key);
      try {
        const r = await tc.reconcile(key);
        taskQueue.forget(key);
        if (r.requeueAfterMs !== undefined) taskQueue.addAfter(key, r.requeueAfterMs, lane);
        reconciles.inc({ controller: "inferencetask", result: r.requeueAfterMs !== undefined ? "requeue" : "ok" });
      } catch (err) {
        reconciles.inc({ controller: "inferencetask", result: "error" });
        if (!isLeader()) return;
        log.warn(
          { task: key, err: errMessage(err), retries: taskQueue.retries(key) },
          "reconcile failed; retrying with backoff",
        );
        taskQueue.addRateLimited(key, lane);
      } finally {
        reconcileDuration.observe({ controller: "inferencetask" }, (performance.now() - t0) / 1000);
      }
    });
    const wfWorkers = runWorkers(wfQueue, 2, async (key) => {
      const t0 = performance.now();
      try {
        await wc.reconcile(key);
        wfQueue.forget(key);
        reconciles.inc({ controller: "aiworkflow", result: "ok" });
      } catch (err) {
        reconciles.inc({ controller: "aiworkflow", result: "error" });
        if (!isLeader()) return;
        log.warn({ workflow: key, err: errMessage(err) }, "workflow reconcile failed; retrying with backoff");
        wfQueue.addRateLimited(key);
      } finally {
        reconcileDuration.observe({ controller: "aiworkflow" }, (performance.now() - t0) / 1000);
      }
    });
    workersDone = Promise.all([taskWorkers, wfWorkers]).then(() => undefined);
    if (hooks.onLeading) await hooks.onLeading(() => [...workflows.list()].filter(isReady));
  };

  const lost = () => {
    leading = false;
    taskQueue.shutDown();
    wfQueue.shutDown();
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
      // stop intake, let in-flight reconciles finish, then give the lease back
      taskQueue.shutDown();
      wfQueue.shutDown();
      await workersDone;
      leading = false;
      await elector?.stop();
      clearInterval(phaseTimer);
      await Promise.all([workflows.stop(), tasks.stop(), jobs.stop(), pods.stop()]);
    },
  };
}
