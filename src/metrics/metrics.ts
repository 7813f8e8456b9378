// Prometheus metrics (docs/ARCHITECTURE.md §6). Labels never carry a study, patient or accession
// value: only workflow names, priorities, phases, outcomes, verbs and codes.
import { readFileSync } from "node:fs";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
// Node's process metrics as radflow_process_cpu_seconds_total, radflow_nodejs_heap_size_used_bytes, …
collectDefaultMetrics({ register: registry, prefix: "radflow_" });

// 0.1 s .. 1 h: a STAT triage answers in seconds, a batch run may wait an hour.
export const CLINICAL_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];

export const studyEvents = new Counter({
  name: "radflow_study_events_total",
  help: "Study events received, by outcome (matched, unmatched, invalid, duplicate, retried).",
  labelNames: ["outcome"] as const,
  registers: [registry],
});
export const tasksCreated = new Counter({
  name: "radflow_tasks_created_total",
  help: "InferenceTasks created, by workflow and priority.",
  labelNames: ["workflow", "priority"] as const,
  registers: [registry],
});
export const tasksByPhase = new Gauge({
  name: "radflow_tasks",
  help: "InferenceTasks currently present, by phase.",
  labelNames: ["phase"] as const,
  registers: [registry],
});
export const tasksFinished = new Counter({
  name: "radflow_tasks_finished_total",
  help: "InferenceTasks that ended, by workflow, priority, phase and reason.",
  labelNames: ["workflow", "priority", "phase", "reason"] as const,
  registers: [registry],
});
export const queueWait = new Histogram({
  name: "radflow_queue_wait_seconds",
  help: "Time from task creation until its first step's pod was running (queue and GPU wait).",
  labelNames: ["workflow", "priority"] as const,
  buckets: CLINICAL_BUCKETS,
  registers: [registry],
});
export const gpuWait = new Histogram({
  name: "radflow_gpu_wait_seconds",
  help: "Time a step's pod spent unschedulable waiting for a GPU.",
  labelNames: ["workflow", "priority"] as const,
  buckets: CLINICAL_BUCKETS,
  registers: [registry],
});
export const waitingForGpu = new Gauge({
  name: "radflow_steps_waiting_for_gpu",
  help: "Steps whose pod is unschedulable for lack of a GPU, by priority.",
  labelNames: ["priority"] as const,
  registers: [registry],
});
export const oldestGpuWait = new Gauge({
  name: "radflow_gpu_wait_oldest_seconds",
  help: "How long the longest-waiting step of each priority has been unschedulable for lack of a GPU (0 when none waits).",
  labelNames: ["priority"] as const,
  registers: [registry],
});
// 1 min .. 3 days: a radiologist's review is minutes to hours, a weekend longer.
export const REVIEW_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200];
export const reviewWait = new Histogram({
  name: "radflow_review_wait_seconds",
  help: "Time a review step waited for its verdict, by workflow, priority and verdict (Accepted, Rejected, TimedOut).",
  labelNames: ["workflow", "priority", "verdict"] as const,
  buckets: REVIEW_BUCKETS,
  registers: [registry],
});
export const reviewsAwaiting = new Gauge({
  name: "radflow_reviews_awaiting",
  help: "Review steps waiting for a reviewer's verdict now, by priority.",
  labelNames: ["priority"] as const,
  registers: [registry],
});
export const oldestReviewWait = new Gauge({
  name: "radflow_review_wait_oldest_seconds",
  help: "How long the longest-waiting review step of each priority has waited for its verdict (0 when none waits).",
  labelNames: ["priority"] as const,
  registers: [registry],
});
export const stepDuration = new Histogram({
  name: "radflow_step_duration_seconds",
  help: "Step run time, from Job creation to its end, by workflow, priority, step and outcome.",
  labelNames: ["workflow", "priority", "step", "outcome"] as const,
  buckets: CLINICAL_BUCKETS,
  registers: [registry],
});
export const turnaround = new Histogram({
  name: "radflow_study_turnaround_seconds",
  help: "Study turnaround: event time to results published, by workflow and priority.",
  labelNames: ["workflow", "priority", "outcome"] as const,
  buckets: CLINICAL_BUCKETS,
  registers: [registry],
});
export const runningJobs = new Gauge({
  name: "radflow_running_jobs",
  help: "Step Jobs radflow currently counts against its GPU cap.",
  registers: [registry],
});
export const reconciles = new Counter({
  name: "radflow_reconcile_total",
  help: "Reconciles by controller and result (ok, requeue, error).",
  labelNames: ["controller", "result"] as const,
  registers: [registry],
});
export const reconcileDuration = new Histogram({
  name: "radflow_reconcile_duration_seconds",
  help: "Reconcile duration by controller.",
  labelNames: ["controller"] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
export const workQueueDepth = new Gauge({
  name: "radflow_workqueue_depth",
  help: "Keys waiting in a work queue.",
  labelNames: ["queue"] as const,
  registers: [registry],
});
export const workQueueLatency = new Histogram({
  name: "radflow_workqueue_latency_seconds",
  help: "Time a key waited in a work queue before a worker took it.",
  labelNames: ["queue"] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});
export const workQueueRetries = new Counter({
  name: "radflow_workqueue_retries_total",
  help: "Keys re-queued with backoff after an error.",
  labelNames: ["queue"] as const,
  registers: [registry],
});
export const apiRequests = new Counter({
  name: "radflow_kube_api_requests_total",
  help: "Kubernetes API requests made by the operator, by verb, resource and HTTP code.",
  labelNames: ["verb", "resource", "code"] as const,
  registers: [registry],
});
export const informerRestarts = new Counter({
  name: "radflow_informer_restarts_total",
  help: "Informer watch restarts after an error or a stall, by resource.",
  labelNames: ["resource"] as const,
  registers: [registry],
});
export const natsPending = new Gauge({
  name: "radflow_nats_consumer_pending",
  help: "Messages in the study stream not yet delivered to radflow's consumer (consumer lag).",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
export const natsAckPending = new Gauge({
  name: "radflow_nats_consumer_ack_pending",
  help: "Messages delivered to radflow and not yet acknowledged.",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
export const natsRedeliveries = new Counter({
  name: "radflow_nats_redeliveries_total",
  help: "Study messages that arrived again after an earlier delivery.",
  labelNames: ["consumer"] as const,
  registers: [registry],
});
export const dlqRecords = new Counter({
  name: "radflow_dlq_records_total",
  help: "Records written to the dead-letter subject, by reason code.",
  labelNames: ["reason"] as const,
  registers: [registry],
});
export const resultsPublished = new Counter({
  name: "radflow_results_published_total",
  help: "Results events published, by outcome and kind (native, monai-export).",
  labelNames: ["outcome", "kind"] as const,
  registers: [registry],
});
export const auditRecords = new Counter({
  name: "radflow_audit_records_total",
  help: "Audit records by sink and outcome. nats: published, duplicate, failed. syslog: spooled, duplicate, failed (not spooled), sent (written to the repository), retry (a send attempt failed; the record stays spooled).",
  labelNames: ["sink", "outcome"] as const,
  registers: [registry],
});
export const auditBacklog = new Gauge({
  name: "radflow_audit_backlog",
  help: "Audit records spooled and not yet delivered, by sink.",
  labelNames: ["sink"] as const,
  registers: [registry],
});
export const buildInfo = new Gauge({
  name: "radflow_build_info",
  help: "Always 1; labels say which radflow and Node.js run.",
  labelNames: ["version", "node"] as const,
  registers: [registry],
});
buildInfo.set({ version: radflowVersion(), node: process.versions.node }, 1);

function radflowVersion(): string {
  try {
    // src/metrics/ and dist/metrics/ are both two levels below package.json
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}
export const leader = new Gauge({
  name: "radflow_leader",
  help: "1 when this replica holds the leader lease.",
  registers: [registry],
});
