// The results controller: a finished InferenceTask without status.resultsPublished gets its
// results published on JetStream (src/ingest/results.ts builds the messages) and is then stamped.
// It owns that one status field; the steps controller never writes it. Before publishing, the
// task's audit facts are recorded (the trail reads StepFinished, TaskSucceeded, then
// ResultsPublished), and the stamp says both are out — the task audit controller leaves a stamped
// task alone. A crash between publish and stamp publishes again under the same Nats-Msg-Ids
// (the stream drops the repeat); NATS being away fails the reconcile, which backs off and tries
// again, while the steps controller goes on creating Jobs.

import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { type AIWorkflow, GROUP, type InferenceTask, VERSION } from "../api/v1alpha1/index.ts";
import type { AuditSink } from "../audit/facts.ts";
import { publishResults } from "../ingest/results.ts";
import { apiClient, isNotFound, mergePatch } from "../kube/client.ts";
import type { Result } from "../kube/controller.ts";
import type { Cache } from "../kube/informer.ts";
import type { TaskAuditor } from "./task-audit.ts";
import { isTerminal } from "./task-plan.ts";

export interface ResultsControllerDeps {
  kc: KubeConfig;
  js: JetStreamClient;
  tasks: Cache<InferenceTask>;
  workflows: Cache<AIWorkflow>;
  audit: AuditSink;
  /** records the task's lifecycle facts before its results go out */
  auditor?: TaskAuditor;
  /** publish MONAI ExportRequestEvents too */
  monaiExport: boolean;
  isLeader: () => boolean;
  now?: () => number;
}

/** A task the results controller has work for: finished, not stamped, not being deleted. */
export function needsResults(task: InferenceTask): boolean {
  return isTerminal(task.status?.phase) && !task.status?.resultsPublished && !task.metadata.deletionTimestamp;
}

export class ResultsController {
  private readonly d: ResultsControllerDeps;
  private readonly custom: CustomObjectsApi;
  private readonly now: () => number;

  constructor(d: ResultsControllerDeps) {
    this.d = d;
    this.custom = apiClient(d.kc, CustomObjectsApi);
    this.now = d.now ?? Date.now;
  }

  async reconcile(key: string): Promise<Result> {
    const task = this.d.tasks.get(key);
    if (!task || !needsResults(task)) return {};
    await this.d.auditor?.flush(key, task);
    const workflow = this.d.workflows.get(`${task.metadata.namespace}/${task.spec.workflowRef.name}`);
    if (!this.d.isLeader()) throw new Error("not the leader any more: stopping writes");
    // ResultsPublished is recorded once JetStream has every message
    await publishResults(this.d.js, task, { workflow, monaiExport: this.d.monaiExport, audit: this.d.audit });
    const at = new Date(this.now()).toISOString();
    if (!this.d.isLeader()) throw new Error("not the leader any more: stopping writes");
    try {
      await this.custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace: task.metadata.namespace as string,
          plural: "inferencetasks",
          name: task.metadata.name as string,
          // the version we published from: a task made again under the name is not stamped by mistake
          body: { metadata: { resourceVersion: task.metadata.resourceVersion }, status: { resultsPublished: at } },
        },
        mergePatch,
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return {};
  }
}
