// A MONAI Deploy workflow -> an AIWorkflow.
//
// The task graph: the first task is the entry; `task_destinations` are edges, each with
// conditions (ANDed). Model tasks (`docker`, `argo`) become steps; an edge from a model task
// becomes dependsOn plus a `when`. Routers are folded away: a step reached through a router gets
// the router's own incoming condition ANDed with the router's condition for it, and depends on
// the router's predecessor (nothing, when the router is the entry). Export tasks become
// spec.export destinations (radflow exports once the whole task has succeeded).
//
// MONAI runs a task only when its predecessor ran; radflow runs a step whose dependency was
// Skipped. So a step that follows a conditional step also requires that step to have Succeeded.
//
// What a task's args become:
//   docker: container_image -> image; entrypoint -> command and command -> args (both split on
//     ",", as MONAI's Docker plugin does); env_<NAME> -> env NAME; task_timeout_minutes ->
//     timeoutSeconds. server_url and temp_storage_container_path are Docker-host settings: dropped.
//   argo: the task names an Argo WorkflowTemplate, which radflow cannot read, so the image comes
//     from `--image <task>=<image>` (or a container_image arg); cpu / memory -> resources;
//     gpu_required -> gpu 1 or 0; timeoutSeconds -> timeoutSeconds. Credentials
//     (apiToken, username, password) and Argo server settings are never copied.
//   timeout_minutes on any task -> timeoutSeconds (the smaller wins when both are given).
// informatics_gateway.ae_title -> trigger.sources.calledAETitles; data_origins -> callingAETitles.
import type { z } from "zod";
import { AIWorkflow, type Priority, type Step } from "../api/v1alpha1/index.ts";
import { checkBool } from "../expr/cel.ts";
import { allOf, type CelNode, ConditionError, member, quote, renderCel, translateCondition } from "./conditions.ts";
import { type MonaiTask, MonaiWorkflow } from "./workflow.ts";

export class ImportError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`the MONAI workflow cannot be imported:\n  ${problems.join("\n  ")}`);
    this.problems = problems;
  }
}

export interface ImportOptions {
  name?: string;
  namespace?: string;
  priority?: Priority;
  /** images for argo tasks, by MONAI task id */
  images?: Record<string, string>;
}

type StepInput = z.input<typeof Step>;
export type AIWorkflowInput = z.input<typeof AIWorkflow>;

export interface ImportResult {
  /** as a person would write it: only what the MONAI workflow says, defaults left to the API server */
  workflow: AIWorkflowInput;
  /** MONAI task id -> step name */
  stepNames: Map<string, string>;
  /** things a person should check, for the YAML's header comment */
  notes: string[];
}

const MODEL_TYPES = new Set(["docker", "argo"]);
const EXPORT_TYPES = new Set(["export"]);
const DOCKER_IGNORED = new Set(["server_url", "temp_storage_container_path"]);
const ARGO_IGNORED = new Set([
  "server_url",
  "namespace",
  "allow_insecure",
  "workflow_template_name",
  "apiToken",
  "endpoint",
  "username",
  "password",
  "exchange",
  "virtualHost",
]);

/** Converts parsed MONAI workflow JSON; throws ImportError listing every problem found. */
export function importMonai(input: unknown, opts: ImportOptions = {}): ImportResult {
  const parsed = MonaiWorkflow.safeParse(input);
  if (!parsed.success) {
    throw new ImportError(parsed.error.issues.map((i) => `${i.path.join(".") || "(workflow)"}: ${i.message}`));
  }
  const wf = parsed.data;
  const problems: string[] = [];
  const notes: string[] = [];

  const tasks = new Map<string, MonaiTask>();
  for (const t of wf.tasks) {
    if (tasks.has(t.id)) problems.push(`task "${t.id}": the id is used twice`);
    tasks.set(t.id, t);
  }
  const entry = wf.tasks[0]!;

  // edges into each task, and reachability from the entry
  const incoming = new Map<string, { from: MonaiTask; conditions: string[] }[]>();
  const reached = new Set<string>([entry.id]);
  const queue = [entry];
  while (queue.length > 0) {
    const t = queue.shift()!;
    for (const d of t.task_destinations) {
      const to = tasks.get(d.name);
      if (!to) {
        problems.push(`task "${t.id}": destination "${d.name}" is not a task of this workflow`);
        continue;
      }
      incoming.set(to.id, [...(incoming.get(to.id) ?? []), { from: t, conditions: d.conditions }]);
      if (!reached.has(to.id)) {
        reached.add(to.id);
        queue.push(to);
      }
    }
  }
  for (const t of wf.tasks) {
    if (!reached.has(t.id)) problems.push(`task "${t.id}": not reachable from the entry task "${entry.id}"`);
    const ins = incoming.get(t.id) ?? [];
    if (t === entry && ins.length > 0) problems.push(`task "${t.id}": the entry task is also a destination (a loop)`);
    if (ins.length > 1) {
      problems.push(
        `task "${t.id}": is a destination of ${ins.map((e) => `"${e.from.id}"`).join(" and ")}; MONAI runs it once per arrival, radflow runs a step once — split it into one task per path`,
      );
    }
    if (!MODEL_TYPES.has(t.type) && !EXPORT_TYPES.has(t.type) && t.type !== "router") {
      problems.push(`task "${t.id}": type "${t.type}" has no radflow equivalent`);
    }
  }

  // step names: DNS labels, stable in task order
  const stepNames = new Map<string, string>();
  const used = new Set<string>();
  for (const t of wf.tasks) {
    if (!MODEL_TYPES.has(t.type)) continue;
    const base = dnsLabel(t.id, 40) || "step";
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base.slice(0, 40 - String(n).length - 1)}-${n}`;
    used.add(name);
    stepNames.set(t.id, name);
  }
  const stepOf = (id: string) => stepNames.get(id);

  // the predecessor step and the conditions on the way to a task, routers folded away
  const pathTo = (t: MonaiTask, seen: Set<string>): { dep?: MonaiTask; conditions: { owner: string; c: string }[] } => {
    const edge = incoming.get(t.id)?.[0];
    if (!edge || seen.has(t.id)) return { conditions: [] };
    seen.add(t.id);
    const own = edge.conditions.map((c) => ({ owner: edge.from.id, c }));
    if (edge.from.type === "router") {
      const up = pathTo(edge.from, seen);
      return { ...(up.dep ? { dep: up.dep } : {}), conditions: [...up.conditions, ...own] };
    }
    return { dep: edge.from, conditions: own };
  };

  const translate = (conditions: { owner: string; c: string }[]) => {
    const nodes: CelNode[] = [];
    const reads: { owner: string; c: string; task: string }[] = [];
    for (const { owner, c } of conditions) {
      try {
        const tr = translateCondition(c, owner, stepOf);
        nodes.push(tr.node);
        for (const r of tr.reads) reads.push({ owner, c, task: r });
      } catch (e) {
        if (e instanceof ConditionError) problems.push(e.message);
        else throw e;
      }
    }
    return { nodes, reads };
  };

  const steps: StepInput[] = [];
  const whenOf = new Map<string, string>();
  const ancestors = new Map<string, Set<string>>();
  const exports = new Map<string, { name: string }>();
  // breadth-first order puts every step after the one it depends on
  const order = [...reached].map((id) => tasks.get(id)!);
  for (const t of order) {
    if (EXPORT_TYPES.has(t.type)) {
      const { conditions } = pathTo(t, new Set());
      if (conditions.length > 0) {
        const c = conditions[0]!;
        problems.push(
          `task "${c.owner}": condition ${JSON.stringify(c.c)} guards export task "${t.id}"; radflow exports unconditionally once the task succeeds`,
        );
      }
      if (t.task_destinations.length > 0) problems.push(`task "${t.id}": tasks after an export are not supported`);
      if (t.export_destinations.length === 0)
        problems.push(`task "${t.id}": an export task without export_destinations`);
      for (const d of t.export_destinations) exports.set(d.name, { name: d.name });
      continue;
    }
    if (!MODEL_TYPES.has(t.type)) continue;
    const name = stepNames.get(t.id)!;
    const { dep, conditions } = pathTo(t, new Set());
    const depName = dep ? stepOf(dep.id) : undefined;
    const { nodes, reads } = translate(conditions);
    const anc = new Set<string>();
    if (dep && depName) {
      anc.add(dep.id);
      for (const a of ancestors.get(dep.id) ?? []) anc.add(a);
    }
    ancestors.set(t.id, anc);
    for (const r of reads) {
      if (!anc.has(r.task)) {
        problems.push(
          `task "${r.owner}": condition ${JSON.stringify(r.c)} reads the result of "${r.task}", which has not run before "${t.id}"`,
        );
      }
    }
    // a conditional predecessor may be Skipped, and MONAI would not have reached this task then
    if (depName && whenOf.has(depName)) {
      nodes.unshift({ kind: "leaf", text: `${member(member("steps", depName), "phase")} == ${quote("Succeeded")}` });
    }
    const when = allOf(nodes);
    const step: StepInput = {
      name,
      image: "",
      ...container(t, opts, problems, notes),
      ...(depName ? { dependsOn: [depName] } : {}),
      ...(when ? { when: renderCel(when) } : {}),
    };
    if (step.when) {
      whenOf.set(name, step.when);
      const err = checkBool(step.when);
      if (err) problems.push(`task "${t.id}": the translated condition does not compile (${err}): ${step.when}`);
    }
    steps.push(step);
  }
  if (steps.length === 0) problems.push("the workflow has no docker or argo task, so nothing would run");

  const gw = wf.informatics_gateway;
  if (!gw?.ae_title) {
    problems.push(
      "informatics_gateway.ae_title is missing; without it the workflow would run for every study radflow receives",
    );
  }

  const name = opts.name ?? (dnsLabel(wf.name, 50) || "monai-workflow");
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 63) {
    problems.push(`--name "${name}" is not a DNS label (lower-case letters, digits and '-', at most 63 characters)`);
  }
  const doc: AIWorkflowInput = {
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: {
      name,
      ...(opts.namespace ? { namespace: opts.namespace } : {}),
      annotations: {
        "radflow.io/imported-from": `monai-deploy:${wf.name}${wf.version ? `@${wf.version}` : ""}`,
        // step name -> MONAI task id, so results can be traced back to the original tasks
        "radflow.io/monai-task-ids": JSON.stringify(Object.fromEntries([...stepNames].map(([id, s]) => [s, id]))),
      },
    },
    spec: {
      ...(wf.description ? { description: wf.description.slice(0, 1024) } : {}),
      priority: opts.priority ?? "routine",
      trigger: {
        sources: {
          ...(gw?.ae_title ? { calledAETitles: [gw.ae_title] } : {}),
          ...(gw && gw.data_origins.length > 0 ? { callingAETitles: gw.data_origins } : {}),
        },
      },
      steps,
      ...(exports.size > 0 ? { export: [...exports.values()] } : {}),
    },
  };
  if (problems.length > 0) throw new ImportError(problems);

  const valid = AIWorkflow.safeParse(doc);
  if (!valid.success) {
    throw new ImportError(
      valid.error.issues.map((i) => `the result is not a valid AIWorkflow: ${i.path.join(".")}: ${i.message}`),
    );
  }
  notes.push(
    "spec.storage is not set: MONAI read studies from its object store; set pvc or s3 where radflow's gateway puts them.",
  );
  return { workflow: doc, stepNames, notes };
}

/** image, command, args, env, resources and timeout of a model task. */
function container(t: MonaiTask, opts: ImportOptions, problems: string[], notes: string[]): Partial<StepInput> {
  const out: Partial<StepInput> = {};
  const a = t.args;
  const unused: string[] = [];
  const minutes: number[] = [];
  const addMinutes = (v: string | number | undefined, what: string) => {
    if (v === undefined) return;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0)
      problems.push(`task "${t.id}": ${what} ${JSON.stringify(v)} is not a positive number`);
    else minutes.push(n);
  };
  addMinutes(t.timeout_minutes, "timeout_minutes");
  if (t.type === "docker") {
    if (!a.container_image) problems.push(`task "${t.id}": a docker task without args.container_image`);
    else out.image = a.container_image;
    if (a.entrypoint) out.command = a.entrypoint.split(",");
    if (a.command) out.args = a.command.split(",");
    addMinutes(a.task_timeout_minutes, "task_timeout_minutes");
    const env = Object.entries(a)
      .filter(([k]) => k.startsWith("env_"))
      .map(([k, v]) => ({ name: k.slice(4), value: v }));
    if (env.length > 0) {
      out.env = env;
      notes.push(
        `step for "${t.id}": env ${env.map((e) => e.name).join(", ")} keep MONAI's container paths; MONAI mounted the input and output there, radflow mounts spec.storage at its mountPath.`,
      );
    }
    for (const k of Object.keys(a)) {
      if (!["container_image", "entrypoint", "command", "task_timeout_minutes"].includes(k) && !k.startsWith("env_")) {
        if (!DOCKER_IGNORED.has(k)) unused.push(k);
      }
    }
  } else {
    const image = opts.images?.[t.id] ?? a.container_image;
    if (!image) {
      problems.push(
        `task "${t.id}": an argo task runs the Argo WorkflowTemplate "${a.workflow_template_name ?? "?"}", which radflow cannot read; give the model's image with --image ${t.id}=<image>`,
      );
    } else {
      out.image = image;
    }
    const resources: NonNullable<StepInput["resources"]> = {};
    if (a.cpu) resources.cpu = a.cpu;
    if (a.memory) resources.memory = a.memory;
    if (a.gpu_required !== undefined) resources.gpu = a.gpu_required.toLowerCase() === "true" ? 1 : 0;
    if (Object.keys(resources).length > 0) out.resources = resources;
    if (a.timeoutSeconds !== undefined) {
      const s = Number(a.timeoutSeconds);
      if (!Number.isInteger(s) || s <= 0)
        problems.push(`task "${t.id}": timeoutSeconds "${a.timeoutSeconds}" is not a positive integer`);
      else minutes.push(s / 60);
    }
    for (const k of Object.keys(a)) {
      if (!["container_image", "cpu", "memory", "gpu_required", "timeoutSeconds"].includes(k) && !ARGO_IGNORED.has(k)) {
        unused.push(k);
      }
    }
  }
  if (minutes.length > 0) out.timeoutSeconds = Math.max(1, Math.round(Math.min(...minutes) * 60));
  if (unused.length > 0) notes.push(`step for "${t.id}": args not translated: ${unused.join(", ")}.`);
  return out;
}

/** A DNS-1123 label from free text: lower case, '-' for anything else, at most `max` characters. */
export function dnsLabel(s: string, max: number): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+/, "")
    .slice(0, max)
    .replace(/-+$/, "");
}
