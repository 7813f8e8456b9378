// What the Job and Pod informers keep of each object (controller-runtime calls this a cache
// transform). A step's Job and pod repeat the whole pod template — the container with its env
// (RADFLOW_INPUTS carries earlier steps' outputs), volumes, tolerations, security context — and
// radflow reads none of it from the cache: it reads who the object is (metadata), whether the Job
// is suspended, and the status. Dropping the rest at the boundary is most of the memory a
// finished study costs the operator (bench/ scenario rss). Status is kept whole, so that a
// reconciler reading a status field it did not read before needs no change here; a spec field a
// reconciler starts to read must be added to the lists below (test/unit/kube/cached-shapes.test.ts).
import type { V1Job, V1ObjectMeta, V1Pod } from "@kubernetes/client-node";

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
