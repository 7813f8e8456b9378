// Builds the batch/v1 Job that runs one step of an InferenceTask (docs/ARCHITECTURE.md §3, "Jobs").
// Pure: the task, the step and the configuration in, a Job out. Names, labels and env carry
// workflow, task and step names only — never a UID, accession number or patient attribute.
import { createHash } from "node:crypto";
import type { V1EnvVar, V1Job, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import {
  type InferenceTask,
  LABEL_MANAGED_BY,
  LABEL_PRIORITY,
  LABEL_STEP,
  LABEL_TASK,
  LABEL_WORKFLOW,
  MANAGED_BY,
  type Step,
} from "../api/v1alpha1/index.ts";
import type { OperatorConfig } from "../config/operator-config.ts";
import { assertStorageAllowed } from "./trust.ts";

export const CONTAINER_NAME = "model";

export type JobConfig = Pick<OperatorConfig, "gpuResource" | "gpuProductLabel" | "gpuTolerations" | "priorityClasses">;

/** Characters of the task+step hash in a shortened Job name: 16 base-32 digits are 80 bits, so
 * even millions of long-named tasks in one namespace do not collide in practice (birthday bound
 * ~n²/2⁸¹). A 409 on create is still checked against the Job's owner (the reconciler). */
const HASH_CHARS = 16;
const BASE32 = "0123456789abcdefghijklmnopqrstuv"; // lowercase: a Job name is a DNS label

function hash32(s: string, chars: number): string {
  const bytes = createHash("sha256").update(s).digest();
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
    if (out.length >= chars) break;
  }
  return out;
}

/** Deterministic, ≤ 63 characters and a DNS label (the Job controller copies it into a label).
 * Short names are `<task>-<step>`; longer ones keep a task prefix, a hash of task and step, and
 * the whole step name (a step name is at most 40 characters). */
export function jobName(taskName: string, stepName: string): string {
  const full = `${taskName}-${stepName}`;
  if (full.length <= 63) return full;
  // "\n" cannot occur in either name: ("ab","c") and ("a","bc") hash differently
  const h = hash32(`${taskName}\n${stepName}`, HASH_CHARS);
  const room = 63 - stepName.length - h.length - 2;
  const prefix = taskName.slice(0, Math.max(0, room)).replace(/-+$/, "");
  return `${prefix ? `${prefix}-` : ""}${h}-${stepName}`.slice(0, 63);
}

function storage(task: InferenceTask, step: Step): { env: V1EnvVar[]; volumes: V1Volume[]; mounts: V1VolumeMount[] } {
  const env: V1EnvVar[] = [];
  const volumes: V1Volume[] = [{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }];
  const mounts: V1VolumeMount[] = [{ name: "tmp", mountPath: "/tmp" }];
  const s = task.spec.storage;
  const rel = (task.spec.study.location ?? "").replace(/^\/+/, "");
  const out = `results/${task.metadata.name}/${step.name}`;
  if (s?.pvc) {
    const base = s.mountPath ?? "/data";
    volumes.push({ name: "data", persistentVolumeClaim: { claimName: s.pvc.claimName } });
    mounts.push({ name: "data", mountPath: base, subPath: s.pvc.subPath });
    env.push({ name: "RADFLOW_STUDY_DIR", value: rel ? `${base}/${rel}` : base });
    env.push({ name: "RADFLOW_OUTPUT_DIR", value: `${base}/${out}` });
  } else if (s?.s3) {
    const base = s.s3.uri.replace(/\/+$/, "");
    env.push({ name: "RADFLOW_STUDY_URI", value: rel ? `${base}/${rel}` : base });
    env.push({ name: "RADFLOW_OUTPUT_URI", value: `${base}/${out}` });
  } else if (task.spec.study.location) {
    env.push({ name: "RADFLOW_STUDY_LOCATION", value: task.spec.study.location });
  }
  return { env, volumes, mounts };
}

/** Every attempt's run time, plus the longest queue wait, plus an hour of slack. */
export function activeDeadline(step: Step, queueTimeoutSeconds: number | undefined): number {
  const run = step.timeoutSeconds ?? 3600;
  return run * ((step.retries ?? 0) + 1) + (queueTimeoutSeconds ?? 0) + 3600;
}

export function buildJob(
  task: InferenceTask,
  step: Step,
  inputs: Record<string, Record<string, unknown>>,
  cfg: JobConfig,
): V1Job {
  // an InferenceTask may be created directly, past the workflow check: no Job for a Secret or
  // PVC the platform did not allow (docs/security.md)
  assertStorageAllowed(task);
  const name = jobName(task.metadata.name as string, step.name);
  const labels: Record<string, string> = {
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_TASK]: task.metadata.name as string,
    [LABEL_WORKFLOW]: task.spec.workflowRef.name,
    [LABEL_STEP]: step.name,
    [LABEL_PRIORITY]: task.spec.priority,
  };
  const kueue = task.spec.kueue?.queueName;
  if (kueue) labels["kueue.x-k8s.io/queue-name"] = kueue;
  const gpu = step.resources?.gpu ?? 1;
  const limits: Record<string, string> = {};
  const requests: Record<string, string> = {};
  if (gpu > 0) limits[cfg.gpuResource] = String(gpu);
  if (step.resources?.cpu) limits.cpu = requests.cpu = step.resources.cpu;
  if (step.resources?.memory) limits.memory = requests.memory = step.resources.memory;
  const nodeSelector: Record<string, string> = { ...(step.resources?.nodeSelector ?? {}) };
  if (step.resources?.gpuProduct) nodeSelector[cfg.gpuProductLabel] = step.resources.gpuProduct;
  const st = storage(task, step);
  const env: V1EnvVar[] = [
    { name: "RADFLOW_TASK", value: task.metadata.name as string },
    { name: "RADFLOW_WORKFLOW", value: task.spec.workflowRef.name },
    { name: "RADFLOW_STEP", value: step.name },
    { name: "RADFLOW_PRIORITY", value: task.spec.priority },
    // earlier steps' outputs (model results, no identifiers) for cascades
    { name: "RADFLOW_INPUTS", value: JSON.stringify(inputs) },
    ...st.env,
    ...(step.env ?? []).map((e) => ({ name: e.name, value: e.value })),
  ];
  const priorityClassName = cfg.priorityClasses[task.spec.priority];
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: task.metadata.namespace,
      labels,
      ownerReferences: [
        {
          apiVersion: "radflow.io/v1alpha1",
          kind: "InferenceTask",
          name: task.metadata.name as string,
          uid: task.metadata.uid as string,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      // Kueue admits a suspended Job by unsuspending it; radflow's own cap steps aside.
      suspend: kueue ? true : undefined,
      backoffLimit: step.retries ?? 0,
      // A backstop only: the operator enforces timeoutSeconds from the container's start, so a
      // wait for a GPU does not eat the model's run time. This bound holds if the operator is away.
      activeDeadlineSeconds: activeDeadline(step, task.spec.queueTimeoutSeconds),
      // Node loss, eviction and preemption are the infrastructure's fault: retry them without
      // spending the step's retries. Everything else counts (the model failed).
      podFailurePolicy: {
        rules: [{ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] }],
      },
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          priorityClassName,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          nodeSelector: Object.keys(nodeSelector).length ? nodeSelector : undefined,
          tolerations: gpu > 0 ? cfg.gpuTolerations : undefined,
          securityContext: {
            runAsNonRoot: true,
            seccompProfile: { type: "RuntimeDefault" },
          },
          volumes: st.volumes,
          containers: [
            {
              name: CONTAINER_NAME,
              image: step.image,
              command: step.command,
              args: step.args,
              env,
              // the whole allowed Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY…); a missing one
              // keeps the pod from starting rather than running the model without credentials
              envFrom: task.spec.storage?.s3?.secretName
                ? [{ secretRef: { name: task.spec.storage.s3.secretName, optional: false } }]
                : undefined,
              resources: {
                limits: Object.keys(limits).length ? limits : undefined,
                requests: Object.keys(requests).length ? requests : undefined,
              },
              volumeMounts: st.mounts,
              terminationMessagePath: "/dev/termination-log",
              terminationMessagePolicy: "File",
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
            },
          ],
        },
      },
    },
  };
}
