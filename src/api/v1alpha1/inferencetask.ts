// InferenceTask: one study through one workflow (docs/ARCHITECTURE.md §3).
import { z } from "zod";
import { AIWorkflowSpec, Steps } from "./aiworkflow.ts";
import { Condition, DnsLabel, keyedList, ObjectMeta, Priority } from "./common.ts";
import { Study } from "./study.ts";

export const TaskPhase = z
  .enum(["Pending", "Running", "Succeeded", "Failed", "Canceled"])
  .describe("Pending: waiting to start or for a GPU; Running; Succeeded; Failed; Canceled.");
export type TaskPhase = z.infer<typeof TaskPhase>;

export const StepPhase = z
  .enum(["Pending", "WaitingForGPU", "Running", "Succeeded", "Failed", "Skipped", "Canceled"])
  .describe(
    "Pending, WaitingForGPU (pod unschedulable), Running, Succeeded, Failed, Skipped (its `when` was false) or Canceled.",
  );
export type StepPhase = z.infer<typeof StepPhase>;

export const StepStatus = z
  .object({
    name: DnsLabel(40).describe("Name of the step."),
    phase: StepPhase,
    jobName: z.string().max(63).optional().describe("The Job running the step."),
    attempts: z.number().int().min(0).optional().describe("Pods the Job has started for the step."),
    startTime: z.string().optional().describe("When the step's Job was created.").meta({ format: "date-time" }),
    completionTime: z.string().optional().describe("When the step ended.").meta({ format: "date-time" }),
    outputs: z
      .record(z.string(), z.unknown())
      .optional()
      .describe(
        "The JSON object the model wrote to its termination message (at most 4 KiB); later steps' `when` reads it.",
      )
      .meta({ "x-kubernetes-preserve-unknown-fields": true }),
    reason: z
      .string()
      .max(256)
      .optional()
      .describe(
        "Machine-readable reason for the phase, e.g. BackoffLimitExceeded, ImagePullBackOff, JobNameConflict, OutputsLost, MissingOutput, AwaitingReview, Accepted, Rejected, ReviewTimeout.",
      ),
    message: z.string().max(4096).optional().describe("Human-readable detail."),
    review: z
      .object({
        requestedAt: z.string().describe("When the step began to wait for a verdict.").meta({ format: "date-time" }),
        deadline: z
          .string()
          .describe("When the review times out (review.timeoutSeconds after requestedAt).")
          .meta({ format: "date-time" }),
        verdict: z
          .enum(["Accepted", "Rejected", "TimedOut"])
          .optional()
          .describe("The verdict: Accepted, Rejected, or TimedOut when none came in time."),
        reviewer: z
          .string()
          .max(256)
          .optional()
          .describe("Who gave the verdict: the Kubernetes user name of the reviewer."),
        reviewedAt: z.string().optional().describe("When the reviewer gave the verdict.").meta({ format: "date-time" }),
      })
      .optional()
      .describe("A review step's state: when it waited, until when, and who decided what, when."),
  })
  .describe("What happened to one step.");
export type StepStatus = z.infer<typeof StepStatus>;

export const ExportPhase = z
  .enum(["Pending", "Sent", "Failed", "Skipped"])
  .describe(
    "Pending (being sent, or retrying after an error), Sent (the destination stored every instance), Failed (given up; see reason), Skipped (its `when` was false, or the step did not run).",
  );
export type ExportPhase = z.infer<typeof ExportPhase>;

export const ExportStatus = z
  .object({
    step: DnsLabel(40).describe("The step whose results are sent."),
    destination: DnsLabel(253).describe("The DICOMDestination."),
    phase: ExportPhase,
    reason: z
      .string()
      .max(256)
      .optional()
      .describe(
        "Machine-readable reason, e.g. WhenFalse, StepSkipped, ConditionError, DestinationNotFound, NothingToSend, SendFailed.",
      ),
    message: z.string().max(1024).optional().describe("Human-readable detail (no PHI)."),
    attempts: z.number().int().min(0).optional().describe("Send attempts so far."),
    instances: z.number().int().min(0).optional().describe("DICOM instances sent (or to send)."),
    lastAttemptTime: z.string().optional().describe("When the last attempt ended.").meta({ format: "date-time" }),
  })
  .describe("What happened to one export of one step's results to one destination.");
export type ExportStatus = z.infer<typeof ExportStatus>;

/** A reviewer's verdict on a review step, written by `radflow review accept|reject`. */
export const ReviewVerdict = z
  .object({
    step: DnsLabel(40).describe("The review step the verdict is for."),
    verdict: z.enum(["Accepted", "Rejected"]).describe("Accepted or Rejected."),
    reviewer: z
      .string()
      .min(1)
      .max(256)
      .describe("The reviewer's Kubernetes user name (radflow review asks the API server: SelfSubjectReview)."),
    time: z.string().max(64).describe("When the verdict was given (RFC 3339).").meta({ format: "date-time" }),
    reason: z
      .string()
      .max(1024)
      .optional()
      .describe(
        "The reviewer's note. It stays here and goes to the audit trail, never to status messages, Events, logs or metrics; write no patient identifiers.",
      ),
  })
  .describe("A verdict on a clinical review step; once given it cannot be changed or withdrawn.");
export type ReviewVerdict = z.infer<typeof ReviewVerdict>;

const REVIEW_FOR_REVIEW_STEP = "every review must name a review step of this task";
const REVIEW_FINAL = "a review verdict, once given, cannot be changed or withdrawn";

export const InferenceTaskSpec = z
  .object({
    workflowRef: z
      .object({
        name: DnsLabel(63).describe("Name of the AIWorkflow."),
        uid: z.string().max(64).describe("UID of the AIWorkflow when the task was created."),
        generation: z.number().int().min(0).describe("Generation of the AIWorkflow whose steps were copied."),
      })
      .describe("The AIWorkflow this task runs."),
    priority: Priority,
    steps: Steps.describe(
      "Snapshot of the workflow's steps when the task was created; later workflow edits do not change a running task.",
    ),
    queueTimeoutSeconds: AIWorkflowSpec.shape.queueTimeoutSeconds,
    ttlSecondsAfterFinished: AIWorkflowSpec.shape.ttlSecondsAfterFinished,
    storage: AIWorkflowSpec.shape.storage,
    export: AIWorkflowSpec.shape.export,
    kueue: AIWorkflowSpec.shape.kueue,
    study: Study,
    eventId: z.string().min(1).max(256).describe("ID of the study event (the idempotency key)."),
    eventSource: z.string().max(1024).optional().describe("Source of the study event; with eventId, its identity."),
    eventTime: z
      .string()
      .optional()
      .describe("When the study event was produced; turnaround is measured from here.")
      .meta({ format: "date-time" }),
    cancel: z
      .boolean()
      .default(false)
      .describe("Set to true to cancel the task: its Jobs are removed and it ends Canceled."),
    reviews: keyedList(z.array(ReviewVerdict).max(32), "step")
      .optional()
      .describe("Reviewers' verdicts on the task's review steps, one per step (`radflow review` writes them)."),
  })
  .describe("InferenceTaskSpec: one study through one workflow.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "!has(self.reviews) || self.reviews.all(r, self.steps.exists(s, s.name == r.step && has(s.review)))",
        message: REVIEW_FOR_REVIEW_STEP,
        fieldPath: ".reviews",
        reason: "FieldValueInvalid",
      },
      {
        rule: "!has(oldSelf.reviews) || (has(self.reviews) && oldSelf.reviews.all(o, o in self.reviews))",
        message: REVIEW_FINAL,
        fieldPath: ".reviews",
        reason: "FieldValueForbidden",
      },
    ],
  })
  // the first rule for in-process parsing (the second compares with the stored object: the API server's)
  .superRefine((spec, ctx) => {
    const reviewSteps = new Set(spec.steps.filter((s) => s.review !== undefined).map((s) => s.name));
    spec.reviews?.forEach((r, i) => {
      if (!reviewSteps.has(r.step))
        ctx.addIssue({
          code: "custom",
          path: ["reviews", i, "step"],
          message: `${REVIEW_FOR_REVIEW_STEP} ("${r.step}" is not)`,
        });
    });
  });
export type InferenceTaskSpec = z.infer<typeof InferenceTaskSpec>;

export const InferenceTaskStatus = z
  .object({
    observedGeneration: z.number().int().optional().describe("The .metadata.generation this status describes."),
    phase: TaskPhase.optional(),
    currentStep: z
      .string()
      .max(256)
      .optional()
      .describe('Step(s) in progress ("a,b"; "a,b +5" when more do not fit), or the last step that ran.'),
    conditions: keyedList(z.array(Condition), "type")
      .optional()
      .describe(
        "Succeeded (with reasons such as StepFailed, QueueTimeout, DeadlineExceeded, JobNameConflict, OutputsLost, MissingOutput, ReviewTimeout, Canceled), WaitingForGPU while a step's pod is unschedulable for lack of GPUs, AwaitingReview while a review step waits for a reviewer's verdict, and StartBlocked while the kubelet cannot start a step's container (ImagePullBackOff, CreateContainerConfigError…; the step fails after the operator's start timeout).",
      ),
    steps: keyedList(z.array(StepStatus), "name").optional().describe("Per-step status."),
    startTime: z.string().optional().describe("When the first step started.").meta({ format: "date-time" }),
    completionTime: z.string().optional().describe("When the task ended.").meta({ format: "date-time" }),
    duration: z
      .string()
      .max(32)
      .optional()
      .describe("Run time from start to end (or to the last status write), e.g. 1m12s."),
    resultsPublished: z
      .string()
      .optional()
      .describe("When the results event was acknowledged by JetStream.")
      .meta({ format: "date-time" }),
    exports: z
      .array(ExportStatus)
      .max(256)
      .optional()
      .describe(
        "Exports of step results to DICOM destinations, written by the gateway that sends them (one server-side-apply field manager per entry).",
      )
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["step", "destination"] }),
  })
  .describe("InferenceTaskStatus: what the operator observed.");
export type InferenceTaskStatus = z.infer<typeof InferenceTaskStatus>;

export const InferenceTask = z
  .object({
    apiVersion: z.literal("radflow.io/v1alpha1"),
    kind: z.literal("InferenceTask"),
    metadata: ObjectMeta,
    spec: InferenceTaskSpec,
    status: InferenceTaskStatus.optional(),
  })
  .describe("InferenceTask runs one study through one AIWorkflow's steps as GPU Jobs.");
export type InferenceTask = z.infer<typeof InferenceTask>;
