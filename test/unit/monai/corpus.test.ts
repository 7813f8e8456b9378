// `radflow import monai` over the whole public MONAI Deploy corpus (../shared/fixtures/monai-corpus:
// 50 published Workflow Manager workflows). Every file either converts — and then the result is
// checked against what MONAI does, read from the JSON by this test on its own (case-insensitive
// keys, conditions on the path, GPU, timeouts, artifacts, exports) — or is refused for a reason
// listed here, each a single line naming the task and the feature.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AIWorkflow, type Study } from "../../../src/api/v1alpha1/index.ts";
import { compileBool } from "../../../src/expr/cel.ts";
import { ImportError, type ImportResult, importMonai } from "../../../src/monai/convert.ts";
import { sharedPath, withoutShared } from "../../support/shared.ts";

const DIR = sharedPath("fixtures", "monai-corpus", "workflows");
const skip = withoutShared(import.meta.filename);

type Json = Record<string, unknown>;

/** The workflow inside a file: API responses wrap it (a WorkflowRevision, or a page of them). */
function unwrap(j: Json): Json {
  const data = j.data as Json[] | undefined;
  if (Array.isArray(data) && data[0]?.workflow) return data[0].workflow as Json;
  if (!j.tasks && j.workflow && typeof j.workflow === "object") return j.workflow as Json;
  return j;
}

/** A key read as .NET reads it: case-insensitively. */
function get(o: unknown, key: string): unknown {
  if (!o || typeof o !== "object") return undefined;
  const k = Object.keys(o).find((x) => x.toLowerCase() === key);
  return k === undefined ? undefined : (o as Json)[k];
}
const arr = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);
const conditionsOf = (d: Json): string[] => {
  const c = get(d, "conditions");
  const list = typeof c === "string" ? [c] : Array.isArray(c) ? (c as string[]) : [];
  return list.filter((x) => x.trim() !== "");
};

/** Refused files and why: every refusal is one of these, and each is a real gap or a broken file. */
const REFUSED: Record<string, RegExp> = {
  // MONAI's own validator rejects a destination that is no task
  "Clinical_Workflows__lung_seg.json": /task "lung-seg": destination "export-report" is not a task/,
  // the e2e scenario expects MONAI to fail the task: a mandatory input nobody produces
  "input_artefacts_mandatory_missing.json": /task "argo-task-2": mandatory input artifact "report-pdf-2"/,
  // the export reads artifact "report" of a task whose output is "report-dicom"
  "argo_workflow_long_running@1db51644.json":
    /task "export-report": mandatory input artifact "report-dicom" reads "report"/,
  // `context.executions.<task>.report-dicom` lacks `.artifacts.`: MONAI resolves nothing
  "PUT_Workflow.json": /task "export-report": mandatory input artifact .* not an artifact MONAI resolves/,
  // `context.input.dicom.series…` is not a path MONAI's condition parser knows
  "router_workflow_2.json": /task "router-task": condition .*context\.input\.dicom\.series.* is not supported/,
  // 2021 design drafts in another schema
  "scenario1.json": /not a MONAI Workflow Manager workflow: .*2021 design-draft/,
  "scenario1copy.json": /not a MONAI Workflow Manager workflow: .*2021 design-draft/,
};
const refusedFor = (file: string) => Object.entries(REFUSED).find(([suffix]) => file.endsWith(suffix))?.[1];

const files = skip ? [] : readdirSync(DIR).filter((f) => f.endsWith(".json"));
const load = (f: string) => unwrap(JSON.parse(readFileSync(path.join(DIR, f), "utf8")) as Json);
/** The image `--image <task>=<image>` would give each argo task (its template is Argo's, not ours). */
const imagesFor = (wf: Json) =>
  Object.fromEntries(
    arr(get(wf, "tasks"))
      .filter((t) => get(t, "type") === "argo")
      .map((t) => [get(t, "id") as string, `registry.example.org/${String(get(t, "id")).toLowerCase()}:1`]),
  );

function attempt(f: string): { ok: true; result: ImportResult } | { ok: false; problems: string[] } {
  const wf = load(f);
  try {
    return { ok: true, result: importMonai(wf, { images: imagesFor(wf) }) };
  } catch (e) {
    if (e instanceof ImportError) return { ok: false, problems: e.problems };
    throw e;
  }
}

/** MONAI's view of a model task: is it reached only under a condition (on its path, any step)? */
function conditionalTasks(wf: Json): Set<string> {
  const tasks = arr(get(wf, "tasks"));
  const byId = new Map(tasks.map((t) => [get(t, "id") as string, t]));
  const out = new Set<string>();
  const visit = (t: Json, conditional: boolean) => {
    for (const d of arr(get(t, "task_destinations"))) {
      const to = byId.get(get(d, "name") as string);
      if (!to) continue;
      const c = conditional || conditionsOf(d).length > 0;
      if (c) out.add(get(to, "id") as string);
      visit(to, c);
    }
  };
  visit(tasks[0]!, false);
  return out;
}

describe.skipIf(skip)("the MONAI Deploy corpus", () => {
  it("has the 50 published workflows", () => {
    expect(files.length).toBe(50);
  });

  it("converts every file but the listed ones, and refuses those in one line naming task and feature", () => {
    const wrongOutcome: string[] = [];
    for (const f of files) {
      const r = attempt(f);
      const expected = refusedFor(f);
      if (r.ok && expected) wrongOutcome.push(`${f}: converted, expected a refusal matching ${expected}`);
      if (!r.ok) {
        for (const p of r.problems) {
          expect(p, f).not.toContain("\n");
          expect(p, f).toMatch(/^(task "[^"]+"|export tasks |the file )/);
        }
        if (!expected) wrongOutcome.push(`${f}: refused: ${r.problems.join(" | ")}`);
        else if (!r.problems.some((p) => expected.test(p))) wrongOutcome.push(`${f}: ${r.problems.join(" | ")}`);
      }
    }
    expect(wrongOutcome).toEqual([]);
    expect(files.filter((f) => !refusedFor(f)).length).toBe(43);
  });

  it("converts faithfully: steps, conditions, GPU, timeouts, artifacts and exports as MONAI runs them", () => {
    const wrong: string[] = [];
    for (const f of files) {
      const r = attempt(f);
      if (!r.ok) continue;
      const wf = load(f);
      const { workflow, stepNames } = r.result;
      const say = (what: string) => wrong.push(`${f}: ${what}`);
      const parsed = AIWorkflow.safeParse(workflow);
      if (!parsed.success) say(`invalid: ${parsed.error.message}`);
      // forwarding steps (no image, no review) run no model: MONAI's export tasks of the study
      const forwarding = workflow.spec.steps.filter((s) => !s.image && !s.review);
      const steps = new Map(workflow.spec.steps.filter((s) => s.image || s.review).map((s) => [s.name, s]));
      const conditional = conditionalTasks(wf);
      const models = arr(get(wf, "tasks")).filter((t) => ["docker", "argo"].includes(get(t, "type") as string));
      if (models.length !== steps.size) say(`${models.length} model tasks, ${steps.size} steps`);
      for (const t of models) {
        const id = get(t, "id") as string;
        const step = steps.get(stepNames.get(id) ?? "");
        if (!step) {
          say(`task ${id} has no step`);
          continue;
        }
        const args = (get(t, "args") ?? {}) as Json;
        // a condition anywhere on the way must survive (lost "Conditions" ran every model)
        if (conditional.has(id) !== (step.when !== undefined))
          say(`task ${id}: conditional ${conditional.has(id)}, when ${step.when}`);
        const gpu = String(get(args, "gpu_required") ?? "").toLowerCase() === "true" ? 1 : 0;
        if (step.resources?.gpu !== gpu) say(`task ${id}: gpu ${step.resources?.gpu}, MONAI requests ${gpu}`);
        const limits = [get(t, "timeout_minutes"), args.task_timeout_minutes]
          .map(Number)
          .filter((n) => Number.isFinite(n) && n > 0);
        const expectedTimeout = limits.length ? Math.min(...limits) * 60 : undefined;
        if (step.timeoutSeconds !== expectedTimeout)
          say(`task ${id}: timeout ${step.timeoutSeconds}, expected ${expectedTimeout}`);
        // the study reaches the container wherever MONAI put it
        const where = JSON.stringify([step.env ?? [], step.command ?? [], step.args ?? []]);
        const artifacts = get(t, "artifacts");
        for (const a of arr(get(artifacts, "input"))) {
          if (/context\.input\.dicom/.test(String(get(a, "value"))) && !where.includes("$(RADFLOW_STUDY_DIR)")) {
            say(`task ${id}: input artifact ${get(a, "name")} does not reach the container`);
          }
        }
        for (const _ of arr(get(artifacts, "output"))) {
          if (!where.includes("$(RADFLOW_OUTPUT_DIR)"))
            say(`task ${id}: outputs are not written to RADFLOW_OUTPUT_DIR`);
        }
        // MONAI fails the task when a mandatory output (mandatory unless said otherwise) is missing
        const mandatory = arr(get(artifacts, "output"))
          .filter((a) => get(a, "mandatory") !== false)
          .map((a) => get(a, "name") as string);
        const required = step.outputs?.required ?? [];
        if (mandatory.sort().join() !== [...required].sort().join())
          say(`task ${id}: required outputs ${required}, MONAI's mandatory ones ${mandatory}`);
      }
      // an export of {{ context.input.dicom }} sends the study: content study, to each destination
      const dnsName = (n: string) =>
        n
          .toLowerCase()
          .replace(/[^a-z0-9]+/g, "-")
          .replace(/^-+|-+$/g, "");
      const studyExports = arr(get(wf, "tasks")).filter(
        (t) =>
          get(t, "type") === "export" &&
          arr(get(get(t, "artifacts"), "input")).some((a) => /context\.input\.dicom/.test(String(get(a, "value")))),
      );
      const sentStudy = workflow.spec.steps.flatMap((st) =>
        (st.export ?? []).filter((e) => e.content === "study").map((e) => e.destination),
      );
      const wantStudy = studyExports.flatMap((t) =>
        arr(get(t, "export_destinations")).map((d) => dnsName(get(d, "name") as string)),
      );
      if (wantStudy.sort().join() !== sentStudy.sort().join())
        say(`sends the study to ${sentStudy}, MONAI forwards it to ${wantStudy}`);
      for (const st of forwarding)
        if (!st.export?.length || st.export.some((e) => e.content !== "study"))
          say(`step ${st.name} runs nothing and forwards nothing`);
      const destinations = new Set(
        arr(get(wf, "tasks"))
          .filter((t) => get(t, "type") === "export")
          .flatMap((t) => arr(get(t, "export_destinations")).map((d) => get(d, "name") as string)),
      );
      // unconditional exports keep MONAI's names (spec.export); conditional ones are step exports
      // to DICOMDestinations, whose names are DNS labels: compare both in that form
      const dns = (n: string) =>
        n
          .toLowerCase()
          .replace(/[^a-z0-9]+/g, "-")
          .replace(/^-+|-+$/g, "");
      const exported = new Set([
        ...(workflow.spec.export ?? []).map((d) => dns(d.name)),
        ...workflow.spec.steps.flatMap((st) => (st.export ?? []).map((e) => e.destination)),
      ]);
      if ([...destinations].map(dns).sort().join() !== [...exported].sort().join()) {
        say(`exports to ${[...exported]}, MONAI to ${[...destinations]}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  // the files whose "Name"/"Conditions" lost every condition before: each branch runs only for its studies
  const series = (modality: string, bodyPart?: string): Study => ({
    studyInstanceUID: "2.25.1",
    calledAETitle: "MONAI",
    series: [
      {
        seriesInstanceUID: "2.25.2",
        modality,
        numberOfInstances: 10,
        ...(bodyPart ? { bodyPartExamined: bodyPart } : {}),
      },
    ],
  });
  const runs = (f: string, study: Study, done: Record<string, string> = {}) => {
    const r = attempt(f);
    if (!r.ok) throw new Error(r.problems.join("\n"));
    const stepsState = Object.fromEntries(Object.entries(done).map(([s, phase]) => [s, { phase, outputs: {} }]));
    return r.result.workflow.spec.steps
      .filter((s) => {
        if (!s.when) return true;
        const v = compileBool(s.when)({ study, steps: stepsState });
        if (!v.ok) throw new Error(v.error);
        return v.value;
      })
      .map((s) => s.name);
  };
  const file = (suffix: string) => files.find((f) => f.endsWith(suffix))!;

  it('router_workflow_1 ("Conditions"): an MR study runs the MR model only, a US study the US model only', () => {
    const f = file("router_workflow_1.json");
    expect(runs(f, series("MR"))).toEqual(["argo-task-mr"]);
    expect(runs(f, series("US"))).toEqual(["argo-task-us"]);
    expect(runs(f, series("CT"))).toEqual([]);
  });

  it('task_destination_conditions (a "Conditions" string): the chest model runs on chest CTs only', () => {
    const f = file("task_destination_conditions@1db51644.json");
    const after = { "argo-task-ct": "Succeeded" };
    expect(runs(f, series("CT", "CHEST"), after)).toEqual(["argo-task-ct", "argo-task-ct-chest"]);
    expect(runs(f, series("CT", "HEAD"), after)).toEqual(["argo-task-ct"]);
  });

  it("the API's responses (timeout_minutes -1, boolean args) convert with radflow's defaults", () => {
    for (const suffix of ["workflow.md--code-block-2.json", "workflow.md--code-block-6.json"]) {
      const r = attempt(file(suffix));
      if (!r.ok) throw new Error(r.problems.join("\n"));
      const step = r.result.workflow.spec.steps[0]!;
      expect(step.timeoutSeconds).toBeUndefined();
      expect(step.resources).toEqual({ gpu: 0 });
      expect(step.env).toContainEqual({ name: "INPUT_DICOM", value: "$(RADFLOW_STUDY_DIR)" });
      expect(step.env).toContainEqual({ name: "REPORT_PDF", value: "$(RADFLOW_OUTPUT_DIR)" });
    }
  });
});
