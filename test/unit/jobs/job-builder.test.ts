// The batch/v1 Job of a step: GPU, scheduling, retries, security, ownership, storage, names, no PHI.
import type { V1Container, V1Job, V1PodSpec } from "@kubernetes/client-node";
import { beforeAll, describe, expect, it } from "vitest";
import { InferenceTask, type Priority } from "../../../src/api/v1alpha1/index.ts";
import { OperatorConfig } from "../../../src/config/operator-config.ts";
import { buildJob, jobName } from "../../../src/jobs/job-builder.ts";
import { parseStorageTrust, setStorageTrust } from "../../../src/jobs/trust.ts";

const TASK = "head-ct-0123456789abcdef";
const cfg = OperatorConfig.parse({
  identity: "radflow-0",
  priorityClasses: { stat: "radflow-stat", urgent: "radflow-urgent", batch: "radflow-batch" },
});

function makeTask(
  o: { step?: Record<string, unknown>; spec?: Record<string, unknown>; study?: Record<string, unknown> } = {},
) {
  return InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: TASK, namespace: "radiology", uid: "5f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11" },
    spec: {
      workflowRef: { name: "head-ct", uid: "0a7e2d41-3b7e-4f7e-8d0e-5a4c2b1d9e00", generation: 3 },
      priority: "stat",
      steps: [{ name: "detect", image: "registry.example.org/ich-triage:1.4", ...o.step }],
      study: {
        studyInstanceUID: "1.2.840.113619.2.55.3.604688119",
        location: "incoming/7f3a9c",
        series: [{ seriesInstanceUID: "1.2.840.113619.2.55.3.604688119.1", modality: "CT", numberOfInstances: 120 }],
        ...o.study,
      },
      eventId: "evt-1",
      ...o.spec,
    },
  });
}

function build(o: Parameters<typeof makeTask>[0] = {}, inputs: Record<string, Record<string, unknown>> = {}): V1Job {
  const t = makeTask(o);
  return buildJob(t, t.spec.steps[0]!, inputs, cfg);
}
// the platform allowed these for radflow (operator flags --allow-secret, --allow-pvc)
beforeAll(() => setStorageTrust(parseStorageTrust(["radiology/imaging-s3"], ["radiology/imaging"])));

const podSpec = (j: V1Job): V1PodSpec => j.spec?.template.spec as V1PodSpec;
const container = (j: V1Job): V1Container => podSpec(j).containers[0] as V1Container;
const env = (j: V1Job) => Object.fromEntries((container(j).env ?? []).map((e) => [e.name, e.value]));

describe("buildJob: GPU and scheduling", () => {
  const cases: {
    name: string;
    step: Record<string, unknown>;
    limits: Record<string, string> | undefined;
    requests: Record<string, string> | undefined;
    nodeSelector: Record<string, string> | undefined;
    tolerated: boolean;
  }[] = [
    {
      name: "default: one GPU, tolerated onto GPU nodes",
      step: {},
      limits: { "nvidia.com/gpu": "1" },
      requests: undefined,
      nodeSelector: undefined,
      tolerated: true,
    },
    {
      name: "two GPUs of a given product",
      step: { resources: { gpu: 2, gpuProduct: "NVIDIA-A100-SXM4-80GB" } },
      limits: { "nvidia.com/gpu": "2" },
      requests: undefined,
      nodeSelector: { "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB" },
      tolerated: true,
    },
    {
      name: "extra node labels next to the GPU product",
      step: { resources: { gpuProduct: "NVIDIA-L4", nodeSelector: { "topology.kubernetes.io/zone": "icu" } } },
      limits: { "nvidia.com/gpu": "1" },
      requests: undefined,
      nodeSelector: { "nvidia.com/gpu.product": "NVIDIA-L4", "topology.kubernetes.io/zone": "icu" },
      tolerated: true,
    },
    {
      name: "cpu and memory: requests equal limits",
      step: { resources: { gpu: 1, cpu: 2, memory: "16Gi" } },
      limits: { "nvidia.com/gpu": "1", cpu: "2", memory: "16Gi" },
      requests: { cpu: "2", memory: "16Gi" },
      nodeSelector: undefined,
      tolerated: true,
    },
    {
      name: "no GPU: no GPU limit and no GPU toleration",
      step: { resources: { gpu: 0, cpu: "500m" } },
      limits: { cpu: "500m" },
      requests: { cpu: "500m" },
      nodeSelector: undefined,
      tolerated: false,
    },
  ];
  it.each(cases)("$name", ({ step, limits, requests, nodeSelector, tolerated }) => {
    const j = build({ step });
    expect(container(j).resources).toEqual({ limits, requests });
    expect(podSpec(j).nodeSelector).toEqual(nodeSelector);
    expect(podSpec(j).tolerations).toEqual(
      tolerated ? [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }] : undefined,
    );
  });

  it("uses the configured GPU resource name and product label", () => {
    const t = makeTask({ step: { resources: { gpu: 1, gpuProduct: "MI300X" } } });
    const j = buildJob(
      t,
      t.spec.steps[0]!,
      {},
      {
        ...cfg,
        gpuResource: "amd.com/gpu",
        gpuProductLabel: "amd.com/gpu.product-name",
        gpuTolerations: [{ key: "amd.com/gpu", operator: "Exists" }],
      },
    );
    expect(container(j).resources?.limits).toEqual({ "amd.com/gpu": "1" });
    expect(podSpec(j).nodeSelector).toEqual({ "amd.com/gpu.product-name": "MI300X" });
    expect(podSpec(j).tolerations).toEqual([{ key: "amd.com/gpu", operator: "Exists" }]);
  });

  const priorities: [Priority, string | undefined][] = [
    ["stat", "radflow-stat"],
    ["urgent", "radflow-urgent"],
    ["routine", undefined],
    ["batch", "radflow-batch"],
  ];
  it.each(priorities)("priority %s → PriorityClass %s", (priority, className) => {
    const j = build({ spec: { priority } });
    expect(podSpec(j).priorityClassName).toBe(className);
    expect(j.metadata?.labels?.["radflow.io/priority"]).toBe(priority);
  });
});

describe("buildJob: run time, retries and failures", () => {
  it.each([
    // a backstop: every attempt's run time plus an hour (the operator enforces timeoutSeconds itself)
    [{}, 3600 + 3600, 0],
    [{ timeoutSeconds: 120, retries: 2 }, 120 * 3 + 3600, 2],
  ])("step %j → activeDeadlineSeconds %i, backoffLimit %i", (step, deadline, backoff) => {
    const j = build({ step });
    expect(j.spec?.activeDeadlineSeconds).toBe(deadline);
    expect(j.spec?.backoffLimit).toBe(backoff);
  });

  it("retries infrastructure disruption without spending the step's retries; pods never restart in place", () => {
    const j = build();
    expect(j.spec?.podFailurePolicy).toEqual({
      rules: [{ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] }],
    });
    expect(podSpec(j).restartPolicy).toBe("Never");
  });

  it("reads the step's outputs from the termination message file", () => {
    expect(container(build())).toMatchObject({
      terminationMessagePath: "/dev/termination-log",
      terminationMessagePolicy: "File",
    });
  });
});

describe("buildJob: restricted pod security", () => {
  it("non-root, RuntimeDefault seccomp, no privilege escalation, no capabilities, read-only root", () => {
    const j = build();
    expect(podSpec(j).securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(container(j).securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(container(j).securityContext?.privileged).toBeUndefined();
    expect(podSpec(j).automountServiceAccountToken).toBe(false);
    expect(podSpec(j).hostNetwork ?? false).toBe(false);
    // read-only root: a writable /tmp is mounted instead
    expect(container(j).volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" });
  });
});

describe("buildJob: ownership and labels", () => {
  it("is owned by its task (controller, blocking the owner's deletion)", () => {
    expect(build().metadata?.ownerReferences).toEqual([
      {
        apiVersion: "radflow.io/v1alpha1",
        kind: "InferenceTask",
        name: TASK,
        uid: "5f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11",
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
  });

  it("labels Job and pods with task, workflow, step and priority", () => {
    const j = build();
    const labels = {
      "app.kubernetes.io/managed-by": "radflow",
      "radflow.io/task": TASK,
      "radflow.io/workflow": "head-ct",
      "radflow.io/step": "detect",
      "radflow.io/priority": "stat",
    };
    expect(j.metadata).toMatchObject({ name: `${TASK}-detect`, namespace: "radiology", labels });
    expect(j.spec?.template.metadata?.labels).toEqual(labels);
  });

  it("without Kueue: not suspended, no queue label", () => {
    const j = build();
    expect(j.spec?.suspend).toBeUndefined();
    expect(j.metadata?.labels?.["kueue.x-k8s.io/queue-name"]).toBeUndefined();
  });

  it("with Kueue: created suspended with the LocalQueue label", () => {
    const j = build({ spec: { kueue: { queueName: "gpu-stat" } } });
    expect(j.spec?.suspend).toBe(true);
    expect(j.metadata?.labels?.["kueue.x-k8s.io/queue-name"]).toBe("gpu-stat");
  });
});

describe("buildJob: environment and storage", () => {
  const cases: {
    name: string;
    spec?: Record<string, unknown>;
    study?: Record<string, unknown>;
    env: Record<string, string | undefined>;
    volumes: unknown[];
    mounts: unknown[];
    envFrom?: unknown;
  }[] = [
    {
      name: "PVC with a sub-path",
      spec: { storage: { pvc: { claimName: "imaging", subPath: "site-a" } } },
      env: {
        RADFLOW_STUDY_DIR: "/data/incoming/7f3a9c",
        RADFLOW_OUTPUT_DIR: `/data/results/${TASK}/detect`,
        RADFLOW_STUDY_URI: undefined,
      },
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "imaging" } }],
      mounts: [{ name: "data", mountPath: "/data", subPath: "site-a" }],
    },
    {
      name: "PVC at a custom mount path, absolute study location",
      spec: { storage: { pvc: { claimName: "imaging" }, mountPath: "/studies" } },
      study: { location: "/incoming/7f3a9c" },
      env: { RADFLOW_STUDY_DIR: "/studies/incoming/7f3a9c", RADFLOW_OUTPUT_DIR: `/studies/results/${TASK}/detect` },
      volumes: [{ name: "data", persistentVolumeClaim: { claimName: "imaging" } }],
      mounts: [{ name: "data", mountPath: "/studies" }],
    },
    {
      name: "S3 with credentials from a Secret",
      spec: { storage: { s3: { uri: "s3://imaging/studies/", secretName: "imaging-s3" } } },
      env: {
        RADFLOW_STUDY_URI: "s3://imaging/studies/incoming/7f3a9c",
        RADFLOW_OUTPUT_URI: `s3://imaging/studies/results/${TASK}/detect`,
        RADFLOW_STUDY_DIR: undefined,
      },
      volumes: [],
      mounts: [],
      envFrom: [{ secretRef: { name: "imaging-s3", optional: false } }],
    },
    {
      name: "no storage: the study location as given",
      env: { RADFLOW_STUDY_LOCATION: "incoming/7f3a9c", RADFLOW_STUDY_DIR: undefined, RADFLOW_STUDY_URI: undefined },
      volumes: [],
      mounts: [],
    },
  ];
  it.each(cases)("$name", ({ spec, study, env: want, volumes, mounts, envFrom }) => {
    const j = build({ spec, study });
    const e = env(j);
    for (const [k, v] of Object.entries(want)) expect(e[k], k).toBe(v);
    expect(podSpec(j).volumes).toEqual([{ name: "tmp", emptyDir: { sizeLimit: "1Gi" } }, ...volumes]);
    expect(container(j).volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }, ...mounts]);
    expect(container(j).envFrom).toEqual(envFrom);
  });

  it("passes names, earlier steps' outputs and the step's own env", () => {
    const j = build(
      { step: { env: [{ name: "MODEL_THRESHOLD", value: "0.7" }], command: ["python"], args: ["-m", "ich"] } },
      { detect0: { device: true } },
    );
    expect(env(j)).toMatchObject({
      RADFLOW_TASK: TASK,
      RADFLOW_WORKFLOW: "head-ct",
      RADFLOW_STEP: "detect",
      RADFLOW_PRIORITY: "stat",
      RADFLOW_INPUTS: '{"detect0":{"device":true}}',
      MODEL_THRESHOLD: "0.7",
    });
    expect(container(j)).toMatchObject({
      name: "model",
      image: "registry.example.org/ich-triage:1.4",
      command: ["python"],
      args: ["-m", "ich"],
    });
  });
});

describe("buildJob: only Secrets and PVCs the platform allowed (docs/security.md)", () => {
  // an InferenceTask created directly skips the workflow check: the Job builder refuses too
  it.each([
    [
      "a PVC not on the list",
      { pvc: { claimName: "payroll" } },
      /storage\.pvc\.claimName 'payroll'.*--allow-pvc radiology\/payroll/,
    ],
    [
      "a Secret not on the list",
      { s3: { uri: "s3://imaging/x", secretName: "db-root" } },
      /storage\.s3\.secretName 'db-root'.*--allow-secret radiology\/db-root/,
    ],
  ])("%s: no Job, an error naming the field and the flag", (_n, storage, msg) => {
    expect(() => build({ spec: { storage } })).toThrow(msg);
  });

  it("an allowed name in another namespace is not allowed here", () => {
    const t = makeTask({ spec: { storage: { pvc: { claimName: "imaging" } } } });
    t.metadata.namespace = "research";
    expect(() => buildJob(t, t.spec.steps[0]!, {}, cfg)).toThrow(/--allow-pvc research\/imaging/);
  });

  it("S3 without a Secret needs no allowance", () => {
    expect(container(build({ spec: { storage: { s3: { uri: "s3://imaging/x" } } } })).envFrom).toBeUndefined();
  });
});

describe("jobName", () => {
  const longTask = `${"stroke-perfusion-research-cohort".padEnd(46, "x")}-0123456789abcdef`; // 63 characters
  const longStep = "s".repeat(40);
  const cases: [string, string, string][] = [
    ["short names: task-step", TASK, "detect"],
    ["exactly 63 characters", "a".repeat(56), "detect"],
    ["one over 63", "a".repeat(57), "detect"],
    ["63-character task", longTask, "detect"],
    ["63-character task, 40-character step", longTask, longStep],
    ["task ending in '-' at the cut", `${"a".repeat(14)}-${"b".repeat(48)}`, longStep],
  ];
  it.each(cases)("%s: at most 63 characters, a DNS label, ends with the step, deterministic", (_n, task, step) => {
    const name = jobName(task, step);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(name.endsWith(`-${step}`)).toBe(true);
    expect(jobName(task, step)).toBe(name);
    if (`${task}-${step}`.length <= 63) expect(name).toBe(`${task}-${step}`);
  });

  it("long task names that share a prefix still get different names", () => {
    const a = `${"x".repeat(50)}-aaaaaaaaaaaaaaaa`;
    const b = `${"x".repeat(50)}-bbbbbbbbbbbbbbbb`;
    expect(jobName(a, "segment")).not.toBe(jobName(b, "segment"));
    expect(jobName(a, "segment")).not.toBe(jobName(a, "segment2"));
  });

  it("buildJob uses it", () => {
    const t = makeTask({ step: { name: "s".repeat(40) } });
    expect(buildJob(t, t.spec.steps[0]!, {}, cfg).metadata?.name).toBe(jobName(TASK, "s".repeat(40)));
  });
});

describe("buildJob: no PHI", () => {
  const phi = [
    "1.2.840.113619.2.55.3.604688119.971.1740822000.123", // StudyInstanceUID
    "1.2.840.113619.2.55.3.604688119.971.1740822000.124", // SeriesInstanceUID
    "ACC20250301X", // accession number
    "CT HEAD WO CONTRAST DOE JOHN", // study description
    "AX 5mm MRN4471923", // series description
    "DOE^JOHN", // patient name in the series attributes
    "MRN4471923", // patient ID
    "19470312", // birth date
  ];
  it("a study's identifiers and descriptions appear nowhere in the Job", () => {
    const t = makeTask({
      study: {
        studyInstanceUID: phi[0],
        accessionNumber: phi[2],
        studyDescription: phi[3],
        callingAETitle: "CT_SCANNER_1",
        calledAETitle: "RADFLOW",
        location: "incoming/7f3a9c",
        series: [
          {
            seriesInstanceUID: phi[1],
            modality: "CT",
            bodyPartExamined: "HEAD",
            seriesDescription: phi[4],
            numberOfInstances: 120,
            attributes: {
              "00100010": { vr: "PN", Value: [{ Alphabetic: phi[5] }] },
              "00100020": { vr: "LO", Value: [phi[6]] },
              "00100030": { vr: "DA", Value: [phi[7]] },
            },
          },
        ],
      },
      spec: { storage: { s3: { uri: "s3://imaging/studies", secretName: "imaging-s3" } } },
    });
    const text = JSON.stringify(buildJob(t, t.spec.steps[0]!, { detect0: { device: true, score: 0.91 } }, cfg));
    for (const v of phi) expect(text, v).not.toContain(v);
    expect(text).not.toContain("1.2.840.113619"); // no UID, not even a part of one
  });
});
