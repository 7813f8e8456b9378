import { describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/aiworkflow.ts";
import { LABEL_WORKFLOW } from "../../../src/api/v1alpha1/common.ts";
import type { StudyEvent } from "../../../src/api/v1alpha1/events.ts";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import type { SeriesSummary } from "../../../src/api/v1alpha1/study.ts";
import { buildTask, matchWorkflow, route, taskName } from "../../../src/ingest/route.ts";

const CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4";

type Spec = Partial<AIWorkflow["spec"]>;
function wf(name: string, spec: Spec = {}, ready = true): AIWorkflow {
  return AIWorkflow.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name, namespace: "radiology", uid: `uid-${name}`, generation: 3 },
    spec: {
      trigger: {},
      steps: [{ name: "infer", image: "registry.example.org/model:1" }],
      ...spec,
    },
    status: {
      conditions: [
        {
          type: "Ready",
          status: ready ? "True" : "False",
          reason: ready ? "Valid" : "InvalidExpression",
          lastTransitionTime: "2025-01-01T00:00:00Z",
        },
      ],
    },
  });
}

const headCT: SeriesSummary = {
  seriesInstanceUID: "1.2.3.4.1",
  modality: "CT",
  bodyPartExamined: "HEAD",
  seriesDescription: "Head w/o contrast 5mm",
  sopClassUID: CT_IMAGE,
  numberOfInstances: 40,
};
const chestMR: SeriesSummary = {
  seriesInstanceUID: "1.2.3.4.2",
  modality: "MR",
  bodyPartExamined: "chest",
  seriesDescription: "T2 axial",
  sopClassUID: MR_IMAGE,
  numberOfInstances: 30,
};

function event(series: SeriesSummary[] = [headCT, chestMR], over: Partial<StudyEvent> = {}): StudyEvent {
  return {
    id: "ev-1",
    source: "/gateways/ct-east",
    time: "2025-03-01T09:00:00.000Z",
    format: "cloudevents",
    study: {
      studyInstanceUID: "1.2.3.4",
      accessionNumber: "ACC1",
      callingAETitle: "CT01",
      calledAETitle: "RADFLOW",
      series,
    },
    ...over,
  };
}

describe("matchWorkflow", () => {
  const cases: [string, AIWorkflow, StudyEvent, "match" | "no" | "error"][] = [
    ["an empty trigger matches every study", wf("all"), event(), "match"],
    ["a workflow that is not Ready never matches", wf("x", {}, false), event(), "no"],
    ["a suspended workflow never matches", wf("x", { suspend: true }), event(), "no"],
    ["modality", wf("x", { trigger: { match: { modalities: ["CT"] } } }), event(), "match"],
    ["modality, case-insensitive", wf("x", { trigger: { match: { modalities: ["mr"] } } }), event(), "match"],
    ["modality absent", wf("x", { trigger: { match: { modalities: ["DX", "CR"] } } }), event(), "no"],
    ["body part, case-insensitive", wf("x", { trigger: { match: { bodyParts: ["Chest"] } } }), event(), "match"],
    ["body part absent", wf("x", { trigger: { match: { bodyParts: ["HAND"] } } }), event(), "no"],
    [
      "body part missing on the series",
      wf("x", { trigger: { match: { bodyParts: ["HEAD"] } } }),
      event([{ ...headCT, bodyPartExamined: undefined }]),
      "no",
    ],
    ["SOP class", wf("x", { trigger: { match: { sopClassUIDs: [MR_IMAGE] } } }), event(), "match"],
    [
      "SOP class absent",
      wf("x", { trigger: { match: { sopClassUIDs: ["1.2.840.10008.5.1.4.1.1.1"] } } }),
      event(),
      "no",
    ],
    [
      "description pattern, case-insensitive",
      wf("x", { trigger: { match: { seriesDescriptionPattern: "head.*CONTRAST" } } }),
      event(),
      "match",
    ],
    [
      "description pattern absent",
      wf("x", { trigger: { match: { seriesDescriptionPattern: "^sag" } } }),
      event(),
      "no",
    ],
    [
      "criteria must hold on the same series",
      wf("x", { trigger: { match: { modalities: ["CT"], bodyParts: ["CHEST"] } } }),
      event(),
      "no",
    ],
    [
      "criteria on the same series",
      wf("x", { trigger: { match: { modalities: ["MR"], bodyParts: ["CHEST"], seriesDescriptionPattern: "t2" } } }),
      event(),
      "match",
    ],
    [
      "a bad pattern is an error, not a mismatch",
      wf("x", { trigger: { match: { seriesDescriptionPattern: "([" } } }),
      event(),
      "error",
    ],
    ["calling AE title", wf("x", { trigger: { sources: { callingAETitles: ["MR02", "CT01"] } } }), event(), "match"],
    [
      "calling AE title is case-sensitive",
      wf("x", { trigger: { sources: { callingAETitles: ["ct01"] } } }),
      event(),
      "no",
    ],
    ["called AE title", wf("x", { trigger: { sources: { calledAETitles: ["OTHER"] } } }), event(), "no"],
    [
      "AE title required but the study has none",
      wf("x", { trigger: { sources: { callingAETitles: ["CT01"] } } }),
      { ...event(), study: { ...event().study, callingAETitle: undefined } },
      "no",
    ],
    [
      "CEL true",
      wf("x", { trigger: { expression: "study.series.exists(s, s.modality == 'CT' && s.numberOfInstances > 10.0)" } }),
      event(),
      "match",
    ],
    ["CEL false", wf("x", { trigger: { expression: "study.series.all(s, s.modality == 'CT')" } }), event(), "no"],
    [
      "CEL over an optional field absent on a series",
      wf("x", { trigger: { expression: "study.series.exists(s, s.bodyPartExamined == 'HEAD')" } }),
      event([{ ...chestMR, bodyPartExamined: undefined }, headCT]),
      "match",
    ],
    [
      "CEL runtime error is an error, not false",
      wf("x", { trigger: { expression: "study.nosuchfield == 'x'" } }),
      event(),
      "error",
    ],
    [
      "CEL that does not compile is an error",
      wf("x", { trigger: { expression: "study.series.exists(s, " } }),
      event(),
      "error",
    ],
    ["CEL not a bool is an error", wf("x", { trigger: { expression: "study.studyInstanceUID" } }), event(), "error"],
    [
      "all criteria: match and expression",
      wf("x", { trigger: { match: { modalities: ["CT"] }, expression: "study.callingAETitle == 'MR02'" } }),
      event(),
      "no",
    ],
    ["MONAI workflows[] names this workflow", wf("liver-seg"), event(undefined, { workflows: ["Liver-Seg"] }), "match"],
    ["MONAI workflows[] names another workflow", wf("liver-seg"), event(undefined, { workflows: ["lung"] }), "no"],
    [
      "MONAI workflows[] does not bypass the trigger",
      wf("liver-seg", { trigger: { match: { modalities: ["PT"] } } }),
      event(undefined, { workflows: ["liver-seg"] }),
      "no",
    ],
  ];
  it.each(cases)("%s", (_name, w, ev, want) => {
    const m = matchWorkflow(ev, w);
    const got = m.match ? "match" : "error" in m ? "error" : "no";
    expect(got, JSON.stringify(m)).toBe(want);
  });
});

describe("MONAI workflows[]", () => {
  const imported = (annotations: Record<string, string>) => {
    const w = wf("liver-lung-seg");
    w.metadata.annotations = annotations;
    return w;
  };
  it.each([
    ["the AIWorkflow's name", {}, ["LIVER-LUNG-SEG"], true],
    [
      "the MONAI name it was imported from",
      { "radflow.io/imported-from": "monai-deploy:Liver Lung Seg@1.0.0" },
      ["liver lung seg"],
      true,
    ],
    ["a MONAI Workflow Manager id listed on it", { "radflow.io/monai-workflow-ids": "a1b2, C3D4" }, ["c3d4"], true],
    ["none of those", { "radflow.io/imported-from": "monai-deploy:other" }, ["lung-only", "x"], false],
  ])("may name the workflow by %s", (_what, annotations, workflows, want) => {
    expect(matchWorkflow(event(undefined, { workflows }), imported(annotations)).match).toBe(want);
  });
});

describe("route", () => {
  it("builds one task per matching workflow and reports rule errors", () => {
    const r = route(event(), [
      wf("head-ct", { trigger: { match: { modalities: ["CT"], bodyParts: ["HEAD"] } } }),
      wf("hand-xr", { trigger: { match: { modalities: ["DX"] } } }),
      wf("broken", { trigger: { expression: "study.nope" } }),
      wf("chest-mr", { trigger: { match: { modalities: ["MR"] } } }),
    ]);
    expect(r.tasks.map((t) => t.spec.workflowRef.name)).toEqual(["head-ct", "chest-mr"]);
    expect(r.errors).toEqual([
      {
        namespace: "radiology",
        workflow: "broken",
        field: "trigger.expression",
        error: expect.stringMatching(/expression/),
      },
    ]);
  });

  it("stops evaluating when its time budget is spent and reports the workflows it did not reach", () => {
    let t = 0;
    const slow = (name: string) => {
      const w = wf(name);
      // each workflow "costs" 40 ms of the clock when its trigger is read
      Object.defineProperty(w.spec, "trigger", {
        get: () => {
          t += 40;
          return {};
        },
      });
      return w;
    };
    const r = route(event(), [slow("a"), slow("b"), slow("c"), slow("d")], { budgetMs: 50, now: () => t });
    expect(r.tasks.map((x) => x.spec.workflowRef.name)).toEqual(["a", "b"]);
    expect(r.errors.map((e) => [e.workflow, e.field])).toEqual([
      ["c", "routing-deadline"],
      ["d", "routing-deadline"],
    ]);
  });
});

describe("taskName", () => {
  const ev = (id: string, source = "/gateways/ct-east") => ({ source, id });
  it("is deterministic in (workflow uid, event source, event id) and differs when any changes", () => {
    const a = taskName("head-ct", "uid-1", ev("ev-1"));
    expect(taskName("head-ct", "uid-1", ev("ev-1"))).toBe(a);
    expect(taskName("head-ct", "uid-2", ev("ev-1"))).not.toBe(a);
    expect(taskName("head-ct", "uid-1", ev("ev-2"))).not.toBe(a);
    expect(taskName("head-ct", "uid-1", ev("ev-1", "/gateways/mr-west"))).not.toBe(a);
    expect(a).toMatch(/^head-ct-[0-9a-f]{16}$/);
  });

  it("cannot be forged by moving characters between source and id", () => {
    expect(taskName("w", "uid", ev("1", "/a/b"))).not.toBe(taskName("w", "uid", ev("b/1", "/a/")));
  });

  it("fits 63 characters and stays a DNS label when the workflow name is long", () => {
    const long = `${"a".repeat(45)}-bcd-${"e".repeat(13)}`; // 63 characters, a '-' at the cut
    const n = taskName(long, "uid", ev("ev"));
    expect(n.length).toBeLessThanOrEqual(63);
    expect(n).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(n.startsWith("a".repeat(45))).toBe(true);
    expect(taskName("x".repeat(63), "uid", ev("ev"))).toHaveLength(63);
  });

  it("carries nothing of the study", () => {
    const n = taskName("head-ct", "uid-1", ev("1.2.840.113619.2.55.3"));
    expect(n).not.toMatch(/1\.2\.840/);
  });
});

describe("two gateways that both send event id 1", () => {
  it("make two tasks for the same workflow, one per study", () => {
    const w = wf("head-ct");
    const east = event([headCT], { id: "1", source: "/gateways/ct-east" });
    const west = event([headCT], {
      id: "1",
      source: "/gateways/ct-west",
      study: { studyInstanceUID: "9.8.7.6", series: [headCT] },
    });
    const a = buildTask(w, east);
    const b = buildTask(w, west);
    expect(a.metadata.name).not.toBe(b.metadata.name);
    expect([a.spec.eventSource, b.spec.eventSource]).toEqual(["/gateways/ct-east", "/gateways/ct-west"]);
  });
});

describe("buildTask", () => {
  it("copies the workflow's spec and the study, and is a valid InferenceTask", () => {
    const w = wf("head-ct", {
      priority: "stat",
      queueTimeoutSeconds: 300,
      ttlSecondsAfterFinished: 3600,
      storage: { pvc: { claimName: "studies", subPath: "in" }, mountPath: "/data" },
      export: [{ name: "PACS", plugin: "monaiscu" }],
      kueue: { queueName: "gpu" },
    });
    const ev = event();
    const t = buildTask(w, ev);
    expect(InferenceTask.safeParse(t).success).toBe(true);
    expect(t.metadata).toEqual({
      name: taskName("head-ct", "uid-head-ct", { source: "/gateways/ct-east", id: "ev-1" }),
      namespace: "radiology",
      labels: { [LABEL_WORKFLOW]: "head-ct", "radflow.io/priority": "stat", "app.kubernetes.io/managed-by": "radflow" },
      finalizers: ["radflow.io/cleanup-jobs"],
    });
    expect(t.spec).toMatchObject({
      workflowRef: { name: "head-ct", uid: "uid-head-ct", generation: 3 },
      priority: "stat",
      steps: w.spec.steps,
      queueTimeoutSeconds: 300,
      ttlSecondsAfterFinished: 3600,
      storage: w.spec.storage,
      export: w.spec.export,
      kueue: { queueName: "gpu" },
      study: ev.study,
      eventId: "ev-1",
      eventSource: "/gateways/ct-east",
      eventTime: "2025-03-01T09:00:00.000Z",
      cancel: false,
    });
    // no PHI in names or labels
    const meta = JSON.stringify(t.metadata);
    expect(meta).not.toContain("1.2.3.4");
    expect(meta).not.toContain("ACC1");
  });

  it("leaves out optional fields the workflow does not set", () => {
    const t = buildTask(wf("plain"), event());
    expect(Object.keys(t.spec).sort()).toEqual(
      ["cancel", "eventId", "eventSource", "eventTime", "priority", "steps", "study", "workflowRef"].sort(),
    );
  });
});
