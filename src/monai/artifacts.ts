// MONAI artifacts -> radflow's model contract.
//
// MONAI copies a task's input artifacts into the container and collects its output artifacts
// afterwards. radflow gives every step the study in RADFLOW_STUDY_DIR and a directory of its own,
// RADFLOW_OUTPUT_DIR (= <mountPath>/results/<task>/<step>, spec.storage.pvc), so:
//   input  {{ context.input.dicom }}                 -> $(RADFLOW_STUDY_DIR)
//   input  {{ context.executions.T.artifacts.A }}    -> $(RADFLOW_OUTPUT_DIR)/../<step of T>[/A]
//   output A                                         -> $(RADFLOW_OUTPUT_DIR)[/A]
// ([/A] when the producing task declares more than one output.) Kubernetes expands $(VAR) in env
// values, command and args from the variables defined before them, and the RADFLOW_* ones are.
// Where the model finds each artifact:
//   docker, artifact `env_X`        -> env X (MONAI's Docker plugin sets X to the container path)
//   docker, artifact named by a plain arg (MYINPUT: /var/monai/input/)
//                                   -> that path in command/args is rewritten to the location
//   otherwise (argo: the Argo template placed it) -> env <NAME> (upper case, '_' for the rest)
// Mandatory outputs become the step's outputs.required (convert.ts): the model reports each by
// name in its termination message, or the step fails with MissingOutput, as MONAI fails the task.
import type { MonaiArtifact, MonaiTask } from "./workflow.ts";

export const STUDY = "$(RADFLOW_STUDY_DIR)";
const OUT = "$(RADFLOW_OUTPUT_DIR)";

export type ArtifactSource =
  | { kind: "study" }
  | { kind: "task"; taskId: string; artifact: string }
  | { kind: "unknown"; text: string };

/** What an input artifact's value refers to. */
export function artifactSource(value: string): ArtifactSource {
  const m = /^\s*\{\{\s*(.*?)\s*\}\}\s*$/.exec(value);
  const path = m?.[1] ?? value.trim();
  if (path === "context.input.dicom") return { kind: "study" };
  const t = /^context\.executions\.(.+)\.artifacts\.([^.]+)$/.exec(path);
  if (t) return { kind: "task", taskId: t[1]!, artifact: t[2]! };
  return { kind: "unknown", text: value };
}

/** Where task `t`'s output artifact `name` is, seen from the step of task `from` (undefined: itself). */
function outputLocation(t: MonaiTask, name: string, stepOfOther?: string): string {
  const base = stepOfOther ? `${OUT}/../${stepOfOther}` : OUT;
  return t.artifacts.output.length > 1 ? `${base}/${name}` : base;
}

/** An environment variable name for an artifact name (upper case, '_' for anything else). */
export function envName(artifact: string): string {
  const n = artifact.toUpperCase().replace(/[^A-Z0-9_]/g, "_");
  return /^[A-Z_]/.test(n) ? n : `_${n}`;
}

export interface ArtifactMapping {
  env: { name: string; value: string }[];
  /** container path -> location, for command and args */
  rewrites: [string, string][];
  /** env_ args that are artifacts (their value is replaced, not copied) */
  consumedArgs: Set<string>;
  /** mandatory output artifact names */
  mandatoryOutputs: string[];
}

export interface ArtifactContext {
  tasks: Map<string, MonaiTask>;
  stepOf: (taskId: string) => string | undefined;
  /** task ids that have run before this task */
  ancestors: Set<string>;
  problems: string[];
  notes: string[];
}

/** Checks an input artifact that reads an earlier task's output; a broken mandatory one is a problem. */
export function checkTaskInput(t: MonaiTask, a: MonaiArtifact, src: ArtifactSource, ctx: ArtifactContext): boolean {
  const say = (why: string) => {
    if (a.mandatory) {
      ctx.problems.push(
        `task "${t.id}": mandatory input artifact "${a.name}" ${why}; MONAI fails the task when it is missing`,
      );
    } else ctx.notes.push(`task "${t.id}": optional input artifact "${a.name}" ${why}; it is left out.`);
    return false;
  };
  if (src.kind === "unknown") return say(`reads ${JSON.stringify(src.text)}, which is not an artifact MONAI resolves`);
  if (src.kind === "study") return true;
  const from = ctx.tasks.get(src.taskId);
  if (!from) return say(`reads task "${src.taskId}", which is not a task of this workflow`);
  if (!from.artifacts.output.some((o) => o.name === src.artifact)) {
    return say(`reads "${src.artifact}" of "${src.taskId}", which that task does not produce`);
  }
  if (!ctx.ancestors.has(src.taskId)) return say(`reads "${src.taskId}", which has not run before "${t.id}"`);
  return true;
}

/** The env and command rewrites that put a model task's artifacts where its container expects them. */
export function mapArtifacts(t: MonaiTask, ctx: ArtifactContext): ArtifactMapping {
  const m: ArtifactMapping = { env: [], rewrites: [], consumedArgs: new Set(), mandatoryOutputs: [] };
  const place = (a: MonaiArtifact, location: string) => {
    if (t.type === "docker" && a.name.startsWith("env_") && a.name.length > 4) {
      m.env.push({ name: a.name.slice(4), value: location });
      m.consumedArgs.add(a.name);
      const containerPath = t.args[a.name];
      if (containerPath) m.rewrites.push([containerPath, location]);
    } else if (t.type === "docker" && t.args[a.name] !== undefined) {
      m.rewrites.push([t.args[a.name]!, location]);
      m.consumedArgs.add(a.name);
    } else {
      m.env.push({ name: envName(a.name), value: location });
    }
  };
  for (const a of t.artifacts.input) {
    const src = artifactSource(a.value);
    if (!checkTaskInput(t, a, src, ctx)) continue;
    if (src.kind === "study") place(a, STUDY);
    else if (src.kind === "task") {
      const from = ctx.tasks.get(src.taskId)!;
      place(a, outputLocation(from, src.artifact, ctx.stepOf(src.taskId)));
    }
  }
  for (const a of t.artifacts.output) {
    place(a, outputLocation(t, a.name));
    if (a.mandatory) m.mandatoryOutputs.push(a.name);
  }
  return m;
}

/** `s` with every container path replaced by its location (with or without its trailing '/'). */
export function rewritePaths(s: string, rewrites: [string, string][]): string {
  let out = s;
  for (const [from, to] of rewrites) {
    const bare = from.replace(/\/+$/, "");
    if (!bare) continue;
    // a whole path only: /var/monai/input must not match inside /var/monai/inputs
    const re = new RegExp(`${bare.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/?(?![A-Za-z0-9_.-])`, "g");
    out = out.replace(re, to);
  }
  return out;
}
