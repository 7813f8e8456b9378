// The MONAI Deploy Workflow Manager's workflow definition (JSON), read as the Workflow Manager
// reads it: .NET binds JSON properties case-insensitively, so "Name", "Conditions" and
// "Mandatory" mean what "name", "conditions" and "mandatory" do (MONAI's own end-to-end workflows
// spell them both ways). Only the keys of `args` keep their case: they are a dictionary whose
// keys are environment variable names and container paths.
import { z } from "zod";

/** The object with its keys lower-cased (the first spelling wins when two differ only in case). */
function lowerKeys(v: unknown): unknown {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const l = k.toLowerCase();
    if (!(l in out)) out[l] = x;
  }
  return out;
}

/** A schema for an object read with case-insensitive keys. */
const object = <T extends z.ZodRawShape>(shape: T) => z.preprocess(lowerKeys, z.object(shape));
/** A list that may be absent or JSON null (the API's responses write null for empty lists). */
const list = <T extends z.ZodType>(item: T) => z.preprocess((v) => v ?? [], z.array(item));

const Destination = object({
  name: z.string().min(1, "a destination needs a name"),
  // newer Workflow Managers take a list of conditions (ANDed); older ones a single string
  conditions: z.union([z.string(), z.array(z.string())]).nullish(),
}).transform((d) => {
  const conditions = d.conditions == null ? [] : typeof d.conditions === "string" ? [d.conditions] : d.conditions;
  return { name: d.name, conditions: conditions.filter((c) => c.trim() !== "") };
});

/** One artifact: a name and where its value comes from; MONAI's `mandatory` defaults to true. */
export const MonaiArtifact = object({
  name: z.string().min(1),
  value: z.string().nullish(),
  mandatory: z.boolean().nullish(),
}).transform((a) => ({ name: a.name, value: a.value ?? "", mandatory: a.mandatory ?? true }));
export type MonaiArtifact = z.infer<typeof MonaiArtifact>;

// MONAI turns every arg into a string (`"allow_insecure": true` is "True" to the Argo plugin)
const ArgValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

export const MonaiTask = object({
  id: z.string().min(1),
  description: z.string().nullish(),
  type: z.string().min(1),
  args: z.preprocess((v) => v ?? {}, z.record(z.string(), ArgValue)),
  task_destinations: list(Destination),
  export_destinations: list(Destination),
  artifacts: z
    .preprocess((v) => lowerKeys(v ?? {}), z.object({ input: list(MonaiArtifact), output: list(MonaiArtifact) }))
    .default({ input: [], output: [] }),
  timeout_minutes: z.union([z.number(), z.string()]).nullish(),
});
export type MonaiTask = z.infer<typeof MonaiTask>;

export const MonaiWorkflow = object({
  name: z.string().min(1),
  version: z.string().nullish(),
  description: z.string().nullish(),
  informatics_gateway: object({
    ae_title: z.string().nullish(),
    data_origins: list(z.string()),
    export_destinations: list(z.string()),
  }).nullish(),
  tasks: z.array(MonaiTask).min(1),
});
export type MonaiWorkflow = z.infer<typeof MonaiWorkflow>;

/**
 * Why the input is not a Workflow Manager workflow at all, if it is one of the shapes people
 * mistake for one (the 2021 design drafts published next to the Workflow Manager's docs, an API
 * response still wrapped); undefined for anything else.
 */
export function notAWorkflow(input: unknown): string | undefined {
  const o = lowerKeys(input);
  if (o === null || typeof o !== "object" || Array.isArray(o)) return "the file is not a JSON object";
  const r = o as Record<string, unknown>;
  if (!("tasks" in r) && r.workflow !== null && typeof r.workflow === "object") {
    return (
      notAWorkflow(r.workflow) ??
      "the file wraps a workflow (an API response, a WorkflowRevision); import its `workflow` object"
    );
  }
  const tasks = Array.isArray(r.tasks) ? r.tasks.map((t) => lowerKeys(t) as Record<string, unknown>) : [];
  const draft =
    "informatics-gateway" in r ||
    "task_templates" in r ||
    tasks.some((t) => t && typeof t === "object" && !t.type && ("ref" in t || "output" in t || "destinations" in t));
  if (draft) {
    return "the file is not a MONAI Workflow Manager workflow: it is in the 2021 design-draft schema (tasks without a type, `ref`/`output`/`destinations`, `task_templates`), which the Workflow Manager never accepted";
  }
  return undefined;
}
