// The export request: one message per (task, step, destination) on radflow.task.export in
// RADFLOW_RESULTS, published with the task's other results and consumed by `radflow gateway`'s
// export worker (docs/gateway.md, "Results back to PACS"). It carries everything the sender
// needs, so an export still goes out after the task's TTL removed it; its payload holds study
// identifiers and is PHI like any results event.
import { z } from "zod";
import { StepExport, Storage } from "../api/v1alpha1/aiworkflow.ts";
import { DnsLabel } from "../api/v1alpha1/common.ts";

export const EXPORT_SUBJECT = "radflow.task.export";
export const EXPORT_REQUESTED = "io.radflow.export.requested";

export const ExportRequestData = z.object({
  task: z.object({ namespace: z.string(), name: z.string(), uid: z.string() }),
  workflow: z.string(),
  step: DnsLabel(40),
  destination: DnsLabel(253),
  content: StepExport.shape.content,
  /** send; or an outcome the plan already knows (the gateway only records it) */
  decision: z.enum(["send", "Skipped", "Failed"]),
  reason: z.string().max(256).optional(),
  message: z.string().max(1024).optional(),
  /** the model, for the SR's observer device */
  image: z.string().max(512).optional(),
  outputs: z.record(z.string(), z.unknown()).default({}),
  storage: Storage.optional(),
  /** RADFLOW_OUTPUT_DIR relative to the storage root */
  outputPath: z.string(),
  study: z.object({
    studyInstanceUID: z.string(),
    accessionNumber: z.string().optional(),
    location: z.string().optional(),
  }),
  completionTime: z.string().optional(),
});
export type ExportRequestData = z.infer<typeof ExportRequestData>;

export const ExportRequestEvent = z.object({
  specversion: z.literal("1.0"),
  id: z.string(),
  source: z.string(),
  type: z.literal(EXPORT_REQUESTED),
  subject: z.string().optional(),
  time: z.string(),
  datacontenttype: z.literal("application/json").optional(),
  data: ExportRequestData,
});
export type ExportRequestEvent = z.infer<typeof ExportRequestEvent>;
