// Shared parts of the radflow.io/v1alpha1 API. Every field carries a description: the CRD
// generator copies them into the OpenAPI schema, so `kubectl explain` teaches the API.
import { z } from "zod";

export const GROUP = "radflow.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

// Labels radflow puts on InferenceTasks, Jobs and Pods: names only, never a study identifier.
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "radflow";
export const LABEL_TASK = "radflow.io/task";
export const LABEL_WORKFLOW = "radflow.io/workflow";
export const LABEL_STEP = "radflow.io/step";
export const LABEL_PRIORITY = "radflow.io/priority";

/** Holds an InferenceTask until the operator has removed its Jobs (set at creation by ingest). */
export const TASK_FINALIZER = "radflow.io/cleanup-jobs";

/** DICOM UID (PS3.5 9.1): digits and dots, no leading zero in a component, at most 64 characters. */
export const DicomUID = z
  .string()
  .max(64)
  .regex(/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/, "must be a DICOM UID: digits and dots, no leading zeros")
  .describe("A DICOM UID: digits and dots, no leading zero in a component, at most 64 characters.");

/** DICOM Application Entity title: 1-16 printable ASCII characters, no backslash. */
export const AETitle = z
  .string()
  .min(1)
  .max(16)
  .regex(/^[ -[\]-~]+$/, "must be printable ASCII without backslash")
  .describe("A DICOM AE title: 1 to 16 printable ASCII characters, no backslash.");

/**
 * Longest AIWorkflow name: it is the value of the radflow.io/workflow label (at most 63
 * characters) and InferenceTask.spec.workflowRef.name (a DNS label). Task names fit any length:
 * taskName() in src/ingest/route.ts truncates the workflow part.
 */
export const WORKFLOW_NAME_MAX = 63;
/** A DNS-1123 label: what an AIWorkflow name must be. */
export const WORKFLOW_NAME_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Environment variables radflow sets on every step (RADFLOW_STUDY_DIR, …); a step's env may not. */
export const RESERVED_ENV_PREFIX = "RADFLOW_";

/** A DNS-1123 label, as Kubernetes names and list-map keys use. */
export const DnsLabel = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(
      /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
      "must be lower-case letters, digits and '-', starting and ending alphanumeric",
    );

/**
 * A list of named things keyed by `key` (x-kubernetes-list-type: map). The API server rejects a
 * repeated key; the refinement makes parsing reject it too, so both verdicts agree.
 */
export function keyedList<T extends z.ZodArray>(list: T, key: string): T {
  return list
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key] })
    .superRefine((items, ctx) => {
      const seen = new Set<unknown>();
      (items as Record<string, unknown>[]).forEach((item, i) => {
        const v = item[key];
        if (seen.has(v))
          ctx.addIssue({ code: "custom", path: [i, key], message: `duplicate ${key} ${JSON.stringify(v)}` });
        seen.add(v);
      });
    });
}

/** A list whose entries are unique (x-kubernetes-list-type: set), checked by parsing as by the API server. */
export function setList<T extends z.ZodArray>(list: T): T {
  return list.meta({ "x-kubernetes-list-type": "set" }).superRefine((items, ctx) => {
    const seen = new Set<unknown>();
    (items as unknown[]).forEach((v, i) => {
      if (seen.has(v)) ctx.addIssue({ code: "custom", path: [i], message: `duplicate entry ${JSON.stringify(v)}` });
      seen.add(v);
    });
  });
}

export const Priority = z
  .enum(["stat", "urgent", "routine", "batch"])
  .describe(
    "Clinical priority. stat: emergency diagnostics (e.g. head-CT hemorrhage triage); urgent: interactive second opinion; routine: exam planning and opportunistic screening; batch: large-scale validation. Sets the Job's PriorityClass and the operator's dispatch order (stat first).",
  );
export type Priority = z.infer<typeof Priority>;
export const PRIORITY_ORDER: Record<Priority, number> = { stat: 0, urgent: 1, routine: 2, batch: 3 };

export const Condition = z
  .object({
    type: z.string().min(1).max(316).describe("Type of condition in CamelCase, e.g. Ready or Succeeded."),
    status: z.enum(["True", "False", "Unknown"]).describe("Status of the condition: True, False or Unknown."),
    reason: z
      .string()
      .max(1024)
      .describe("Machine-readable CamelCase reason for the condition's last transition, e.g. WaitingForGPU."),
    message: z.string().max(32768).optional().describe("Human-readable detail; never holds patient data."),
    lastTransitionTime: z
      .string()
      .describe("When the condition's status last changed (RFC 3339).")
      .meta({ format: "date-time" }),
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe("The .metadata.generation the condition was computed from."),
  })
  .describe("A condition in the Kubernetes convention.");
export type Condition = z.infer<typeof Condition>;

export const ObjectMeta = z
  .object({
    name: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    generation: z.number().optional(),
    resourceVersion: z.string().optional(),
    creationTimestamp: z.union([z.string(), z.date()]).optional(),
    deletionTimestamp: z.union([z.string(), z.date()]).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    finalizers: z.array(z.string()).optional(),
    ownerReferences: z.array(z.record(z.string(), z.unknown())).optional(),
  })
  .passthrough();
