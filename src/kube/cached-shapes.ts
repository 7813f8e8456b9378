// What the informers keep of each object (controller-runtime calls this a cache transform). A step's Job and pod repeat the whole pod template — the container with its env
// (RADFLOW_INPUTS carries earlier steps' outputs), volumes, tolerations, security context — and
// radflow reads none of it from the cache: it reads who the object is (metadata), whether the Job
// is suspended, and the status. Dropping the rest at the boundary is most of the memory a
// finished study costs the operator (bench/ scenario rss). Status is kept whole, so that a
// reconciler reading a status field it did not read before needs no change here; a spec field a
// reconciler starts to read must be added to the lists below (test/unit/kube/cached-shapes.test.ts).
import type { V1Job, V1ObjectMeta, V1Pod } from "@kubernetes/client-node";
import { InferenceTask } from "../api/v1alpha1/inferencetask.ts";

const META_FIELDS = [
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "labels",
  "annotations",
  "ownerReferences",
  "finalizers",
] as const;
const JOB_SPEC_FIELDS = [
  "suspend",
  "activeDeadlineSeconds",
  "backoffLimit",
  "completions",
  "parallelism",
  "managedBy",
] as const;
const POD_SPEC_FIELDS = ["nodeName", "priorityClassName", "schedulerName", "restartPolicy"] as const;

function pick<T extends object>(o: T | undefined, keys: readonly string[]): T | undefined {
  if (!o) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = (o as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out as T;
}

/** A Job as the cache keeps it: metadata, the spec fields listed above, the whole status. */
export function cachedJob(raw: unknown): V1Job {
  const j = raw as V1Job;
  return {
    apiVersion: j.apiVersion,
    kind: j.kind,
    metadata: pick<V1ObjectMeta>(j.metadata, META_FIELDS),
    spec: pick(j.spec, JOB_SPEC_FIELDS) as V1Job["spec"],
    status: j.status,
  };
}

/** A pod as the cache keeps it: metadata, the spec fields listed above, the whole status. */
export function cachedPod(raw: unknown): V1Pod {
  const p = raw as V1Pod;
  return {
    apiVersion: p.apiVersion,
    kind: p.kind,
    metadata: pick<V1ObjectMeta>(p.metadata, META_FIELDS),
    spec: pick(p.spec, POD_SPEC_FIELDS) as V1Pod["spec"],
    status: p.status,
  };
}

// A finished InferenceTask whose results went out is most of what the task cache holds (they stay
// until their TTL: 20,000 of them beside a few hundred in flight), and radflow reads little of it
// any more: the reconciler's terminal path (task-plan.ts) reads the phase, completionTime and
// resultsPublished, the TTL, the finalizers and deletionTimestamp; the work queue and metrics
// read priority, workflowRef and status. The steps snapshot (images, env, args), the study (with
// its PHI) and storage/export are read only while a task runs or publishes, and radflow never
// writes them back (status is written by status merge patch, finalizers by metadata merge patch),
// so they are dropped. Status stays whole: it is what a status patch is computed against. A task
// still in flight, or finished with results unpublished, is kept whole.
const SETTLED_SPEC_FIELDS = [
  "workflowRef",
  "priority",
  "queueTimeoutSeconds",
  "ttlSecondsAfterFinished",
  "kueue",
  "eventId",
  "eventSource",
  "eventTime",
  "cancel",
] as const;
const TERMINAL = new Set(["Succeeded", "Failed", "Canceled"]);

/** Marks a cached task whose spec was trimmed (see isTrimmedTask); own and enumerable, so spreads keep it. */
const TRIMMED = Symbol("radflow.trimmedTask");

/** Finished with results published: nothing will read its steps, study, storage or export again. */
export function isSettledTask(t: InferenceTask): boolean {
  return TERMINAL.has(t.status?.phase ?? "") && !!t.status?.resultsPublished;
}

/**
 * True when the cached copy lacks spec.steps, spec.study, spec.storage and spec.export. Code that
 * needs them for such a task reads the task from the API server.
 */
export function isTrimmedTask(t: InferenceTask): boolean {
  return (t as { [TRIMMED]?: boolean })[TRIMMED] === true;
}

/**
 * An InferenceTask as the cache keeps it: checked against the schema, whole while it runs or has
 * results to publish, and once settled only metadata (the fields listed above), the spec fields
 * listed above and the whole status. The trimmed task's `steps` is empty and its `study` absent.
 */
export function cachedTask(raw: unknown): InferenceTask {
  const t = InferenceTask.parse(raw);
  if (!isSettledTask(t)) return t;
  const spec = pick(t.spec, SETTLED_SPEC_FIELDS) as InferenceTask["spec"];
  spec.steps = [];
  return {
    apiVersion: t.apiVersion,
    kind: t.kind,
    metadata: pick(t.metadata, META_FIELDS) as InferenceTask["metadata"],
    spec,
    status: t.status,
    [TRIMMED]: true,
  } as InferenceTask;
}
