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
    expect(spec.steps[0]!.env).toContainEqual({ name: "MONAI_OUTPUTPATH", value: "/var/monai/output/" });
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
      "a conditional export",
      wf([
        docker("a", [{ name: "x", conditions: [modality("CT")] }]),
        { id: "x", type: "export", export_destinations: [{ Name: "PACS" }] },
      ]),
      /guards export task "x"/,
    ],
    [
      "an unsupported task type",
      wf([docker("a", [{ name: "review" }]), { id: "review", type: "aide_clinical_review" }]),
      /type "aide_clinical_review" has no radflow equivalent/,
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
