// The one-step workload the peers run, in radflow's own shape: the Job that radflow's buildJob
// makes for a single-step study of the benchmark's workflow (same labels, env, security context,
// deadline and pod-failure policy), built offline from a study event. The baseline creates these
// Jobs straight through the API; the Argo peer runs the same container as a one-template Workflow.
import { randomUUID } from "node:crypto";
import type { V1Container, V1Job } from "@kubernetes/client-node";
import { AIWorkflow } from "../../src/api/v1alpha1/aiworkflow.ts";
import { toStudyEvent } from "../../src/api/v1alpha1/events.ts";
import { OperatorConfig } from "../../src/config/operator-config.ts";
import { buildTask } from "../../src/ingest/route.ts";
import { buildJob } from "../../src/jobs/job-builder.ts";
import type { AIWorkflowSpecInput } from "./kube.ts";
import { studyEvent } from "./studies.ts";

const jobConfig = OperatorConfig.parse({ identity: "bench" });

/** Builds radflow-shaped Jobs for one workflow spec in one namespace. */
export class JobShape {
  private readonly wf: AIWorkflow;
  private readonly idPrefix: string;

  constructor(namespace: string, workflowName: string, spec: AIWorkflowSpecInput, idPrefix: string) {
    this.wf = AIWorkflow.parse({
      apiVersion: "radflow.io/v1alpha1",
      kind: "AIWorkflow",
      metadata: { name: workflowName, namespace, uid: randomUUID(), generation: 1 },
      spec,
    });
    this.idPrefix = idPrefix;
  }

  /**
   * The Job radflow would create for the next study, without its owner reference: there is no
   * InferenceTask here, and the garbage collector deletes a dependent whose owner does not exist.
   */
  next(): V1Job {
    const bodyPart = this.wf.spec.trigger.match?.bodyParts?.[0] ?? "HEAD";
    const e = studyEvent(this.idPrefix, { bodyPart });
    const parsed = toStudyEvent(e.body, new Date().toISOString());
    if (!parsed.ok) throw new Error(`bench study event does not parse: ${parsed.reason}`);
    const task = buildTask(this.wf, parsed.event);
    const step = task.spec.steps[0];
    if (!step) throw new Error("bench workflow has no step");
    const job = buildJob(task, step, {}, jobConfig);
    if (job.metadata) delete job.metadata.ownerReferences;
    return job;
  }
}

/**
 * The same step as an Argo Workflow: one container template running radflow's container (image,
 * args, env, resources, security context) under the Job's deadline, with the pod's security
 * context. Argo names the container `main` and adds its own init and wait containers.
 */
export function argoWorkflow(job: V1Job, name: string): Record<string, unknown> {
  const pod = job.spec?.template.spec;
  const c = pod?.containers[0] as V1Container;
  const { name: _name, ...container } = c;
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Workflow",
    metadata: { name, namespace: job.metadata?.namespace, labels: { "app.kubernetes.io/part-of": "radflow-bench" } },
    spec: {
      entrypoint: "infer",
      securityContext: pod?.securityContext,
      // the container mounts the Job's volumes (an emptyDir on /tmp under a read-only root)
      volumes: pod?.volumes,
      priorityClassName: pod?.priorityClassName,
      templates: [
        {
          name: "infer",
          activeDeadlineSeconds: job.spec?.activeDeadlineSeconds,
          metadata: { labels: job.spec?.template.metadata?.labels },
          container,
        },
      ],
    },
  };
}
