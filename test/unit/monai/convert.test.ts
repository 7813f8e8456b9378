// MONAI workflow -> AIWorkflow: the fixture, router folding, step names, task args, and the
// workflows that must be refused rather than half-translated.
import { beforeAll, describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/index.ts";
import { compileBool } from "../../../src/expr/cel.ts";
import { ImportError, importMonai } from "../../../src/monai/convert.ts";
import { readShared, withoutShared } from "../../support/shared.ts";

type Task = Record<string, unknown>;
const gateway = { ae_title: "MONAI-DEPLOY", data_origins: ["PACS1"], export_destinations: ["PACS1"] };
const docker = (
  id: string,
  destinations: { name: string; conditions?: string[] }[] = [],
  args: Record<string, string> = {},
): Task => ({
  id,
  type: "docker",
  args: { container_image: `registry.example.org/${id}:1`, ...args },
  task_destinations: destinations,
});
const router = (id: string, destinations: { name: string; conditions?: string[] }[]): Task => ({
  id,
  type: "router",
  task_destinations: destinations,
});
const wf = (tasks: Task[], extra: Record<string, unknown> = {}) => ({
  name: "test",
  informatics_gateway: gateway,
  tasks,
  ...extra,
});

function problems(input: unknown, opts = {}): string[] {
  try {
    importMonai(input, opts);
  } catch (e) {
    if (e instanceof ImportError) return e.problems;
    throw e;
  }
  throw new Error("imported without an error");
}

const modality = (m: string) => `{{ context.dicom.series.any('0008','0060') }} == '${m}'`;

describe.skipIf(withoutShared(import.meta.filename))("importMonai: the liver/lung fixture", () => {
  // imported when the suite runs: without ../shared it is skipped and the file still loads
  const imported = () =>
    importMonai(JSON.parse(readShared("fixtures/monai/liver-lung-seg.workflow.json")), { namespace: "radiology" });
  let workflow: ReturnType<typeof importMonai>["workflow"];
  let stepNames: ReturnType<typeof importMonai>["stepNames"];
  let spec: ReturnType<typeof importMonai>["workflow"]["spec"];
  beforeAll(() => {
    ({ workflow, stepNames } = imported());
    spec = workflow.spec;
  });

  it("is a valid AIWorkflow", () => {
    expect(AIWorkflow.safeParse(workflow).error?.issues).toBeUndefined();
    expect(workflow.metadata).toMatchObject({ name: "all-in-one", namespace: "radiology" });
  });

  it("turns the gateway into the trigger and the export tasks into export destinations", () => {
    expect(spec.trigger).toEqual({ sources: { calledAETitles: ["MONAI-DEPLOY"], callingAETitles: ["ORTHANC"] } });
    expect(spec.export).toEqual([{ name: "ORTHANC" }]);
  });

  it("folds the router into the two model steps' conditions", () => {
    expect(spec.steps.map((s) => s.name)).toEqual(["ailiver", "ailung"]);
    expect(spec.steps.every((s) => s.dependsOn === undefined)).toBe(true);
    expect(spec.steps[0]!.when).toContain("'CT series for liver tumor from nii 014'");
    expect(spec.steps[1]!.when).toContain("'Axial Chest CT COVID-19'");
    expect([...stepNames]).toEqual([
      ["ailiver", "ailiver"],
      ["ailung", "ailung"],
    ]);
  });

  it("maps the docker args to the container", () => {
    expect(spec.steps[0]).toMatchObject({
      image: "ghcr.io/mmelqin/monai_ai_livertumor_seg_app:1.0",
      command: ["/bin/bash", "-c"],
      args: ["python3 -u /opt/monai/app/app.py"],
      timeoutSeconds: 300,
    });
    // the artifacts' env point at radflow's study and output directories; the rest stay image paths
    expect(spec.steps[0]!.env).toEqual([
      { name: "MONAI_INPUTPATH", value: "$(RADFLOW_STUDY_DIR)" },
      { name: "MONAI_OUTPUTPATH", value: "$(RADFLOW_OUTPUT_DIR)" },
      { name: "MONAI_MODELPATH", value: "/opt/monai/models/" },
      { name: "MONAI_WORKDIR", value: "/var/monai/" },
    ]);
    expect(spec.steps[0]!.resources).toEqual({ gpu: 0 });
    expect(JSON.stringify(spec.steps[0])).not.toContain("docker.sock");
  });

  it("selects exactly the branch whose series description matches", () => {
    const select = (description: string) =>
      spec.steps.filter((s) => {
        const r = compileBool(s.when!)({
          study: { series: [{ modality: "CT", seriesDescription: description, numberOfInstances: 1 }] },
          steps: {},
        });
        if (!r.ok) throw new Error(r.error);
        return r.value;
      });
    expect(select("CT series for liver tumor from nii 014").map((s) => s.name)).toEqual(["ailiver"]);
    expect(select("Axial Chest CT COVID-19").map((s) => s.name)).toEqual(["ailung"]);
    expect(select("Head CT")).toEqual([]);
  });
});

describe("importMonai: graphs", () => {
  it("folds a router after a step: dependsOn the step, the router's conditions ANDed in order", () => {
    const { workflow } = importMonai(
      wf([
        router("entry", [{ name: "detect", conditions: [modality("CR")] }]),
        docker("detect", [{ name: "route" }]),
        router("route", [
          { name: "identify", conditions: ["{{ context.executions.detect.result.device }} == 'true'"] },
          { name: "report", conditions: ["{{ context.executions.detect.result.device }} == 'false'"] },
        ]),
        docker("identify"),
        docker("report"),
      ]),
    );
    const [detect, identify, report] = workflow.spec.steps;
    expect(detect).toMatchObject({ name: "detect", when: "study.series.exists(s, s.modality == 'CR')" });
    expect(detect!.dependsOn).toBeUndefined();
    // detect may be Skipped (its when), and MONAI would not have gone on then
    expect(identify).toMatchObject({
      dependsOn: ["detect"],
      when: "steps.detect.phase == 'Succeeded' && string(steps.detect.outputs.device) == 'true'",
    });
    expect(report!.when).toBe("steps.detect.phase == 'Succeeded' && string(steps.detect.outputs.device) == 'false'");
  });

  it("ANDs a chain of routers and several conditions on one destination", () => {
    const { workflow } = importMonai(
      wf([
        router("r1", [{ name: "r2", conditions: [modality("CT")] }]),
        router("r2", [
          {
            name: "seg",
            conditions: [
              "{{ context.dicom.series.any('0018','0015') }} == 'CHEST' OR {{ context.dicom.series.any('0018','0015') }} == 'LUNG'",
              "{{ context.dicom.series.any('0008','103E') }} CONTAINS 'thin'",
            ],
          },
        ]),
        docker("seg"),
      ]),
    );
    expect(workflow.spec.steps[0]!.when).toBe(
      "study.series.exists(s, s.modality == 'CT') && (study.series.exists(s, has(s.bodyPartExamined) && s.bodyPartExamined == 'CHEST') || study.series.exists(s, has(s.bodyPartExamined) && s.bodyPartExamined == 'LUNG')) && study.series.exists(s, has(s.seriesDescription) && s.seriesDescription.contains('thin'))",
    );
  });

  it("an unconditional chain needs no when", () => {
    const { workflow } = importMonai(wf([docker("a", [{ name: "b" }]), docker("b")]));
    expect(workflow.spec.steps[1]).toMatchObject({ name: "b", dependsOn: ["a"] });
    expect(workflow.spec.steps[1]!.when).toBeUndefined();
  });

  it("makes DNS-label step names, unique and stable, and records the map", () => {
    const { workflow, stepNames } = importMonai(
      wf([
        docker("Lung_Seg", [{ name: "lung-seg" }]),
        docker("lung-seg", [{ name: "x".repeat(60) }]),
        docker("x".repeat(60)),
      ]),
    );
    expect(workflow.spec.steps.map((s) => s.name)).toEqual(["lung-seg", "lung-seg-2", "x".repeat(40)]);
    expect(stepNames.get("lung-seg")).toBe("lung-seg-2");
    expect(workflow.spec.steps[1]!.dependsOn).toEqual(["lung-seg"]);
    expect(JSON.parse(workflow.metadata.annotations!["radflow.io/monai-task-ids"]!)).toEqual({
      "lung-seg": "Lung_Seg",
      "lung-seg-2": "lung-seg",
      ["x".repeat(40)]: "x".repeat(60),
    });
  });

  it("uses task references with the step names they map to", () => {
    const { workflow } = importMonai(
      wf([
        docker("Det_1", [{ name: "id", conditions: ["{{ context.executions.Det_1.result.found }} == 'true'"] }]),
        docker("id"),
      ]),
    );
    expect(workflow.spec.steps[1]!.when).toBe("string(steps['det-1'].outputs.found) == 'true'");
  });
});

describe("importMonai: task args", () => {
  it("takes the smaller of timeout_minutes and task_timeout_minutes", () => {
    const t = { ...docker("a", [], { task_timeout_minutes: "30" }), timeout_minutes: 10 };
    expect(importMonai(wf([t])).workflow.spec.steps[0]!.timeoutSeconds).toBe(600);
  });

  it("maps an argo task with --image, its resources and timeout, and never copies credentials", () => {
    const argo = {
      id: "seg",
      type: "argo",
      args: {
        workflow_template_name: "spleen-seg",
        server_url: "https://argo:2746",
        apiToken: "secret-token",
        cpu: "2",
        memory: "8Gi",
        gpu_required: "true",
        timeoutSeconds: "900",
      },
    };
    const { workflow } = importMonai(wf([argo]), { images: { seg: "registry.example.org/spleen-seg:2" } });
    expect(workflow.spec.steps[0]).toEqual({
      name: "seg",
      image: "registry.example.org/spleen-seg:2",
      resources: { cpu: "2", memory: "8Gi", gpu: 1 },
      timeoutSeconds: 900,
    });
    expect(JSON.stringify(workflow)).not.toContain("secret-token");
  });

  it("notes the args it does not translate", () => {
    const { notes } = importMonai(wf([docker("a", [], { shm_size: "2g" })]));
    expect(notes.join("\n")).toContain("shm_size");
  });
});

describe("importMonai: refuses what it cannot translate", () => {
  it.each([
    [
      "an untranslatable condition, naming the task and the expression",
      wf([router("r", [{ name: "a", conditions: ["{{ context.input.patient_details.sex }} == 'F'"] }]), docker("a")]),
      /task "r": condition "\{\{ context\.input\.patient_details\.sex \}\} == 'F'": .*not supported/,
    ],
    [
      "a condition reading a task that has not run yet",
      wf([
        router("r", [{ name: "a" }, { name: "b", conditions: ["{{ context.executions.a.result.x }} == '1'"] }]),
        docker("a"),
        docker("b"),
      ]),
      /task "r": condition .* reads the result of "a", which has not run before "b"/,
    ],
    [
      "an argo task without an image",
      wf([{ id: "seg", type: "argo", args: { workflow_template_name: "t" } }]),
      /--image seg=<image>/,
    ],
    [
      "a docker task without an image",
      wf([{ id: "a", type: "docker", args: {} }]),
      /task "a": a docker task without args.container_image/,
    ],
    [
      "an unsupported task type",
      wf([docker("a", [{ name: "hl7" }]), { id: "hl7", type: "export_hl7" }]),
      /type "export_hl7" has no radflow equivalent/,
    ],
    [
      "a clinical review with nothing before it",
      wf([{ id: "review", type: "aide_clinical_review", args: {} }]),
      /task "review": a clinical review that follows no model task has nothing to review/,
    ],
    [
      "a destination that is not a task",
      wf([docker("a", [{ name: "nowhere" }])]),
      /destination "nowhere" is not a task/,
    ],
    ["an unreachable task", wf([docker("a"), docker("b")]), /task "b": not reachable/],
    [
      "a task reached twice (a join)",
      wf([
        router("r", [{ name: "a" }, { name: "b" }]),
        docker("a", [{ name: "c" }]),
        docker("b", [{ name: "c" }]),
        docker("c"),
      ]),
      /task "c": is a destination of "a" and "b"/,
    ],
    ["a loop back to the entry", wf([docker("a", [{ name: "b" }]), docker("b", [{ name: "a" }])]), /loop/],
    ["a workflow without a gateway AE title", { name: "x", tasks: [docker("a")] }, /ae_title is missing/],
    [
      "a 17-character AE title",
      wf([docker("a")], { informatics_gateway: { ae_title: "MONAI-DEPLOY-GW-1" } }),
      /calledAETitles/,
    ],
    ["duplicate task ids", wf([docker("a", [{ name: "a" }]), docker("a")]), /the id is used twice/],
    [
      "a bad timeout",
      wf([{ ...docker("a"), timeout_minutes: "soon" }]),
      /timeout_minutes "soon" is not a positive number/,
    ],
    ["not a workflow at all", { tasks: "no" }, /name|tasks/],
  ])("%s", (_, input, why) => {
    expect(problems(input).join("\n")).toMatch(why);
  });

  it("lists every problem at once", () => {
    const p = problems(
      wf([
        router("r", [
          { name: "a", conditions: ["{{ context.workflow.name }} == 'x'"] },
          { name: "b", conditions: ["{{ context.dicom.series.any('0008','0060') }} LIKE 'CT'"] },
        ]),
        docker("a"),
        docker("b"),
      ]),
    );
    expect(p).toHaveLength(2);
  });
});

describe("importMonai: read as MONAI reads it", () => {
  const argo = (id: string, extra: Record<string, unknown> = {}) => ({
    id,
    type: "argo",
    args: { workflow_template_name: "t", server_url: "https://argo:2746", allow_insecure: true },
    ...extra,
  });
  const images = { a: "registry.example.org/a:1", b: "registry.example.org/b:1" };

  it('reads "Name" and "Conditions" (any case) as MONAI does: the condition is kept', () => {
    const input = wf([
      { ID: "r", TYPE: "router", Task_Destinations: [{ Name: "a", Conditions: [modality("MR")] }] },
      docker("a"),
    ]);
    expect(importMonai(input).workflow.spec.steps[0]!.when).toBe("study.series.exists(s, s.modality == 'MR')");
    // a single "Conditions" string as well
    const single = wf([router("r", []), docker("a")]);
    (single.tasks[0] as Task).task_destinations = [{ Name: "a", Conditions: modality("US") }];
    expect(importMonai(single).workflow.spec.steps[0]!.when).toBe("study.series.exists(s, s.modality == 'US')");
  });

  it("takes timeout_minutes -1 as MONAI's default and coerces boolean and number args", () => {
    const { workflow } = importMonai(wf([argo("a", { timeout_minutes: -1 })]), { images });
    expect(workflow.spec.steps[0]!.timeoutSeconds).toBeUndefined();
    const numeric = importMonai(wf([docker("a", [], { task_timeout_minutes: 5 as unknown as string })]));
    expect(numeric.workflow.spec.steps[0]!.timeoutSeconds).toBe(300);
    expect(problems(wf([{ ...docker("a"), timeout_minutes: 0 }]))).toEqual([
      'task "a": timeout_minutes 0 is not a positive number',
    ]);
  });

  it("requests a GPU only when gpu_required is true (argo and docker)", () => {
    const gpu = (t: Task) => importMonai(wf([t]), { images }).workflow.spec.steps[0]!.resources;
    expect(gpu(argo("a"))).toEqual({ gpu: 0 });
    expect(gpu(docker("a"))).toEqual({ gpu: 0 });
    expect(gpu(argo("a", { args: { workflow_template_name: "t", gpu_required: true } }))).toEqual({ gpu: 1 });
    expect(gpu(docker("a", [], { gpu_required: "True" }))).toEqual({ gpu: 1 });
  });

  it("maps artifacts onto RADFLOW_STUDY_DIR and RADFLOW_OUTPUT_DIR (env, and paths in the command)", () => {
    const input = wf([
      {
        ...docker("a", [{ name: "b" }], {
          entrypoint: "/bin/sh,-c",
          command: "find /var/monai/input -type f > /var/monai/out/list.txt",
          MYINPUT: "/var/monai/input/",
          env_OUT: "/var/monai/out/",
        }),
        artifacts: {
          input: [{ name: "MYINPUT", value: "{{ context.input.dicom }}" }],
          output: [{ name: "env_OUT", Mandatory: true }],
        },
      },
      argo("b", {
        artifacts: {
          input: [
            { name: "input-dicom", value: "{{ context.input.dicom }}" },
            { name: "listing", value: "{{ context.executions.a.artifacts.env_OUT }}" },
          ],
          output: [{ name: "report-pdf" }, { name: "report-dicom", mandatory: false }],
        },
      }),
    ]);
    const { workflow, notes } = importMonai(input, { images });
    const [a, b] = workflow.spec.steps;
    expect(a!.args).toEqual(["find $(RADFLOW_STUDY_DIR) -type f > $(RADFLOW_OUTPUT_DIR)/list.txt"]);
    expect(a!.env).toEqual([{ name: "OUT", value: "$(RADFLOW_OUTPUT_DIR)" }]);
    expect(b!.env).toEqual([
      { name: "INPUT_DICOM", value: "$(RADFLOW_STUDY_DIR)" },
      { name: "LISTING", value: "$(RADFLOW_OUTPUT_DIR)/../a" },
      { name: "REPORT_PDF", value: "$(RADFLOW_OUTPUT_DIR)/report-pdf" },
      { name: "REPORT_DICOM", value: "$(RADFLOW_OUTPUT_DIR)/report-dicom" },
    ]);
    // mandatory outputs (MONAI's default) must be reported, else the step fails with MissingOutput
    expect(a!.outputs).toEqual({ required: ["env_OUT"] });
    expect(b!.outputs).toEqual({ required: ["report-pdf"] });
    expect(notes.join("\n")).toContain(
      'mandatory output "report-pdf" must be reported in the model\'s termination message',
    );
  });

  it("a task without mandatory outputs gets no outputs.required", () => {
    const input = wf([{ ...docker("a"), artifacts: { output: [{ name: "report", mandatory: false }] } }]);
    expect(importMonai(input).workflow.spec.steps[0]!.outputs).toBeUndefined();
  });

  it("refuses a mandatory input no task produces, and notes an optional one", () => {
    const input = (mandatory: boolean) =>
      wf([
        argo("a", { task_destinations: [{ name: "b" }], artifacts: { output: [{ name: "x" }] } }),
        argo("b", {
          artifacts: { input: [{ name: "y", value: "{{ context.executions.a.artifacts.y }}", mandatory }] },
        }),
      ]);
    expect(problems(input(true), { images })).toEqual([
      'task "b": mandatory input artifact "y" reads "y" of "a", which that task does not produce; MONAI fails the task when it is missing',
    ]);
    expect(importMonai(input(false), { images }).notes.join("\n")).toContain('optional input artifact "y"');
  });

  it("forwarding the study: alone, a forwarding step (no Job); after a model, its step export with content study", () => {
    const fwd = (extra: Task = {}) => ({
      id: "fwd",
      type: "export",
      export_destinations: [{ Name: "PACS" }, { Name: "Archive_2" }],
      artifacts: { input: [{ name: "study", value: "{{ context.input.dicom }}", mandatory: true }] },
      ...extra,
    });
    const alone = importMonai(wf([fwd()]));
    expect(alone.workflow.spec.steps).toEqual([
      {
        name: "fwd",
        export: [
          { destination: "pacs", content: "study" },
          { destination: "archive-2", content: "study" },
        ],
      },
    ]);
    expect(alone.workflow.spec.export).toBeUndefined();
    expect(AIWorkflow.safeParse(alone.workflow).success).toBe(true);
    expect(alone.notes.join("\n")).toContain(
      'forwards the received study, as received, from step "fwd", which runs no Job',
    );

    // the input exported after a model, only for a positive finding
    const after = importMonai(
      wf([
        docker("detect", [{ name: "fwd", conditions: ["{{ context.executions.detect.result.bleed }} == 'true'"] }]),
        fwd(),
      ]),
    );
    const [detect, ...rest] = after.workflow.spec.steps;
    expect(rest).toEqual([]);
    expect(detect?.export).toEqual([
      { destination: "pacs", content: "study", when: expect.stringContaining("outputs") },
      { destination: "archive-2", content: "study", when: expect.stringContaining("outputs") },
    ]);
    const when = compileBool(detect?.export?.[0]?.when as string);
    const bound = (bleed: string) => ({
      outputs: { bleed },
      steps: { detect: { phase: "Succeeded", outputs: { bleed } } },
      study: {},
    });
    expect([when(bound("true")), when(bound("false"))]).toEqual([
      { ok: true, value: true },
      { ok: true, value: false },
    ]);

    // the study and a model's artifact in one export task: two kinds of content, told to split
    const mixed = wf([
      docker("detect", [{ name: "fwd" }]),
      fwd({
        artifacts: {
          input: [
            { name: "study", value: "{{ context.input.dicom }}" },
            { name: "seg", value: "{{ context.executions.detect.artifacts.seg }}" },
          ],
        },
      }),
    ]);
    expect(problems(mixed)).toEqual([
      expect.stringMatching(/^task "fwd": exports the received study and "seg" in one task/),
    ]);
  });

  it("refuses unconditional exports to different destinations per task", () => {
    const split = wf([
      router("r", [{ name: "a" }, { name: "b" }]),
      docker("a", [{ name: "xa" }]),
      docker("b", [{ name: "xb" }]),
      { id: "xa", type: "export", export_destinations: [{ name: "PACS1" }] },
      { id: "xb", type: "export", export_destinations: [{ name: "PACS2" }] },
    ]);
    expect(problems(split)).toEqual([
      'export tasks "xa" (to PACS1) and "xb" (to PACS2): unconditional exports to different destinations per task have no radflow equivalent (spec.export sends every result to every destination)',
    ]);
  });

  it("says a 2021 design draft is not a Workflow Manager workflow, wrapped or not", () => {
    const draft = {
      name: "scenario1",
      version: 1,
      "informatics-gateway": { ae_title: "X" },
      tasks: [{ id: "r", type: null, output: [] }],
      task_templates: [],
    };
    for (const input of [draft, { workflow: draft }]) {
      expect(problems(input)).toEqual([expect.stringMatching(/^the file is not a MONAI Workflow Manager workflow/)]);
    }
    expect(problems({ workflow: wf([docker("a")]) })).toEqual([
      "the file wraps a workflow (an API response, a WorkflowRevision); import its `workflow` object",
    ]);
  });
});

describe("importMonai: aide_clinical_review", () => {
  const review = (
    destinations: { name: string; conditions?: string[] }[] = [],
    extra: Record<string, unknown> = {},
  ) => ({
    id: "clinical-review",
    type: "aide_clinical_review",
    args: {
      workflow_name: "fracture",
      reviewed_task_id: "detect",
      application_name: "fx",
      application_version: "1.0",
      mode: "Clinical",
      reviewer_roles: "clinician",
    },
    task_destinations: destinations,
    ...extra,
  });

  const GATE = "steps['clinical-review'].phase == 'Succeeded' && steps['clinical-review'].outputs.accepted == true";

  it("becomes a review step after the model it reviews; the export after it is sent only when it accepted", () => {
    const { workflow, notes } = importMonai(
      wf([
        docker("detect", [{ name: "clinical-review" }]),
        review([{ name: "export-pacs" }], { timeout_minutes: 120 }),
        { id: "export-pacs", type: "export", export_destinations: [{ name: "PACS1" }] },
      ]),
    );
    expect(AIWorkflow.safeParse(workflow).error?.issues).toBeUndefined();
    const [detect, rv] = workflow.spec.steps;
    expect(detect!.name).toBe("detect");
    expect(rv).toEqual({
      name: "clinical-review",
      dependsOn: ["detect"],
      review: { onReject: "Continue", timeoutSeconds: 7200 },
    });
    expect(rv!.image).toBeUndefined();
    // MONAI (AideClinicalReviewPlugin.GetStatus) ends a rejected review PartialFail: no destination
    // after it is dispatched, and the workflow instance succeeds. So the task succeeds, and the
    // reviewed model's results go out only when the review accepted them.
    expect(workflow.spec.export).toBeUndefined();
    expect(detect!.export).toEqual([{ destination: "pacs1", when: GATE }]);
    const when = compileBool(GATE);
    const at = (phase: string, outputs: Record<string, unknown>) =>
      when({
        study: { studyInstanceUID: "1", series: [] },
        steps: { detect: { phase: "Succeeded", outputs: {} }, "clinical-review": { phase, outputs } },
        outputs: {},
      });
    expect(at("Succeeded", { accepted: true, verdict: "Accepted" })).toEqual({ ok: true, value: true });
    expect(at("Succeeded", { accepted: false, verdict: "Rejected" })).toEqual({ ok: true, value: false });
    // a review skipped by its own condition has no verdict: false, not an error
    expect(at("Skipped", {})).toEqual({ ok: true, value: false });
    const text = notes.join("\n");
    expect(text).toContain("radflow review accept|reject");
    expect(text).toContain('reviewer_roles "clinician"');
  });

  it("a model after the review runs once it is accepted; conditions on the way are kept", () => {
    const { workflow } = importMonai(
      wf([
        docker("detect", [{ name: "clinical-review", conditions: [modality("CR")] }]),
        review([{ name: "report" }]),
        docker("report"),
      ]),
    );
    const steps = Object.fromEntries(workflow.spec.steps.map((s) => [s.name, s]));
    expect(steps["clinical-review"]!.when).toBeDefined();
    expect(steps.report).toMatchObject({ dependsOn: ["clinical-review"] });
    // the review may be Skipped (its condition false) or reject: MONAI would not have reached the report then
    expect(steps.report!.when).toBe(GATE);
  });

  it("a condition that reads the review's result is refused (radflow's review outputs are accepted/verdict)", () => {
    expect(
      problems(
        wf([
          docker("detect", [{ name: "clinical-review" }]),
          review([
            { name: "report", conditions: ["{{ context.executions.clinical-review.result.acceptance }} == 'true'"] },
          ]),
          docker("report"),
        ]),
      ).join("\n"),
    ).toMatch(/reads the result of "clinical-review", which is not a model task/);
  });
});

describe("importMonai: conditional exports", () => {
  it("an export reached under a condition becomes a step export of the model it follows, with that condition", () => {
    const { workflow, notes } = importMonai(
      wf([
        docker("detect", [{ name: "to-pacs", conditions: ["{{ context.executions.detect.result.bleed }} == 'true'"] }]),
        { id: "to-pacs", type: "export", export_destinations: [{ Name: "PROD_PACS" }] },
      ]),
    );
    expect(AIWorkflow.safeParse(workflow).error?.issues).toBeUndefined();
    const step = workflow.spec.steps[0]!;
    expect(step.export).toEqual([{ destination: "prod-pacs", when: "string(steps.detect.outputs.bleed) == 'true'" }]);
    expect(workflow.spec.export).toBeUndefined();
    expect(notes.join("\n")).toContain("DICOMDestination prod-pacs");
    // the condition reads as MONAI's does
    const when = compileBool(step.export![0]!.when!);
    const on = (bleed: unknown) =>
      when({
        study: { studyInstanceUID: "1", series: [] },
        steps: { detect: { phase: "Succeeded", outputs: { bleed } } },
      });
    expect(on(true)).toEqual({ ok: true, value: true });
    expect(on(false)).toEqual({ ok: true, value: false });
  });

  it("a conditional export after a review exports the reviewed model's results", () => {
    const { workflow } = importMonai(
      wf([
        docker("detect", [{ name: "review" }]),
        {
          id: "review",
          type: "aide_clinical_review",
          args: { reviewed_task_id: "detect" },
          task_destinations: [{ name: "x", conditions: [modality("CT")] }],
        },
        { id: "x", type: "export", export_destinations: [{ name: "pacs" }] },
      ]),
    );
    const detect = workflow.spec.steps.find((s) => s.name === "detect")!;
    expect(detect.export).toEqual([{ destination: "pacs", when: expect.stringContaining("study.series.exists") }]);
  });
});
