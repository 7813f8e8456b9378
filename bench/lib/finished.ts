// A finished single-step study as the cluster holds it once radflow is done with it: the
// InferenceTask (Succeeded, results published), its step's Job (Complete) and the Job's pod
// (Succeeded, termination message = the step's outputs). Made straight through the API so that
// tens of thousands of them exist in minutes: the Job carries `spec.managedBy`, which makes the
// Job controller leave it alone (no pod of its own), and the pod names a scheduler that does not
// exist, so neither the scheduler nor KWOK touches it. Their bytes are what the operator's caches
// hold: the Job is radflow's own (buildJob), the pod gets the labels, owner, defaults and status
// the Job controller, the API server and a kubelet would have given it.
import type { V1Job, V1Pod } from "@kubernetes/client-node";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { TASK_FINALIZER } from "../../src/api/v1alpha1/common.ts";
import { toStudyEvent } from "../../src/api/v1alpha1/events.ts";
import { InferenceTask, type InferenceTaskStatus } from "../../src/api/v1alpha1/inferencetask.ts";
import { OperatorConfig } from "../../src/config/operator-config.ts";
import { buildTask } from "../../src/ingest/route.ts";
import { buildJob } from "../../src/jobs/job-builder.ts";
import { mergePatch } from "../../src/kube/client.ts";
import type { Context } from "./context.ts";
import { GROUP, VERSION } from "./kube.ts";
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

/**
 * One finished study: task (with radflow's finalizer, as the operator leaves it), its status,
 * its Job and that Job's status, its pod and that pod's status — six requests.
 */
export async function createFinished(ctx: Context, wf: AIWorkflow, now: number): Promise<void> {
  const e = studyEvent(`${ctx.runId}-rss`, { bodyPart: "KNEE" });
  const parsed = toStudyEvent(e.body, new Date().toISOString());
  if (!parsed.ok) throw new Error(`bench study event does not parse: ${parsed.reason}`);
  const built = buildTask(wf, parsed.event);
  built.metadata.finalizers = [TASK_FINALIZER];
  const ns = built.metadata.namespace as string;
  const common = { group: GROUP, version: VERSION, namespace: ns, plural: "inferencetasks" };
  const task = InferenceTask.parse(await ctx.kube.custom.createNamespacedCustomObject({ ...common, body: built }));
  const step = task.spec.steps[0];
  if (!step) throw new Error("bench workflow has no step");
  const start = iso(now - 42_000);
  const end = iso(now - 30_000);
  const job = buildJob(task, step, {}, jobConfig);
  (job.spec as { managedBy?: string }).managedBy = PARKED_BY;
  const jobName = job.metadata?.name as string;
  await ctx.kube.custom.patchNamespacedCustomObjectStatus(
    { ...common, name: task.metadata.name as string, body: { status: taskStatus(jobName, start, end) } },
    mergePatch,
  );
  const made = await ctx.kube.batch.createNamespacedJob({ namespace: ns, body: job });
  await ctx.kube.batch.patchNamespacedJobStatus(
    { name: jobName, namespace: ns, body: { status: jobStatus(start, end) } },
    mergePatch,
  );
  const p = await ctx.kube.core.createNamespacedPod({ namespace: ns, body: pod(made) });
  const c = p.spec?.containers[0];
  await ctx.kube.core.patchNamespacedPodStatus(
    {
      name: p.metadata?.name as string,
      namespace: ns,
      body: { status: podStatus(c?.name ?? "model", c?.image ?? "", start, end) },
    },
    mergePatch,
  );
}
