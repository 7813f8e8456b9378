// AIWorkflow: which studies run which models (docs/ARCHITECTURE.md §3).
import { z } from "zod";
import {
  AETitle,
  Condition,
  DicomUID,
  DnsLabel,
  keyedList,
  ObjectMeta,
  Priority,
  RESERVED_ENV_PREFIX,
  setList,
  WORKFLOW_NAME_MAX,
  WORKFLOW_NAME_PATTERN,
} from "./common.ts";

// A Kubernetes quantity. YAML users write `cpu: 2` as readily as `cpu: "2"`, and the API server
// stores what they wrote (int-or-string), so both parse; the parsed value is always a string.
const Quantity = z.union([
  z.number().int().min(0).transform(String),
  z
    .string()
    .regex(/^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/, "must be a Kubernetes quantity such as 500m, 2 or 8Gi"),
]);

const RESERVED_ENV = "names starting with RADFLOW_ are reserved for the variables radflow sets (the step contract)";

export const EnvVar = z
  .object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a valid environment variable name")
      .describe("Name of the environment variable; not RADFLOW_*, which radflow sets.")
      .meta({
        "x-kubernetes-validations": [
          {
            rule: `!self.startsWith('${RESERVED_ENV_PREFIX}')`,
            messageExpression: `self + ': ${RESERVED_ENV}'`,
            reason: "FieldValueForbidden",
          },
        ],
      })
      // the same rule for in-process parsing (toJSONSchema does not see refinements)
      .superRefine((n, ctx) => {
        if (n.startsWith(RESERVED_ENV_PREFIX)) ctx.addIssue({ code: "custom", message: `${n}: ${RESERVED_ENV}` });
      }),
    value: z.string().max(4096).describe("Value of the environment variable."),
  })
  .describe("An environment variable for the step's container.");

export const StepResources = z
  .object({
    gpu: z
      .number()
      .int()
      .min(0)
      .max(16)
      .default(1)
      .describe("Number of GPUs (nvidia.com/gpu) the step needs; 0 runs on CPU nodes."),
    gpuProduct: z
      .string()
      .max(63)
      .optional()
      .describe("Required GPU product (the node label nvidia.com/gpu.product), e.g. NVIDIA-A100-SXM4-80GB."),
    nodeSelector: z
      .record(z.string(), z.string())
      .optional()
      .describe("Extra node labels the step's pod must land on."),
    cpu: Quantity.optional().describe("CPU request and limit, e.g. 2 or 500m."),
    memory: Quantity.optional().describe("Memory request and limit, e.g. 8Gi."),
  })
  .describe("Compute the step needs.");

// A clinical review step (src/controllers/review.ts): no container; the task waits until a reviewer
// gives a verdict (spec.reviews of the InferenceTask) or the review times out.
export const StepReview = z
  .object({
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(2592000)
      .default(86400)
      .describe("How long the task waits for a verdict, in seconds (24 h unless set; at most 30 days)."),
    onTimeout: z
      .enum(["Fail", "Skip"])
      .default("Fail")
      .describe(
        "What a review without a verdict in time does: Fail fails the step and the task (ReviewTimeout); Skip skips the step with outputs.accepted false, so later steps run and read the verdict as not accepted.",
      ),
    onReject: z
      .enum(["Continue", "Fail"])
      .default("Continue")
      .describe(
        "What a rejection does: Continue ends the review Succeeded with outputs.accepted false (later steps decide with `when`); Fail fails the step and the task (Rejected), so nothing after it runs and nothing is exported.",
      ),
  })
  .describe(
    "Makes the step a clinical review instead of a model run: the task waits (condition AwaitingReview) until a reviewer accepts or rejects (`radflow review accept|reject <task>`). The verdict becomes the step's outputs: `accepted` (true or false) and `verdict` (Accepted, Rejected or TimedOut), which later steps' `when` reads (steps.<review>.outputs.accepted).",
  );
export type StepReview = z.infer<typeof StepReview>;

const STEP_NEEDS_IMAGE =
  "a step needs an image (the model it runs), unless it is a review step or a forwarding step (no image, every export with content: study)";
const REVIEW_HAS_NO_IMAGE = "a review step runs no container: set image or review, not both";

export const StepExport = z
  .object({
    destination: DnsLabel(253).describe("Name of a DICOMDestination in the workflow's namespace."),
    when: z
      .string()
      .max(4096)
      .optional()
      .describe(
        "CEL condition over `outputs` (this step's outputs), `steps` and `study`; the step's results are sent only when it is true (e.g. outputs.bleed == true), and the task's status.exports says Skipped otherwise.",
      ),
    content: z
      .enum(["auto", "files", "sr", "study"])
      .default("auto")
      .describe(
        "What is sent: files — the DICOM files the model wrote under RADFLOW_OUTPUT_DIR; sr — a Comprehensive SR radflow builds from the step's outputs; auto — the files, or the SR when the model wrote none; study — the received study's own instances, as they were received (forwarding).",
      ),
  })
  .describe("Send the step's results to a DICOM destination once the task succeeds.");
export type StepExport = z.infer<typeof StepExport>;

export const Step = z
  .object({
    name: DnsLabel(40).describe("Name of the step, unique in the workflow (DNS label, at most 40 characters)."),
    image: z
      .string()
      .min(1)
      .max(512)
      .optional()
      .describe(
        "Container image of the model, e.g. registry.example.org/ich-triage:1.4. Required unless the step is a review, or a forwarding step: one without image and review whose every export has content: study runs no Job and succeeds at once, so a workflow can forward studies to a DICOMDestination.",
      ),
    review: StepReview.optional(),
    outputs: z
      .object({
        required: setList(z.array(z.string().min(1).max(128)).max(32))
          .optional()
          .describe(
            "Keys the model must report in its termination message (status.steps[].outputs); a run that succeeds without one of them fails the step with MissingOutput instead of passing.",
          ),
      })
      .optional()
      .describe("What the step's outputs must hold."),
    command: z.array(z.string()).max(64).optional().describe("Entrypoint override for the container."),
    args: z.array(z.string()).max(256).optional().describe("Arguments for the container."),
    env: keyedList(z.array(EnvVar).max(64), "name")
      .optional()
      .describe("Environment for the container, next to the RADFLOW_* variables the operator sets."),
    resources: StepResources.default({ gpu: 1 }),
    dependsOn: setList(z.array(DnsLabel(40)).max(32))
      .optional()
      .describe("Steps that must have finished (Succeeded or Skipped) before this one starts."),
    when: z
      .string()
      .max(4096)
      .optional()
      .describe(
        "CEL condition over `steps` (each earlier step's `phase` and `outputs`) and `study`; the step runs only when it is true and is Skipped otherwise. Example: steps.detect.outputs.device == true. Like trigger.expression it has a cost budget.",
      ),
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(604800)
      .default(3600)
      .describe(
        "Run time limit of one attempt of the step, in seconds, counted from the model container's start (time spent waiting for a GPU does not count). A step that runs longer fails with DeadlineExceeded.",
      ),
    retries: z
      .number()
      .int()
      .min(0)
      .max(10)
      .default(0)
      .describe(
        "How many times a failed model run is retried (the Job's backoffLimit). Node loss and evictions are retried apart from these.",
      ),
    export: keyedList(z.array(StepExport).max(8), "destination")
      .optional()
      .describe("DICOM destinations for this step's results, each with an optional CEL `when`."),
  })
  .describe("One model run (a container on a GPU) or a clinical review: a node of the workflow's step DAG.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "has(self.image) || has(self.review) || (has(self.export) && size(self.export) > 0 && self.export.all(e, has(e.content) && e.content == 'study'))",
        message: STEP_NEEDS_IMAGE,
        fieldPath: ".image",
        reason: "FieldValueRequired",
      },
      {
        rule: "!(has(self.image) && has(self.review))",
        message: REVIEW_HAS_NO_IMAGE,
        fieldPath: ".review",
        reason: "FieldValueForbidden",
      },
    ],
  })
  // the same rules for in-process parsing (toJSONSchema does not see refinements)
  .superRefine((s, ctx) => {
    if (s.image === undefined && s.review === undefined && !isForwardStep(s))
      ctx.addIssue({ code: "custom", path: ["image"], message: STEP_NEEDS_IMAGE });
    if (s.image !== undefined && s.review !== undefined)
      ctx.addIssue({ code: "custom", path: ["review"], message: REVIEW_HAS_NO_IMAGE });
  });
export type Step = z.infer<typeof Step>;

/** A step that runs no Job: no image, no review, and every export sends the received study. */
export function isForwardStep(s: { image?: string; review?: unknown; export?: { content?: string }[] }): boolean {
  return (
    s.image === undefined &&
    s.review === undefined &&
    (s.export?.length ?? 0) > 0 &&
    (s.export ?? []).every((e) => e.content === "study")
  );
}

/** Why a workflow name is refused (admission and workflow validation say the same). */
export const WORKFLOW_NAME_RULE = `metadata.name must be a DNS label: at most ${WORKFLOW_NAME_MAX} lower-case letters, digits and '-', no dots (it becomes the radflow.io/workflow label of every task)`;

/** Undefined when the workflow's name can name its tasks, else why not. */
export function workflowNameProblem(name: string | undefined): string | undefined {
  return name !== undefined && name.length <= WORKFLOW_NAME_MAX && WORKFLOW_NAME_PATTERN.test(name)
    ? undefined
    : WORKFLOW_NAME_RULE;
}

const DEPENDS_ON_UNKNOWN = "every dependsOn entry must name a step of this workflow";
const DEPENDS_ON_SELF = "a step must not depend on itself";

export const Steps = keyedList(z.array(Step).min(1).max(32), "name")
  .describe("The steps of the workflow: a DAG ordered by dependsOn.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "self.all(s, !has(s.dependsOn) || s.dependsOn.all(d, self.exists(o, o.name == d)))",
        message: DEPENDS_ON_UNKNOWN,
        reason: "FieldValueInvalid",
      },
      {
        rule: "self.all(s, !has(s.dependsOn) || !(s.name in s.dependsOn))",
        message: DEPENDS_ON_SELF,
        reason: "FieldValueInvalid",
      },
    ],
  })
  // the same two rules for in-process parsing (toJSONSchema does not see refinements)
  .superRefine((steps, ctx) => {
    const names = new Set(steps.map((s) => s.name));
    steps.forEach((s, i) => {
      s.dependsOn?.forEach((d, j) => {
        const path = [i, "dependsOn", j];
        if (d === s.name) ctx.addIssue({ code: "custom", path, message: `${DEPENDS_ON_SELF} (step "${d}")` });
        else if (!names.has(d))
          ctx.addIssue({
            code: "custom",
            path,
            message: `${DEPENDS_ON_UNKNOWN}: step "${s.name}" depends on "${d}", which is not a step`,
          });
      });
    });
  });

export const Trigger = z
  .object({
    sources: z
      .object({
        callingAETitles: z
          .array(AETitle)
          .max(64)
          .optional()
          .describe("Studies must come from one of these AE titles (the sending modality or PACS)."),
        calledAETitles: z
          .array(AETitle)
          .max(64)
          .optional()
          .describe("Studies must have been sent to one of these AE titles (the gateway)."),
      })
      .optional()
      .describe("Which senders and receivers the study must come through."),
    match: z
      .object({
        modalities: z
          .array(z.string().min(1).max(16))
          .max(32)
          .optional()
          .describe("At least one series must have one of these modalities (CT, MR, CR, DX, …)."),
        bodyParts: z
          .array(z.string().min(1).max(64))
          .max(32)
          .optional()
          .describe("At least one series must have one of these BodyPartExamined values (case-insensitive)."),
        sopClassUIDs: z
          .array(DicomUID)
          .max(32)
          .optional()
          .describe("At least one series must have one of these SOP Class UIDs."),
        seriesDescriptionPattern: z
          .string()
          .max(256)
          .optional()
          .describe(
            "A regular expression in RE2 syntax (no lookaround or backreferences) that at least one SeriesDescription must match, anywhere in it, case-insensitive.",
          ),
      })
      .optional()
      .describe("Series attributes a study must have; all given criteria must hold for the same series."),
    expression: z
      .string()
      .max(4096)
      .optional()
      .describe(
        "A CEL expression over `study` that must be true, e.g. study.series.exists(s, s.modality == 'CT'). It has a cost budget, as Kubernetes' CEL rules do: one whose worst case over studies of the largest allowed size (512 series) exceeds it makes the workflow not Ready (ExpressionTooExpensive); deeply nested .all()/.exists()/.map() or long built strings are what cost. An evaluation that exceeds the budget stops with an error. Error messages name the function and column, never the study's values.",
      ),
  })
  .describe("Which studies start the workflow; every given criterion must hold.");

const STORAGE_ONE_OF = "exactly one of pvc or s3 must be set";

export const Storage = z
  .object({
    pvc: z
      .object({
        claimName: DnsLabel(253).describe("Name of a PersistentVolumeClaim in the workflow's namespace."),
        subPath: z.string().max(1024).optional().describe("Sub-path in the volume under which studies live."),
      })
      .optional()
      .describe("A PersistentVolumeClaim holding studies and results."),
    s3: z
      .object({
        uri: z
          .string()
          .regex(/^s3:\/\/[a-z0-9.-]{3,63}(\/.*)?$/, "must be an s3://bucket/prefix URI")
          .describe("Bucket and prefix, e.g. s3://imaging/studies."),
        secretName: DnsLabel(253)
          .optional()
          .describe("Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the step."),
      })
      .optional()
      .describe("An S3-compatible object store holding studies and results."),
    mountPath: z.string().max(256).default("/data").describe("Where a PVC is mounted in the step's container."),
  })
  .describe("Where steps find the study and write results.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "has(self.pvc) != has(self.s3)",
        message: STORAGE_ONE_OF,
        reason: "FieldValueInvalid",
      },
    ],
  })
  .superRefine((s, ctx) => {
    if ((s.pvc === undefined) === (s.s3 === undefined)) ctx.addIssue({ code: "custom", message: STORAGE_ONE_OF });
  });

export const ExportDestination = z
  .object({
    name: z.string().min(1).max(64).describe("Name of the destination (e.g. a PACS) as the export service knows it."),
    plugin: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, '-' and '_' only")
      .default("monaiscu")
      .describe("Export plugin; the MONAI-compatible ExportRequestEvent goes to md.export.request.<plugin>."),
  })
  .describe("Where results are sent once the task succeeds.");

export const AIWorkflowSpec = z
  .object({
    description: z.string().max(1024).optional().describe("What the workflow does, for people."),
    priority: Priority.default("routine"),
    trigger: Trigger,
    steps: Steps,
    queueTimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(604800)
      .optional()
      .describe("How long a task may wait for a GPU before it fails loudly with QueueTimeout."),
    concurrency: z
      .object({
        maxRunning: z
          .number()
          .int()
          .min(1)
          .max(10000)
          .optional()
          .describe("Most Jobs of this workflow running at once."),
      })
      .optional()
      .describe("Limits on how much of the cluster the workflow may use at once."),
    suspend: z.boolean().default(false).describe("When true, no new InferenceTasks are started for this workflow."),
    ttlSecondsAfterFinished: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("Delete finished InferenceTasks (and their Jobs) this many seconds after they end."),
    export: keyedList(z.array(ExportDestination).max(16), "name")
      .optional()
      .describe(
        "Destinations for results once a task succeeds: a MONAI ExportRequestEvent per plugin (with --monai), and for each name an unconditional export of the last step(s) to the DICOMDestination of that name (sugar for a step's `export`).",
      ),
    storage: Storage.optional(),
    kueue: z
      .object({
        queueName: DnsLabel(63).describe("Kueue LocalQueue that admits this workflow's Jobs."),
      })
      .optional()
      .describe(
        "Hand quota and GPU-flavor decisions to Kueue: Jobs are created suspended and radflow's GPU cap steps aside.",
      ),
  })
  .describe("AIWorkflowSpec: which studies run which models.");
export type AIWorkflowSpec = z.infer<typeof AIWorkflowSpec>;

export const AIWorkflowStatus = z
  .object({
    observedGeneration: z.number().int().optional().describe("The .metadata.generation this status describes."),
    conditions: keyedList(z.array(Condition), "type")
      .optional()
      .describe("Ready: True when the workflow is valid and starts tasks; False with a reason naming what to fix."),
    stepCount: z.number().int().optional().describe("Number of steps, for kubectl's Steps column."),
  })
  .describe("AIWorkflowStatus: what the operator observed about the workflow.");
export type AIWorkflowStatus = z.infer<typeof AIWorkflowStatus>;

export const AIWorkflow = z
  .object({
    apiVersion: z.literal("radflow.io/v1alpha1"),
    kind: z.literal("AIWorkflow"),
    metadata: ObjectMeta,
    spec: AIWorkflowSpec,
    status: AIWorkflowStatus.optional(),
  })
  .describe("AIWorkflow routes studies to AI models and runs them as GPU Jobs.")
  .meta({
    // metadata.name becomes the radflow.io/workflow label and every task's workflowRef.name: a
    // name the API server takes but a label or a DNS label cannot hold would make a Ready workflow
    // whose every study is rejected. Only root rules may read metadata.name.
    "x-kubernetes-validations": [
      {
        rule: `self.metadata.name.size() <= ${WORKFLOW_NAME_MAX} && self.metadata.name.matches('${WORKFLOW_NAME_PATTERN.source}')`,
        message: WORKFLOW_NAME_RULE,
        reason: "FieldValueInvalid",
      },
    ],
  });
export type AIWorkflow = z.infer<typeof AIWorkflow>;

/**
 * A workflow whose Ready condition is True takes studies. The generation is deliberately not
 * compared: right after an edit the old verdict stands for the milliseconds until re-validation,
 * which is better than acking that moment's studies as unmatched.
 */
export function isReady(wf: AIWorkflow): boolean {
  return wf.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}
