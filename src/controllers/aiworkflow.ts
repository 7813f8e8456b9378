// The AIWorkflow reconciler checks what the CRD schema cannot — CEL compiles and stays within
// its cost budget, the step graph is acyclic, images are named, the description pattern is valid
// RE2 — and sets Ready True/False with a reason and a message naming the step. A workflow that is
// not Ready starts nothing: ingest routes only to Ready workflows.
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import {
  type AIWorkflow,
  type AIWorkflowStatus,
  type Condition,
  GROUP,
  VERSION,
  workflowNameProblem,
} from "../api/v1alpha1/index.ts";
import type { AuditSink } from "../audit/facts.ts";
import { checkExpression, type ExprProblem } from "../expr/cel.ts";
import { checkPattern } from "../expr/pattern.ts";
import { workflowStorageVerdict } from "../jobs/trust.ts";
import { apiClient, isNotFound, mergePatch } from "../kube/client.ts";
import type { Recorder } from "../kube/events.ts";
import type { Cache } from "../kube/informer.ts";
import { sameJson } from "./task-plan.ts";

export interface Verdict {
  ok: boolean;
  reason: string;
  message: string;
}

/** Pure validation of a workflow's spec beyond the schema. */
export function validateWorkflow(wf: AIWorkflow): Verdict {
  const name = `AIWorkflow ${wf.metadata.namespace}/${wf.metadata.name}`;
  const storage = workflowStorageVerdict(wf); // only Secrets/PVCs the platform allowed (src/jobs/trust.ts)
  if (storage) return storage;
  // admission refuses such names (the CRD rule); this catches objects stored before that rule
  const badName = workflowNameProblem(wf.metadata.name);
  if (badName) return { ok: false, reason: "InvalidName", message: `${name}: ${badName}` };
  const t = wf.spec.trigger;
  if (t.expression) {
    const p = checkExpression(t.expression);
    if (p) return expressionVerdict(p, "InvalidExpression", `${name}: trigger.expression`);
  }
  if (t.match?.seriesDescriptionPattern !== undefined) {
    const err = checkPattern(t.match.seriesDescriptionPattern);
    if (err)
      return {
        ok: false,
        reason: "InvalidPattern",
        message: `${name}: trigger.match.seriesDescriptionPattern is ${err}`,
      };
  }
  const names = new Set(wf.spec.steps.map((s) => s.name));
  for (const s of wf.spec.steps) {
    // a review step has no image (src/controllers/review.ts)
    if (s.image !== undefined && (!/^[a-z0-9]([a-z0-9._/:@-]*[a-zA-Z0-9_])?$/i.test(s.image) || /\s/.test(s.image))) {
      return {
        ok: false,
        reason: "InvalidImage",
        message: `${name}: step '${s.name}': image '${s.image}' is not an image reference`,
      };
    }
    for (const d of s.dependsOn ?? []) {
      if (!names.has(d))
        return {
          ok: false,
          reason: "UnknownDependency",
          message: `${name}: step '${s.name}': dependsOn names unknown step '${d}'`,
        };
    }
    if (s.when) {
      const p = checkExpression(s.when);
      if (p) return expressionVerdict(p, "InvalidCondition", `${name}: step '${s.name}': \`when\``);
      // a condition may only read steps this one depends on (transitively): others have not run
      const upstream = ancestors(wf, s.name);
      for (const m of s.when.matchAll(/steps\.([a-z0-9-]+)/g)) {
        const ref = m[1] as string;
        if (!upstream.has(ref)) {
          return {
            ok: false,
            reason: "InvalidCondition",
            message: `${name}: step '${s.name}': \`when\` reads steps.${ref}, which is not among its dependencies`,
          };
        }
      }
    }
  }
  const cycle = findCycle(wf);
  if (cycle)
    return { ok: false, reason: "CyclicDependencies", message: `${name}: steps form a cycle: ${cycle.join(" -> ")}` };
  return { ok: true, reason: "Valid", message: `${wf.spec.steps.length} step(s); accepting studies` };
}

// A CEL problem as a verdict: one that does not compile keeps its field's reason; one whose
// worst-case cost is over the budget is ExpressionTooExpensive (it could stall the operator).
function expressionVerdict(p: ExprProblem, syntaxReason: string, what: string): Verdict {
  return p.kind === "cost"
    ? { ok: false, reason: "ExpressionTooExpensive", message: `${what} may cost too much: ${p.message}` }
    : { ok: false, reason: syntaxReason, message: `${what} does not compile: ${p.message}` };
}

function ancestors(wf: AIWorkflow, step: string): Set<string> {
  const deps = new Map(wf.spec.steps.map((s) => [s.name, s.dependsOn ?? []]));
  const out = new Set<string>();
  const stack = [...(deps.get(step) ?? [])];
  while (stack.length) {
    const d = stack.pop() as string;
    if (out.has(d)) continue;
    out.add(d);
    stack.push(...(deps.get(d) ?? []));
  }
  return out;
}

function findCycle(wf: AIWorkflow): string[] | undefined {
  const deps = new Map(wf.spec.steps.map((s) => [s.name, s.dependsOn ?? []]));
  const state = new Map<string, 1 | 2>();
  const path: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 2) return undefined;
    if (state.get(n) === 1) return [...path.slice(path.indexOf(n)), n];
    state.set(n, 1);
    path.push(n);
    for (const d of deps.get(n) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    path.pop();
    state.set(n, 2);
    return undefined;
  };
  for (const n of deps.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

export class WorkflowController {
  private readonly custom: CustomObjectsApi;
  private readonly workflows: Cache<AIWorkflow>;
  private readonly recorder: Recorder;
  private readonly audit: AuditSink;
  private readonly isLeader: () => boolean;
  private readonly seenGeneration = new Map<string, number>();

  constructor(
    kc: KubeConfig,
    workflows: Cache<AIWorkflow>,
    recorder: Recorder,
    audit: AuditSink,
    isLeader: () => boolean,
  ) {
    this.custom = apiClient(kc, CustomObjectsApi);
    this.workflows = workflows;
    this.recorder = recorder;
    this.audit = audit;
    this.isLeader = isLeader;
  }

  async reconcile(key: string): Promise<void> {
    const wf = this.workflows.get(key);
    if (!wf) {
      if (this.seenGeneration.delete(key)) await this.auditWorkflow(key, "WorkflowDeleted");
      return;
    }
    const v = validateWorkflow(wf);
    const prev = wf.status?.conditions?.find((c) => c.type === "Ready");
    const now = new Date().toISOString();
    const status = v.ok ? "True" : "False";
    const ready: Condition = {
      type: "Ready",
      status,
      reason: v.reason,
      message: v.message.slice(0, 1024),
      lastTransitionTime: prev && prev.status === status ? prev.lastTransitionTime : now,
      observedGeneration: wf.metadata.generation,
    };
    const next: AIWorkflowStatus = {
      observedGeneration: wf.metadata.generation,
      conditions: [ready],
      stepCount: wf.spec.steps.length,
    };
    const seen = this.seenGeneration.get(key);
    if (seen !== wf.metadata.generation) {
      this.seenGeneration.set(key, wf.metadata.generation ?? 0);
      // the first sight after a restart is not a change: audit only generations beyond what status recorded
      if (seen !== undefined || wf.status?.observedGeneration !== wf.metadata.generation) {
        await this.auditWorkflow(
          key,
          wf.status?.observedGeneration === undefined ? "WorkflowCreated" : "WorkflowChanged",
        );
      }
    }
    if (sameJson(next, wf.status ?? {})) return;
    if (!this.isLeader()) throw new Error("not the leader any more: stopping writes");
    try {
      await this.custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace: wf.metadata.namespace as string,
          plural: "aiworkflows",
          name: wf.metadata.name as string,
          body: { status: next },
        },
        mergePatch,
      );
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (prev?.status !== status) {
      this.recorder.event(
        {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: "AIWorkflow",
          namespace: wf.metadata.namespace as string,
          name: wf.metadata.name as string,
          uid: wf.metadata.uid,
        },
        v.ok ? "Normal" : "Warning",
        v.ok ? "Ready" : v.reason,
        v.message,
      );
    }
  }

  private async auditWorkflow(
    key: string,
    kind: "WorkflowCreated" | "WorkflowChanged" | "WorkflowDeleted",
  ): Promise<void> {
    const [namespace, name] = key.split("/");
    const wf = this.workflows.get(key);
    await this.audit.record({
      id: `${wf?.metadata.uid ?? key}:${kind}:${wf?.metadata.generation ?? ""}`,
      kind,
      time: new Date().toISOString(),
      outcome: "success",
      namespace,
      workflow: name,
    });
  }
}
