// The planner's contract: what it is shown (a task, its Jobs and pods as the informers see them,
// the clock, the dispatcher's answer) and what it answers (status and the writes that get there).
import type { InferenceTask, InferenceTaskStatus, Step } from "../../api/v1alpha1/index.ts";
import type { AuditEventKind, AuditOutcome } from "../../audit/facts.ts";

/** What the Job informer tells about a step's Job. */
export interface JobView {
  name: string;
  step: string;
  active: number;
  succeeded: number;
  failed: number;
  suspended: boolean;
  deleting: boolean;
  /** when the Job was created (RFC 3339) */
  created?: string;
  complete?: { reason?: string; message?: string; at?: string };
  failedCondition?: { reason?: string; message?: string };
}

/** What the Pod informer tells about a step's pods. */
export interface PodView {
  name: string;
  step: string;
  phase: string; // Pending | Running | Succeeded | Failed | Unknown
  created: string;
  unschedulable?: string; // the scheduler's message
  /** when the model container started running (RFC 3339) */
  runningSince?: string;
  /** when the scheduler bound the pod to a node (RFC 3339): the kubelet's clock to start it runs from here */
  scheduledAt?: string;
  /** why the kubelet has not started the model container (ImagePullBackOff…) */
  waiting?: { reason: string; message?: string };
  terminated?: { exitCode: number; reason?: string; message?: string };
}

export interface PlanInput {
  task: InferenceTask;
  jobs: JobView[];
  pods: PodView[];
  now: number;
  /** how many new step Jobs this task may start now (the dispatcher's answer) */
  capacity: number;
  /** the extended resource that GPUs are (nvidia.com/gpu) */
  gpuResource?: string;
  /** results must be published before a finished task may be deleted by its TTL */
  resultsRequired?: boolean;
  terminationMessageMaxBytes?: number;
  /** how long a scheduled pod may fail to start its container (image pull, config) before the step fails */
  startTimeoutSeconds?: number;
  /** a finished task's TTL when its workflow sets none; undefined or 0: kept */
  defaultTtlSeconds?: number;
  /** steps whose Job name is held by an object that is not this task's Job (step → what holds it) */
  jobConflicts?: Record<string, string>;
  /** steps whose Job create the API server refused (step → why, no PHI; permanent: it never will accept it) */
  jobCreateFailures?: Record<string, { message: string; permanent: boolean }>;
  /** why the task's storage may not be used (src/jobs/trust.ts): a step that would start fails instead */
  storageRefusal?: string;
}

export interface PlannedEvent {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

export interface PlannedAudit {
  kind: AuditEventKind;
  outcome: AuditOutcome;
  step?: string;
  reason?: string;
  description?: string;
}

/** A Job to create: the step and its dependencies' outputs (its inputs). */
export interface PlannedJob {
  step: Step;
  inputs: Record<string, Record<string, unknown>>;
}

export interface Plan {
  status: InferenceTaskStatus;
  create: PlannedJob[];
  deleteJobs: string[];
  /** steps that are ready but were not admitted (capacity 0) */
  waitingForCapacity: boolean;
  requeueAfterMs?: number;
  events: PlannedEvent[];
  audits: PlannedAudit[];
  addFinalizer: boolean;
  removeFinalizer: boolean;
  deleteTask: boolean;
  publishResults: boolean;
  /** a complete Job's pod is missing from the cache: plan again with pods read from the API server */
  needsLivePods?: boolean;
}
