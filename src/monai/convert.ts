// A MONAI Deploy workflow -> an AIWorkflow.
//
// The task graph: the first task is the entry; `task_destinations` are edges, each with
// conditions (ANDed). Model tasks (`docker`, `argo`) become steps; an edge from a model task
// becomes dependsOn plus a `when`. Routers are folded away: a step reached through a router gets
// the router's own incoming condition ANDed with the router's condition for it, and depends on
// the router's predecessor (nothing, when the router is the entry). Export tasks become
// spec.export destinations (radflow exports once the whole task has succeeded); an export that
// runs only under a condition becomes a step export (its `when`) of the model it follows; one
// that forwards the received study becomes a step export with content study — of the model it
// follows, or of a forwarding step (no image, no Job) when no model comes before it.
//
// An aide_clinical_review task becomes a review step (src/controllers/review.ts): the task waits for
// `radflow review accept|reject`. MONAI goes on only after an acceptance: a rejection ends the
// review PartialFail, nothing after it is dispatched, and the workflow instance succeeds. So the
// steps and exports after a review require `steps.<review>.outputs.accepted == true`, and the
// review says onReject Continue (the task succeeds, as MONAI's instance does).
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
//     timeoutSeconds -> timeoutSeconds. Credentials (apiToken, username, password) and Argo
//     server settings are never copied.
//   gpu_required "true" -> 1 GPU; otherwise 0, written out (radflow's default is 1, MONAI's none).
//   timeout_minutes on any task -> timeoutSeconds (the smaller wins when both are given); -1 is
//     MONAI's "the default" and leaves radflow's default.
//   artifacts -> RADFLOW_STUDY_DIR / RADFLOW_OUTPUT_DIR locations in env and command (artifacts.ts);
//     mandatory output artifacts -> outputs.required.
// informatics_gateway.ae_title -> trigger.sources.calledAETitles; data_origins -> callingAETitles.
import type { z } from "zod";
import { AIWorkflow, type Priority, type Step } from "../api/v1alpha1/index.ts";
import { checkBool } from "../expr/cel.ts";
import { type ArtifactContext, artifactSource, checkTaskInput, mapArtifacts, rewritePaths } from "./artifacts.ts";
import { allOf, type CelNode, ConditionError, member, quote, renderCel, translateCondition } from "./conditions.ts";
import { type MonaiTask, MonaiWorkflow, notAWorkflow } from "./workflow.ts";

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

/** What follows a clinical review runs only when the review ran and accepted. */
function acceptedGate(review: string): CelNode[] {
  const step = member("steps", review);
  return [
    { kind: "leaf", text: `${member(step, "phase")} == ${quote("Succeeded")}` },
    { kind: "leaf", text: `${member(member(step, "outputs"), "accepted")} == true` },
  ];
}
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
/** MONAI's clinical review (AIDE): a person accepts or rejects before the workflow goes on. */
const REVIEW_TYPES = new Set(["aide_clinical_review"]);
/** Clinical-review args that configure AIDE's review UI: radflow's reviewer is the Kubernetes user. */
const REVIEW_UI_ARGS = new Set([
  "workflow_name",
  "reviewed_task_id",
  "application_name",
  "application_version",
  "mode",
  "notifications",
  "reviewer_roles",
]);
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
  const not = notAWorkflow(input);
  if (not) throw new ImportError([not]);
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
        problems.push(
          `task "${t.id}": destination "${d.name}" is not a task of this workflow (MONAI's validator rejects it too)`,
        );
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
    if (!MODEL_TYPES.has(t.type) && !EXPORT_TYPES.has(t.type) && !REVIEW_TYPES.has(t.type) && t.type !== "router") {
      problems.push(`task "${t.id}": type "${t.type}" has no radflow equivalent`);
    }
  }

  // step names: DNS labels, stable in task order
  const stepNames = new Map<string, string>();
  const used = new Set<string>();
  for (const t of wf.tasks) {
    if (!MODEL_TYPES.has(t.type) && !REVIEW_TYPES.has(t.type)) continue;
    const base = dnsLabel(t.id, 40) || "step";
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base.slice(0, 40 - String(n).length - 1)}-${n}`;
    used.add(name);
    stepNames.set(t.id, name);
  }
  const stepOf = (id: string) => stepNames.get(id);
  // conditions read model results; a review's outputs are radflow's own (accepted, verdict)
  const modelStepOf = (id: string) => (REVIEW_TYPES.has(tasks.get(id)?.type ?? "") ? undefined : stepOf(id));

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
        const tr = translateCondition(c, owner, modelStepOf);
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
  const artifactCtx = (t: MonaiTask): ArtifactContext => ({
    tasks,
    stepOf,
    ancestors: ancestors.get(t.id) ?? new Set(),
    problems,
    notes,
  });
  // An unconditional export task becomes a destination of the whole task's results (spec.export,
  // MONAI's export services). One reached under a condition becomes a step export of the model it
  // follows (its `when`, radflow's gateway sending to a DICOMDestination). Forwarding the received
  // study itself has no equivalent: a step export sends what a model wrote, or an SR of its outputs.
  const stepExports = new Map<string, { destination: string; when?: string; content?: "study" }[]>();
  /** MONAI's export destinations as DICOMDestination names (DNS labels); the untranslatable ones told. */
  const destinationNames = (t: MonaiTask): string[] => {
    const names: string[] = [];
    for (const d of t.export_destinations) {
      const destination = dnsLabel(d.name, 253);
      if (!destination)
        problems.push(`task "${t.id}": export destination ${JSON.stringify(d.name)} cannot name a DICOMDestination`);
      else names.push(destination);
    }
    return names;
  };
  // Forwarding the received study (an export whose input is {{ context.input.dicom }}): after a
  // model, a step export of that model with content study; with no model before it, a forwarding
  // step (no image, no Job) whose export sends the study. Conditions on the way become the export's `when`.
  const forwardTask = (
    t: MonaiTask,
    depStep: string | undefined,
    dep: MonaiTask | undefined,
    conditions: { owner: string; c: string }[],
    gates: CelNode[],
  ) => {
    if (t.task_destinations.length > 0) problems.push(`task "${t.id}": tasks after an export are not supported`);
    if (t.export_destinations.length === 0) problems.push(`task "${t.id}": an export task without export_destinations`);
    const translated = translate(conditions);
    const reads = translated.reads;
    const nodes = [...gates, ...translated.nodes];
    const anc = new Set(dep ? [dep.id, ...(ancestors.get(dep.id) ?? [])] : []);
    for (const r of reads) {
      if (!anc.has(r.task))
        problems.push(
          `task "${r.owner}": condition ${JSON.stringify(r.c)} reads the result of "${r.task}", which has not run before "${t.id}"`,
        );
    }
    const when = allOf(nodes);
    const cel = when ? renderCel(when) : undefined;
    if (cel) {
      const err = checkBool(cel);
      if (err) problems.push(`task "${t.id}": the translated condition does not compile (${err}): ${cel}`);
    }
    // a task's other inputs (a model's artifacts) are not sent: MONAI would send them too
    const others = t.artifacts.input.filter((a) => artifactSource(a.value).kind !== "study");
    if (others.length > 0)
      problems.push(
        `task "${t.id}": exports the received study and ${others.map((a) => `"${a.name}"`).join(", ")} in one task; radflow sends the study or a step's results per export — split it into two export tasks`,
      );
    const names = destinationNames(t);
    const entries = names.map((destination) => ({
      destination,
      content: "study" as const,
      ...(cel ? { when: cel } : {}),
    }));
    let owner = depStep;
    if (!owner) {
      const base = dnsLabel(t.id, 40) || "forward";
      let name = base;
      for (let n = 2; used.has(name); n++) name = `${base.slice(0, 40 - String(n).length - 1)}-${n}`;
      used.add(name);
      stepNames.set(t.id, name);
      steps.push({ name });
      owner = name;
    }
    stepExports.set(owner, [...(stepExports.get(owner) ?? []), ...entries]);
    notes.push(
      `export "${t.id}": forwards the received study${cel ? ` when ${cel}` : ""}, as received, ${depStep ? `after step "${depStep}"` : `from step "${owner}", which runs no Job`}, by radflow's gateway to DICOMDestination ${names.join(", ")} (create ${names.length === 1 ? "it" : "them"}; MONAI named ${t.export_destinations.map((d) => d.name).join(", ")}).`,
    );
  };
  const exportTask = (t: MonaiTask) => {
    const { dep: first, conditions } = pathTo(t, new Set());
    // after a clinical review, the results exported are the reviewed model's, and only once the
    // review accepted them (MONAI goes on from a review only after an acceptance)
    let dep = first;
    const gates: CelNode[] = [];
    while (dep && REVIEW_TYPES.has(dep.type)) {
      const review = stepOf(dep.id);
      if (review) gates.push(...acceptedGate(review));
      dep = pathTo(dep, new Set()).dep;
    }
    const depStep = dep ? stepOf(dep.id) : undefined;
    const forwards = t.artifacts.input.some((a) => artifactSource(a.value).kind === "study");
    if (forwards) {
      forwardTask(t, depStep, dep, conditions, gates);
      return;
    }
    if (!depStep) {
      problems.push(
        `task "${t.id}": an export with neither the received study nor a model's results as input has nothing radflow can send`,
      );
    } else if (conditions.length > 0 || gates.length > 0) {
      const translated = translate(conditions);
      const reads = translated.reads;
      const nodes = [...gates, ...translated.nodes];
      const anc = new Set([dep!.id, ...(ancestors.get(dep!.id) ?? [])]);
      for (const r of reads) {
        if (!anc.has(r.task))
          problems.push(
            `task "${r.owner}": condition ${JSON.stringify(r.c)} reads the result of "${r.task}", which has not run before "${t.id}"`,
          );
      }
      const when = allOf(nodes);
      if (when) {
        const cel = renderCel(when);
        const err = checkBool(cel);
        if (err) problems.push(`task "${t.id}": the translated condition does not compile (${err}): ${cel}`);
        const names: string[] = [];
        for (const d of t.export_destinations) {
          const destination = dnsLabel(d.name, 253);
          if (!destination) {
            problems.push(
              `task "${t.id}": export destination ${JSON.stringify(d.name)} cannot name a DICOMDestination`,
            );
            continue;
          }
          names.push(destination);
          stepExports.set(depStep, [...(stepExports.get(depStep) ?? []), { destination, when: cel }]);
        }
        notes.push(
          `export "${t.id}": ${conditions.length > 0 ? "conditional" : "after a clinical review"}, so a step export of "${depStep}" sent when ${cel}, by radflow's gateway to DICOMDestination ${names.join(", ")} (create ${names.length === 1 ? "it" : "them"}; MONAI named ${t.export_destinations.map((d) => d.name).join(", ")}).`,
        );
      }
      if (t.task_destinations.length > 0) problems.push(`task "${t.id}": tasks after an export are not supported`);
      if (t.export_destinations.length === 0)
        problems.push(`task "${t.id}": an export task without export_destinations`);
      return;
    } else {
      // after a conditional step it is still faithful: a Skipped step leaves nothing to export
      const anc = new Set([dep!.id, ...(ancestors.get(dep!.id) ?? [])]);
      const ctx = { ...artifactCtx(t), ancestors: anc };
      const what: string[] = [];
      for (const a of t.artifacts.input) {
        const src = artifactSource(a.value);
        if (checkTaskInput(t, a, src, ctx) && src.kind === "task") what.push(`"${src.artifact}" of "${src.taskId}"`);
      }
      if (what.length > 0) {
        notes.push(
          `export "${t.id}": MONAI exported ${what.join(", ")}; radflow exports the files the steps list in outputs.files, else the task's whole results directory.`,
        );
      }
    }
    if (t.task_destinations.length > 0) problems.push(`task "${t.id}": tasks after an export are not supported`);
    if (t.export_destinations.length === 0) problems.push(`task "${t.id}": an export task without export_destinations`);
    for (const d of t.export_destinations) exports.set(d.name, { name: d.name });
    exportSets.set(t.id, t.export_destinations.map((d) => d.name).sort());
  };
  // radflow sends every result to every destination: two export tasks naming different
  // destinations would send each one's results to the other's destinations too
  const exportSets = new Map<string, string[]>();
  // breadth-first order puts every step after the one it depends on
  const order = [...reached].map((id) => tasks.get(id)!);
  for (const t of order) {
    if (EXPORT_TYPES.has(t.type)) {
      exportTask(t);
      continue;
    }
    if (!MODEL_TYPES.has(t.type) && !REVIEW_TYPES.has(t.type)) continue;
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
    // MONAI dispatches what follows a clinical review only after an acceptance (a rejection ends
    // the review PartialFail and nothing after it runs; the workflow instance still succeeds)
    if (dep && depName && REVIEW_TYPES.has(dep.type)) nodes.unshift(...acceptedGate(depName));
    // a conditional predecessor may be Skipped, and MONAI would not have reached this task then
    else if (depName && whenOf.has(depName)) {
      nodes.unshift({ kind: "leaf", text: `${member(member("steps", depName), "phase")} == ${quote("Succeeded")}` });
    }
    const when = allOf(nodes);
    const step: StepInput = {
      name,
      ...(REVIEW_TYPES.has(t.type)
        ? reviewStep(t, depName, problems, notes)
        : { image: "", ...container(t, opts, problems, notes, artifactCtx(t)) }),
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
  const distinct = new Set([...exportSets.values()].map((d) => JSON.stringify(d)));
  if (distinct.size > 1) {
    problems.push(
      `export tasks ${[...exportSets].map(([id, d]) => `"${id}" (to ${d.join(", ")})`).join(" and ")}: unconditional exports to different destinations per task have no radflow equivalent (spec.export sends every result to every destination)`,
    );
  }
  for (const [name, list] of stepExports) {
    const step = steps.find((s) => s.name === name);
    if (step) step.export = list;
  }
  if (steps.every((s) => s.review !== undefined) && exportSets.size === 0)
    problems.push("the workflow has no docker or argo task, so nothing would run");

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
  // two destinations with the same untranslatable condition say it once
  if (problems.length > 0) throw new ImportError([...new Set(problems)]);

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
function container(
  t: MonaiTask,
  opts: ImportOptions,
  problems: string[],
  notes: string[],
  ctx: ArtifactContext,
): Partial<StepInput> {
  const out: Partial<StepInput> = {};
  const a = t.args;
  const unused: string[] = [];
  const minutes: number[] = [];
  const addMinutes = (v: string | number | null | undefined, what: string) => {
    if (v === undefined || v === null) return;
    const n = Number(v);
    // MONAI's own default (every workflow its API returns carries it)
    if (n === -1) return;
    if (!Number.isFinite(n) || n <= 0)
      problems.push(`task "${t.id}": ${what} ${JSON.stringify(v)} is not a positive number`);
    else minutes.push(n);
  };
  addMinutes(t.timeout_minutes, "timeout_minutes");
  const artifacts = mapArtifacts(t, ctx);
  const env = [...artifacts.env];
  if (t.type === "docker") {
    if (!a.container_image) problems.push(`task "${t.id}": a docker task without args.container_image`);
    else out.image = a.container_image;
    if (a.entrypoint) out.command = a.entrypoint.split(",").map((s) => rewritePaths(s, artifacts.rewrites));
    if (a.command) out.args = a.command.split(",").map((s) => rewritePaths(s, artifacts.rewrites));
    addMinutes(a.task_timeout_minutes, "task_timeout_minutes");
    // env_ args that are not artifacts are paths inside the image (models, work directory)
    for (const [k, v] of Object.entries(a)) {
      if (k.startsWith("env_") && k.length > 4 && !artifacts.consumedArgs.has(k))
        env.push({ name: k.slice(4), value: v });
    }
    for (const k of Object.keys(a)) {
      if (["container_image", "entrypoint", "command", "task_timeout_minutes"].includes(k)) continue;
      if (k.startsWith("env_") || artifacts.consumedArgs.has(k) || DOCKER_IGNORED.has(k)) continue;
      unused.push(k);
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
    out.resources = resources;
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
  // MONAI's plugins request no GPU unless the task says so; radflow's default is one
  out.resources = { ...(out.resources ?? {}), gpu: a.gpu_required?.toLowerCase() === "true" ? 1 : 0 };
  if (env.length > 0) out.env = env;
  if (artifacts.env.length > 0 || artifacts.rewrites.length > 0) {
    notes.push(
      `step for "${t.id}": artifacts are read from and written to $(RADFLOW_STUDY_DIR) and $(RADFLOW_OUTPUT_DIR), which need spec.storage.pvc.`,
    );
  }
  if (artifacts.mandatoryOutputs.length > 0) {
    // MONAI fails a task whose mandatory output artifact is missing; radflow fails the step when
    // the model does not report it, by name, in its termination message (outputs.required)
    out.outputs = { required: artifacts.mandatoryOutputs };
    notes.push(
      `step for "${t.id}": mandatory output ${artifacts.mandatoryOutputs.map((n) => `"${n}"`).join(", ")} must be reported in the model's termination message (e.g. {${artifacts.mandatoryOutputs.map((n) => `"${n}": "<path>"`).join(", ")}}), or the step fails with MissingOutput, as MONAI failed the task.`,
    );
  }
  if (minutes.length > 0) out.timeoutSeconds = Math.max(1, Math.round(Math.min(...minutes) * 60));
  if (unused.length > 0) notes.push(`step for "${t.id}": args not translated: ${unused.join(", ")}.`);
  return out;
}

/** A review step for MONAI's aide_clinical_review: the task waits for a verdict (src/controllers/review.ts). */
function reviewStep(
  t: MonaiTask,
  depName: string | undefined,
  problems: string[],
  notes: string[],
): Partial<StepInput> {
  if (!depName) {
    problems.push(`task "${t.id}": a clinical review that follows no model task has nothing to review`);
    return {};
  }
  // a rejection completes the review (accepted false); the steps and exports after it carry
  // `steps.<review>.outputs.accepted == true`, so nothing after it runs and the task succeeds —
  // MONAI's AIDE plugin reports a rejection as PartialFail, which dispatches no destination and
  // leaves the workflow instance Succeeded
  const review: NonNullable<StepInput["review"]> = { onReject: "Continue" };
  const minutes = [t.timeout_minutes]
    .map((v) => (v === undefined || v === null ? Number.NaN : Number(v)))
    .filter((n) => Number.isFinite(n) && n !== -1);
  for (const m of minutes) {
    if (m <= 0) problems.push(`task "${t.id}": timeout_minutes ${m} is not a positive number`);
    else review.timeoutSeconds = Math.max(1, Math.round(m * 60));
  }
  const reviewed = t.args.reviewed_task_id;
  notes.push(
    `review "${t.id}": the task waits (condition AwaitingReview) until a reviewer runs \`radflow review accept|reject <task>\`; a rejection runs nothing after the review and exports nothing, and the task still succeeds, as in MONAI${reviewed ? ` (MONAI showed the reviewer the results of "${reviewed}")` : ""}. Reviewers are Kubernetes users who may patch InferenceTasks${t.args.reviewer_roles ? ` (MONAI's reviewer_roles "${t.args.reviewer_roles}" becomes your RBAC)` : ""}.`,
  );
  const ui = Object.keys(t.args).filter((k) => !REVIEW_UI_ARGS.has(k));
  if (ui.length > 0) notes.push(`review "${t.id}": args not translated: ${ui.join(", ")}.`);
  return { review };
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
