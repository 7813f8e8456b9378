// The MONAI Deploy Workflow Manager's workflow definition (JSON), as far as the importer reads
// it. Fields radflow has no use for (artifacts, input_parameters, ref) are accepted and ignored.
import { z } from "zod";

const Destination = z
  .object({
    name: z.string().min(1).optional(),
    // the fixture and many published workflows spell it "Name" (.NET binds case-insensitively)
    Name: z.string().min(1).optional(),
    // newer Workflow Managers take a list of conditions (ANDed); older ones a single string
    conditions: z.union([z.string(), z.array(z.string())]).optional(),
  })
  .transform((d, ctx) => {
    const name = d.name ?? d.Name;
    if (!name) {
      ctx.addIssue({ code: "custom", message: "a destination needs a name" });
      return z.NEVER;
    }
    const conditions =
      d.conditions === undefined ? [] : typeof d.conditions === "string" ? [d.conditions] : d.conditions;
    return { name, conditions: conditions.filter((c) => c.trim() !== "") };
  });

export const MonaiTask = z.object({
  id: z.string().min(1),
  description: z.string().optional(),
  type: z.string().min(1),
  args: z.record(z.string(), z.string()).default({}),
  task_destinations: z.array(Destination).default([]),
  export_destinations: z.array(Destination).default([]),
  timeout_minutes: z.union([z.number(), z.string()]).optional(),
});
export type MonaiTask = z.infer<typeof MonaiTask>;

export const MonaiWorkflow = z.object({
  name: z.string().min(1),
  version: z.string().optional(),
  description: z.string().optional(),
  informatics_gateway: z
    .object({
      ae_title: z.string().optional(),
      data_origins: z.array(z.string()).default([]),
      export_destinations: z.array(z.string()).default([]),
    })
    .optional(),
  tasks: z.array(MonaiTask).min(1),
});
export type MonaiWorkflow = z.infer<typeof MonaiWorkflow>;
