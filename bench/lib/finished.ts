// A finished single-step study as the cluster holds it once radflow is done with it: the
// InferenceTask (Succeeded, results published), its step's Job (Complete) and the Job's pod
// (Succeeded, termination message = the step's outputs). Made straight through the API so that
// tens of thousands of them exist in minutes: the Job carries `spec.managedBy`, which makes the
// Job controller leave it alone (no pod of its own), and the pod names a scheduler that does not
// exist, so neither the scheduler nor KWOK touches it. Their bytes are what the operator's caches
// hold: the Job is radflow's own (buildJob), the pod gets the labels, owner, defaults and status
// the Job controller, the API server and a kubelet would have given it.
//
// Six writes per study is the floor (a create ignores `status` for all three kinds), and the API
// server's CPU is the limit, so the seeder spends as little CPU of its own as it can: plain JSON
// requests over one pooled connection set (not client-node's typed (de)serialisation, which cost
// ~10 ms of CPU per study, a fifth of the whole), and each study's writes as three short chains
// (task → status; Job → status; pod → status) started as soon as what they name exists.
// Seeding is resumable: it first lists what the namespace holds, finishes any study a stopped run
// left half made, and creates only the studies still missing.
import { HttpMethod, type KubeConfig, RequestContext, type V1Job, type V1Pod } from "@kubernetes/client-node";
import { fetch } from "undici";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { LABEL_WORKFLOW, TASK_FINALIZER } from "../../src/api/v1alpha1/common.ts";
import { toStudyEvent } from "../../src/api/v1alpha1/events.ts";
import { InferenceTask, type InferenceTaskStatus } from "../../src/api/v1alpha1/inferencetask.ts";
import { OperatorConfig } from "../../src/config/operator-config.ts";
import { buildTask } from "../../src/ingest/route.ts";
import { buildJob } from "../../src/jobs/job-builder.ts";
import type { Context } from "./context.ts";
import { GROUP, pool, VERSION } from "./kube.ts";
import { studyEvent } from "./studies.ts";

/** Parked Jobs: the Job controller does not sync a Job managed by another controller. */
export const PARKED_BY = "bench.radflow.io/parked";
const PARKED_SCHEDULER = "bench-parked";
const OUTPUTS = { finding: "negative", score: 0.07, model: "bench-1.0" };

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

function taskStatus(jobName: string, start: string, end: string): InferenceTaskStatus {
  return {
    observedGeneration: 1,
    phase: "Succeeded",
    currentStep: "infer",
    conditions: [
      {
        type: "Succeeded",
        status: "True",
        reason: "Succeeded",
        message: "1 step(s) succeeded, 0 skipped",
        lastTransitionTime: end,
        observedGeneration: 1,
      },
    ],
    steps: [
      {
        name: "infer",
        phase: "Succeeded",
        reason: "Completed",
        jobName,
        attempts: 1,
        startTime: start,
        completionTime: end,
        outputs: OUTPUTS,
      },
    ],
    startTime: start,
    completionTime: end,
    duration: "12s",
    resultsPublished: end,
  };
}

function jobStatus(start: string, end: string): NonNullable<V1Job["status"]> {
  const cond = (type: string, reason: string, message: string) => ({
    type,
    status: "True",
    reason,
    message,
    lastProbeTime: end as unknown as Date,
    lastTransitionTime: end as unknown as Date,
  });
  return {
    startTime: start as unknown as Date,
    completionTime: end as unknown as Date,
    succeeded: 1,
    ready: 0,
    terminating: 0,
    uncountedTerminatedPods: {},
    conditions: [
      cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
      cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
    ],
  };
}

function pod(job: V1Job): V1Pod {
  const name = job.metadata?.name as string;
  const uid = job.metadata?.uid as string;
  const tpl = job.spec?.template;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: `${name.slice(0, 57)}-${Math.random().toString(36).slice(2, 7).padEnd(5, "x")}`,
      namespace: job.metadata?.namespace,
      labels: {
        ...tpl?.metadata?.labels,
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
      },
      ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name, uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: { ...tpl?.spec, containers: tpl?.spec?.containers ?? [], schedulerName: PARKED_SCHEDULER },
  };
}

function podStatus(container: string, image: string, start: string, end: string): NonNullable<V1Pod["status"]> {
  const t = (s: string) => s as unknown as Date;
  const cond = (type: string, status: string, reason?: string) => ({
    type,
    status,
    ...(reason ? { reason } : {}),
    lastProbeTime: null as unknown as Date,
    lastTransitionTime: t(end),
  });
  const containerID = `kwok://${Math.random().toString(16).slice(2)}`;
  return {
    phase: "Succeeded",
    conditions: [
      cond("PodReadyToStartContainers", "False"),
      cond("Initialized", "True", "PodCompleted"),
      cond("Ready", "False", "PodCompleted"),
      cond("ContainersReady", "False", "PodCompleted"),
      cond("PodScheduled", "True"),
    ],
    hostIP: "10.0.0.1",
    hostIPs: [{ ip: "10.0.0.1" }],
    podIP: "10.0.7.42",
    podIPs: [{ ip: "10.0.7.42" }],
    startTime: t(start),
    qosClass: "BestEffort",
    containerStatuses: [
      {
        name: container,
        image,
        imageID: "",
        containerID,
        ready: false,
        started: false,
        restartCount: 0,
        state: {
          terminated: {
            exitCode: 0,
            reason: "Completed",
            message: JSON.stringify(OUTPUTS),
            startedAt: t(start),
            finishedAt: t(end),
            containerID,
          },
        },
      },
    ],
  };
}

/** Reads the workflow the finished tasks belong to. */
export async function readWorkflow(ctx: Context, ns: string, name: string): Promise<AIWorkflow> {
  return AIWorkflow.parse(
    await ctx.kube.custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: "aiworkflows",
      name,
    }),
  );
}

const jobConfig = OperatorConfig.parse({ identity: "bench" });

type Obj = { metadata?: { name?: string; uid?: string; labels?: Record<string, string> }; status?: unknown };

/** Plain JSON requests with the kubeconfig's TLS material and one pooled set of connections. */
class Api {
  private auth?: { headers: Record<string, string>; dispatcher: ReturnType<RequestContext["getDispatcher"]> };
  private readonly server: string;
  private readonly kc: KubeConfig;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error("no current cluster in the kubeconfig");
    this.server = server;
  }

  /**
   * 5xx, 429 and dropped connections are retried for up to two minutes: a loaded API server
   * sheds requests, and answers 429 "storage is (re)initializing" while a watch cache rebuilds.
   */
  async call<T = Obj>(
    method: HttpMethod,
    urlPath: string,
    body?: unknown,
    contentType = "application/json",
  ): Promise<T> {
    const deadline = Date.now() + 120_000;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once<T>(method, urlPath, body, contentType);
      } catch (e) {
        const code = (e as { code?: number }).code;
        const transient = code === undefined || code === 429 || code >= 500;
        if (!transient || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
  }

  private async once<T>(method: HttpMethod, urlPath: string, body: unknown, contentType: string): Promise<T> {
    const url = this.server + urlPath;
    if (!this.auth) {
      // client-certificate or token auth: the headers and the pooled dispatcher do not change
      // during a run, so they are made once
      const c = new RequestContext(url, method);
      await this.kc.applySecurityAuthentication(c);
      this.auth = { headers: c.getHeaders(), dispatcher: c.getDispatcher() };
    }
    const res = await fetch(url, {
      method,
      headers: { ...this.auth.headers, accept: "application/json", "content-type": contentType },
      body: body === undefined ? undefined : JSON.stringify(body),
      dispatcher: this.auth.dispatcher,
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    if (res.status >= 300)
      throw Object.assign(new Error(`${method} ${urlPath}: HTTP ${res.status} ${text.slice(0, 300)}`), {
        code: res.status,
      });
    return JSON.parse(text) as T;
  }

  /** Every item of a paged list. */
  async list<T = Obj>(urlPath: string, labelSelector?: string): Promise<T[]> {
    const out: T[] = [];
    let cont: string | undefined;
    do {
      const q = new URLSearchParams({ limit: "1000" });
      if (cont) q.set("continue", cont);
      if (labelSelector) q.set("labelSelector", labelSelector);
      const page = await this.call<{ items: T[]; metadata?: { continue?: string } }>(HttpMethod.GET, `${urlPath}?${q}`);
      out.push(...page.items);
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return out;
  }

  /** POST, or on 409 (an earlier attempt got through) the object as it is. */
  async create<T = Obj>(collection: string, body: Obj): Promise<T> {
    try {
      return await this.call<T>(HttpMethod.POST, collection, body);
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
      return this.call<T>(HttpMethod.GET, `${collection}/${body.metadata?.name}`);
    }
  }

  status(object: string, status: unknown): Promise<Obj> {
    return this.call(HttpMethod.PATCH, `${object}/status`, { status }, "application/merge-patch+json");
  }
}

const isComplete = (j: Obj | undefined) =>
  !!(j?.status as V1Job["status"])?.conditions?.some((c) => c.type === "Complete" && c.status === "True");
const podSucceeded = (p: Obj | undefined) => (p?.status as V1Pod["status"])?.phase === "Succeeded";
const taskSucceeded = (t: Obj | undefined) => (t?.status as InferenceTaskStatus | undefined)?.phase === "Succeeded";

export interface SeedResult {
  /** finished studies present before (complete or repaired) */
  found: number;
  /** of those, studies a stopped run had left half made, finished now */
  repaired: number;
  created: number;
  seconds: number;
  /** API writes made */
  writes: number;
}

/**
 * Makes `want` finished studies of workflow `wf` exist in `ns`: finishes half-made ones first,
 * then creates the rest, `concurrency` studies at a time. `progress` is called every ~10 s.
 */
export async function seedFinished(
  ctx: Context,
  wf: AIWorkflow,
  ns: string,
  want: number,
  o: { concurrency?: number; progress?: (done: number, total: number, perSecond: number) => void } = {},
): Promise<SeedResult> {
  const t0 = Date.now();
  const api = new Api(ctx.kube.kc);
  const tasksPath = `/apis/${GROUP}/${VERSION}/namespaces/${ns}/inferencetasks`;
  const jobsPath = `/apis/batch/v1/namespaces/${ns}/jobs`;
  const podsPath = `/api/v1/namespaces/${ns}/pods`;
  const wfName = wf.metadata.name as string;
  const end = iso(t0 - 30_000);
  const start = iso(t0 - 42_000);
  let writes = 0;
  const status = (object: string, s: unknown) => {
    writes++;
    return api.status(object, s);
  };
  const create = <T = Obj>(collection: string, body: Obj) => {
    writes++;
    return api.create<T>(collection, body);
  };

  // what a stopped run left: every task of the workflow, with its Job and pod when they exist
  const tasks = await api.list<InferenceTask>(tasksPath, `${LABEL_WORKFLOW}=${wfName}`);
  const jobs = new Map((await api.list(jobsPath, `${LABEL_WORKFLOW}=${wfName}`)).map((j) => [j.metadata?.name, j]));
  const pods = new Map<string, Obj>();
  for (const p of await api.list(podsPath, `${LABEL_WORKFLOW}=${wfName}`)) {
    const job = p.metadata?.labels?.["job-name"];
    if (job && (!pods.has(job) || podSucceeded(p))) pods.set(job, p);
  }

  /** Job (then pod) of a task that exists, each created or finished as needed. */
  const finishJob = async (jobName: string, built: V1Job) => {
    let job = jobs.get(jobName) as V1Job | undefined;
    job ??= await create<V1Job>(jobsPath, built as Obj);
    const jobDone = isComplete(job as Obj) ? undefined : status(`${jobsPath}/${jobName}`, jobStatus(start, end));
    let p = pods.get(jobName) as V1Pod | undefined;
    p ??= await create<V1Pod>(podsPath, pod(job) as Obj);
    const c = p.spec?.containers[0];
    if (!podSucceeded(p as Obj))
      await status(`${podsPath}/${p.metadata?.name}`, podStatus(c?.name ?? "model", c?.image ?? "", start, end));
    await jobDone;
  };

  const jobFor = (task: InferenceTask) => {
    const step = task.spec.steps[0];
    if (!step) throw new Error("bench workflow has no step");
    const job = buildJob(task, step, {}, jobConfig);
    (job.spec as { managedBy?: string }).managedBy = PARKED_BY;
    return { job, jobName: job.metadata?.name as string };
  };

  const finish = async (task: InferenceTask) => {
    const { job, jobName } = jobFor(task);
    await Promise.all([
      taskSucceeded(task as Obj)
        ? undefined
        : status(`${tasksPath}/${task.metadata.name}`, taskStatus(jobName, start, end)),
      finishJob(jobName, job),
    ]);
  };

  const halfMade = tasks.filter((t) => {
    const { jobName } = jobFor(t);
    return !taskSucceeded(t as Obj) || !isComplete(jobs.get(jobName)) || !podSucceeded(pods.get(jobName));
  });
  const missing = Math.max(0, want - tasks.length);
  const total = halfMade.length + missing;
  let done = 0;
  let lastReport = Date.now();
  const tick = () => {
    done++;
    if (o.progress && Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      o.progress(done, total, done / ((Date.now() - t0) / 1000));
    }
  };

  const work: (() => Promise<void>)[] = [
    ...halfMade.map((t) => () => finish(t)),
    ...Array.from({ length: missing }, () => async () => {
      const e = studyEvent(`${ctx.runId}-rss`, { bodyPart: "KNEE" });
      const parsed = toStudyEvent(e.body, new Date().toISOString());
      if (!parsed.ok) throw new Error(`bench study event does not parse: ${parsed.reason}`);
      const built = buildTask(wf, parsed.event);
      built.metadata.finalizers = [TASK_FINALIZER];
      // the server's copy: uid and defaults, which the Job's owner reference and buildJob need
      const task = InferenceTask.parse(await create(tasksPath, built as Obj));
      await finish(task);
    }),
  ];
  await pool(work, o.concurrency ?? 32, async (w) => {
    await w();
    tick();
  });
  return {
    found: tasks.length,
    repaired: halfMade.length,
    created: missing,
    seconds: (Date.now() - t0) / 1000,
    writes,
  };
}
