// The peers' workload is radflow's own: the baseline's Job is buildJob's output for a one-step
// study (less the owner reference to a task that does not exist), and the Argo Workflow runs the
// same container; Argo's own writes are read from its request counter.
import { describe, expect, it } from "vitest";
import { parseMetrics } from "../../../bench/lib/prom.ts";
import { argoWorkflow, JobShape } from "../../../bench/lib/shape.ts";
import { argoOwnWrites } from "../../../bench/scenarios/argo.ts";
import { singleStep } from "../../../bench/scenarios/common.ts";

describe("JobShape", () => {
  const shape = new JobShape("bench-x-baseline", "bench-baseline", singleStep("HEAD"), "test");

  it("is radflow's Job for a one-step study, without an owner", () => {
    const a = shape.next();
    const b = shape.next();
    expect(a.metadata?.name).not.toBe(b.metadata?.name);
    expect(a.metadata?.ownerReferences).toBeUndefined();
    expect(a.metadata?.namespace).toBe("bench-x-baseline");
    expect(a.metadata?.labels).toMatchObject({
      "app.kubernetes.io/managed-by": "radflow",
      "radflow.io/workflow": "bench-baseline",
      "radflow.io/step": "infer",
    });
    const c = a.spec?.template.spec?.containers[0];
    expect(c?.image).toBe("registry.example.org/radflow-bench/model:1");
    expect(c?.env?.map((e) => e.name)).toContain("RADFLOW_TASK");
    expect(a.spec?.podFailurePolicy).toBeDefined();
    // gpu 0: no GPU limit, so it runs on the CPU node like radflow's benchmark Jobs
    expect(c?.resources?.limits).toBeUndefined();
  });

  it("runs the same container as an Argo Workflow, under the Job's deadline", () => {
    const job = shape.next();
    const wf = argoWorkflow(job, "bench-argo-0") as {
      metadata: { name: string; namespace: string };
      spec: { entrypoint: string; templates: { name: string; activeDeadlineSeconds: number; container: object }[] };
    };
    const { name: _n, ...container } = job.spec?.template.spec?.containers[0] ?? {};
    expect(wf.metadata).toMatchObject({ name: "bench-argo-0", namespace: "bench-x-baseline" });
    expect(wf.spec.entrypoint).toBe("infer");
    // Argo refuses a container that mounts a volume the workflow does not declare
    expect((wf.spec as { volumes?: unknown }).volumes).toEqual(job.spec?.template.spec?.volumes);
    expect(wf.spec.templates[0]).toMatchObject({
      name: "infer",
      activeDeadlineSeconds: job.spec?.activeDeadlineSeconds,
      container,
    });
  });
});

describe("argoOwnWrites", () => {
  it("counts the controller's writes by verb and kind, per workflow", () => {
    const before = parseMetrics(
      [
        'argo_workflows_k8s_request_total{request_kind="pods",request_verb="Create",status_code="201"} 1',
        'argo_workflows_k8s_request_total{request_kind="workflows",request_verb="Update",status_code="200"} 2',
      ].join("\n"),
    );
    const after = parseMetrics(
      [
        'argo_workflows_k8s_request_total{request_kind="pods",request_verb="Create",status_code="201"} 11',
        'argo_workflows_k8s_request_total{request_kind="workflows",request_verb="Update",status_code="200"} 32',
        'argo_workflows_k8s_request_total{request_kind="workflows",request_verb="Update",status_code="409"} 5',
        'argo_workflows_k8s_request_total{request_kind="pods",request_verb="List",status_code="200"} 50',
        'argo_workflows_k8s_request_total{request_kind="events",request_verb="Create",status_code="201"} 20',
      ].join("\n"),
    );
    expect(argoOwnWrites(before, after, 10)).toEqual({
      total: 65,
      perStudy: 6.5,
      breakdown: { "update workflows": 3.5, "create events": 2, "create pods": 1 },
    });
  });
});
