// Invalid AIWorkflows, shared by the unit test (zod must reject each) and the integration test
// (the API server must reject each, naming the field): one table, so the two verdicts are
// compared on the same inputs.

export type Obj = Record<string, unknown>;

/** A small valid workflow every case breaks in exactly one way. */
export function validWorkflow(): Obj {
  return {
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name: "base" },
    spec: {
      priority: "urgent",
      trigger: {
        sources: { calledAETitles: ["RADFLOW-GW"] },
        match: { modalities: ["CR"], sopClassUIDs: ["1.2.840.10008.5.1.4.1.1.1"] },
      },
      steps: [
        {
          name: "detect",
          image: "registry.example.org/radflow-models/detect:1.0",
          env: [{ name: "MODEL_VARIANT", value: "small" }],
          resources: { gpu: 1, cpu: "2", memory: "8Gi" },
        },
        {
          name: "identify",
          image: "registry.example.org/radflow-models/identify:1.0",
          dependsOn: ["detect"],
          when: "steps.detect.outputs.device == true",
        },
      ],
      storage: { pvc: { claimName: "studies" } },
    },
  };
}

export interface InvalidCase {
  name: string;
  /** edits the spec of a fresh valid workflow */
  edit: (spec: Obj, steps: Obj[]) => void;
  /** the field the API server's message must name, in its notation */
  field: string;
  /** what the API server's message must say is wrong */
  why: RegExp;
}

const step = (steps: Obj[], i: number) => steps[i] as Obj;
const res = (steps: Obj[], i: number) => step(steps, i).resources as Obj;

export const invalidCases: InvalidCase[] = [
  {
    name: "unknown priority",
    edit: (s) => {
      s.priority = "asap";
    },
    field: "spec.priority",
    why: /Unsupported value: "asap"/,
  },
  {
    name: "negative GPU count",
    edit: (_, st) => {
      res(st, 0).gpu = -1;
    },
    field: "spec.steps[0].resources.gpu",
    why: /greater than or equal to 0/,
  },
  {
    name: "duplicate step names",
    edit: (_, st) => {
      step(st, 1).name = "detect";
      delete step(st, 1).dependsOn;
      delete step(st, 1).when;
    },
    field: "spec.steps[1]",
    why: /Duplicate value/,
  },
  {
    name: "dependsOn an unknown step",
    edit: (_, st) => {
      step(st, 1).dependsOn = ["detekt"];
    },
    field: "spec.steps",
    why: /every dependsOn entry must name a step of this workflow/,
  },
  {
    name: "self-dependency",
    edit: (_, st) => {
      step(st, 1).dependsOn = ["identify"];
    },
    field: "spec.steps",
    why: /a step must not depend on itself/,
  },
  {
    name: "17-character AE title",
    edit: (s) => {
      (s.trigger as Obj).sources = { calledAETitles: ["RADFLOW-GATEWAY-1"] };
    },
    field: "spec.trigger.sources.calledAETitles[0]",
    why: /Too long|longer than 16/,
  },
  {
    name: "missing image",
    edit: (_, st) => {
      delete step(st, 0).image;
    },
    field: "spec.steps[0].image",
    why: /Required value/,
  },
  {
    name: "malformed UID in trigger.match.sopClassUIDs",
    edit: (s) => {
      (s.trigger as Obj).match = { sopClassUIDs: ["1.2.840.10008.5.1.4.1.1.01"] };
    },
    field: "spec.trigger.match.sopClassUIDs[0]",
    why: /should match/,
  },
  {
    name: "zero timeoutSeconds",
    edit: (_, st) => {
      step(st, 0).timeoutSeconds = 0;
    },
    field: "spec.steps[0].timeoutSeconds",
    why: /greater than or equal to 1/,
  },
  {
    name: "retries > 10",
    edit: (_, st) => {
      step(st, 0).retries = 11;
    },
    field: "spec.steps[0].retries",
    why: /less than or equal to 10/,
  },
  {
    name: "both pvc and s3",
    edit: (s) => {
      s.storage = { pvc: { claimName: "studies" }, s3: { uri: "s3://imaging/studies" } };
    },
    field: "spec.storage",
    why: /exactly one of pvc or s3 must be set/,
  },
  {
    name: "neither pvc nor s3",
    edit: (s) => {
      s.storage = { mountPath: "/studies" };
    },
    field: "spec.storage",
    why: /exactly one of pvc or s3 must be set/,
  },
  {
    name: "bad env name",
    edit: (_, st) => {
      step(st, 0).env = [{ name: "MODEL-VARIANT", value: "small" }];
    },
    field: "spec.steps[0].env[0].name",
    why: /should match/,
  },
  {
    name: "env setting a RADFLOW_ contract variable",
    edit: (_, st) => {
      step(st, 0).env = [{ name: "RADFLOW_STUDY_DIR", value: "/etc" }];
    },
    field: "spec.steps[0].env[0].name",
    why: /RADFLOW_STUDY_DIR: names starting with RADFLOW_ are reserved for the variables radflow sets/,
  },
  {
    name: "duplicate env names",
    edit: (_, st) => {
      step(st, 0).env = [
        { name: "A", value: "1" },
        { name: "A", value: "2" },
      ];
    },
    field: "spec.steps[0].env[1]",
    why: /Duplicate value/,
  },
  {
    name: "step name with upper case",
    edit: (_, st) => {
      step(st, 0).name = "Detect";
      step(st, 1).dependsOn = ["Detect"];
    },
    field: "spec.steps[0].name",
    why: /should match/,
  },
  {
    name: "empty steps",
    edit: (s) => {
      s.steps = [];
    },
    field: "spec.steps",
    why: /at least 1 items/,
  },
  {
    name: "bad quantity",
    edit: (_, st) => {
      res(st, 0).memory = "8GB";
    },
    field: "spec.steps[0].resources.memory",
    why: /should match/,
  },
  {
    name: "fractional CPU as a number",
    edit: (_, st) => {
      res(st, 0).cpu = 0.5;
    },
    field: "spec.steps[0].resources.cpu",
    why: /must be of type integer,string/,
  },
  {
    name: "negative CPU as a number",
    edit: (_, st) => {
      res(st, 0).cpu = -2;
    },
    field: "spec.steps[0].resources.cpu",
    why: /greater than or equal to 0/,
  },
  {
    name: "duplicate dependsOn entries",
    edit: (_, st) => {
      step(st, 1).dependsOn = ["detect", "detect"];
    },
    field: "spec.steps[1].dependsOn[1]",
    why: /Duplicate value/,
  },
  {
    name: "missing trigger",
    edit: (s) => {
      delete s.trigger;
    },
    field: "spec.trigger",
    why: /Required value/,
  },
  {
    name: "s3 URI without the s3 scheme",
    edit: (s) => {
      s.storage = { s3: { uri: "https://imaging.example.org/studies" } };
    },
    field: "spec.storage.s3.uri",
    why: /should match/,
  },
  {
    name: "zero concurrency.maxRunning",
    edit: (s) => {
      s.concurrency = { maxRunning: 0 };
    },
    field: "spec.concurrency.maxRunning",
    why: /greater than or equal to 1/,
  },
  {
    name: "Kueue queue name that is not a DNS label",
    edit: (s) => {
      s.kueue = { queueName: "Research_GPU" };
    },
    field: "spec.kueue.queueName",
    why: /should match/,
  },
];

/** A fresh valid workflow with one case applied. */
export function invalidWorkflow(c: InvalidCase, name = "invalid"): Obj {
  const wf = validWorkflow();
  (wf.metadata as Obj).name = name;
  const spec = wf.spec as Obj;
  c.edit(spec, spec.steps as Obj[]);
  return wf;
}

/** "spec.steps[0].env[1]" -> "spec.steps.0.env.1", the form of a zod issue path. */
export function zodPath(field: string): string {
  return field.replace(/\[(\d+)\]/g, ".$1");
}
