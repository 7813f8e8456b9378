// Steps that really run (issue 14): a cluster of this file's own with a real node — containerd,
// runc, the CNI bridge and a kubelet (hack/cluster up --real-node) — next to KWOK's GPU nodes.
// What KWOK cannot show is checked here by the parts a hospital runs: the restricted security
// context enforced by runc, a study volume mounted where the model contract says, the termination
// message written by the model's own process and read back by the kubelet, and the failures a
// site meets first (a root image under runAsNonRoot, a missing image, a model that crashes).
//
// The model is the example model image (hack/images/build.sh example-model) when it is built,
// otherwise the probe (hack/real-node/probe), which plays a model with the same contract.
// Needs root and Linux cgroups (hack/real-node/node.ts says what exactly); skips with a line
// saying why otherwise.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterOptions, down, ports, up } from "../../hack/cluster.ts";
import { imagesDir, PROBE_IMAGE, PROBE_ROOT_IMAGE } from "../../hack/real-node/images.ts";
import { NODE_GATEWAY, REAL_NODE_LABEL, realNodeName } from "../../hack/real-node/node.ts";
import type { InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { dicomBytes } from "../unit/dicom/write-dicom.ts";
import { clusterOptions, toolBin, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const G = { group: "radflow.io", version: "v1alpha1" };
const EXAMPLE_MODEL = "radflow.local/example-model:dev";
const root = path.resolve(import.meta.dirname, "../..");
const imageBuilder = path.join(root, "hack", "images", "build.sh");
// the project's images, built before the node starts so that `up` imports them (a stamp makes an
// unchanged rebuild a no-op)
if (existsSync(imageBuilder) && process.getuid?.() === 0) {
  try {
    execFileSync(imageBuilder, ["radflow", "example-model"], { stdio: ["ignore", "ignore", "inherit"] });
  } catch (e) {
    // the tests fall back to the probe (and skip the in-cluster operator) without them
    console.info(`real-node tests: the project's images could not be built: ${(e as Error).message.split("\n")[0]}`);
  }
}
const haveRadflowImage = existsSync(path.join(imagesDir(), "radflow.oci.tar"));
const haveExampleModel = existsSync(path.join(imagesDir(), "example-model.oci.tar"));
const MODEL = haveExampleModel ? EXAMPLE_MODEL : PROBE_IMAGE;

const skip =
  process.platform !== "linux"
    ? "a real node needs Linux"
    : process.getuid?.() !== 0
      ? "a real node needs root (the kubelet mounts volumes, runc makes namespaces)"
      : "";
if (skip) console.info(`real-node tests skipped: ${skip}`);

let o: ClusterOptions;
let kc: k8s.KubeConfig;
let core: k8s.CoreV1Api;
let custom: k8s.CustomObjectsApi;
const ns = `real-${Math.random().toString(36).slice(2, 7)}`;
let data: string;

const onRealNode = { [REAL_NODE_LABEL]: "true" };

async function getTask(name: string): Promise<InferenceTask> {
  return (await custom.getNamespacedCustomObject({
    ...G,
    namespace: ns,
    plural: "inferencetasks",
    name,
  })) as InferenceTask;
}

function waitTask(name: string, what: string, pred: (t: InferenceTask) => boolean, timeoutMs = 90_000) {
  return waitFor(
    `task ${name}: ${what}`,
    timeoutMs,
    async () => {
      const t = await getTask(name);
      return { done: pred(t), value: t, seen: t.status };
    },
    250,
  );
}

type StepIn = Record<string, unknown> & { name: string };
let seq = 0;
/** An InferenceTask as ingest would make it: CPU steps on the real node, the study on the volume. */
async function createTask(name: string, steps: StepIn[], location = "studies/s1") {
  seq++;
  await custom.createNamespacedCustomObject({
    ...G,
    namespace: ns,
    plural: "inferencetasks",
    body: {
      apiVersion: "radflow.io/v1alpha1",
      kind: "InferenceTask",
      metadata: { name, labels: { "radflow.io/workflow": "real" } },
      spec: {
        workflowRef: { name: "real", uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
        priority: "stat",
        steps: steps.map((s) => ({ resources: { gpu: 0, nodeSelector: onRealNode }, ...s })),
        storage: { pvc: { claimName: "studies" } },
        study: {
          studyInstanceUID: `1.2.826.0.1.3680043.10.9${seq}`,
          location,
          series: [{ seriesInstanceUID: `1.2.826.0.1.3680043.11.9${seq}`, modality: "CT", numberOfInstances: 3 }],
        },
        eventId: `event-${name}`,
      },
    },
  });
  return name;
}

describe.skipIf(skip !== "")("a real node (kubelet, containerd, runc, CNI)", () => {
  let op: OperatorProcess;
  let readyMs = 0;

  beforeAll(async () => {
    const test = clusterOptions();
    o = {
      dir: `${test.dir}-node`,
      portBase: Number(process.env.RADFLOW_REAL_NODE_CLUSTER_PORT_BASE ?? test.portBase + 400),
      quiet: true,
      realNode: true,
    };
    const t0 = Date.now();
    await up(o);
    readyMs = Date.now() - t0;
    console.info(`cluster with a real node up (node Ready) in ${(readyMs / 1000).toFixed(1)} s; model image ${MODEL}`);
    kc = new k8s.KubeConfig();
    kc.loadFromFile(path.join(o.dir, "kubeconfig"));
    core = kc.makeApiClient(k8s.CoreV1Api);
    custom = kc.makeApiClient(k8s.CustomObjectsApi);
    // radflow's CRDs, as the integration setup applies them to the shared cluster
    const crds = path.resolve(import.meta.dirname, "../../crds");
    const k = (args: string[]) =>
      execFileSync(toolBin("kubectl"), ["--kubeconfig", path.join(o.dir, "kubeconfig"), ...args], { stdio: "pipe" });
    k(["apply", "--server-side", "--force-conflicts", "-f", crds]);
    // (kubectl wait fails outright while the new CRD has no conditions yet)
    await waitFor("the InferenceTask CRD to be Established", 60_000, async () => {
      const c = String(k(["get", "crd/inferencetasks.radflow.io", "-o", "jsonpath={.status.conditions}"]));
      return { done: /"type":"Established"/.test(c) && /"status":"True"/.test(c), seen: c };
    });
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await waitFor(`ServiceAccount default in ${ns}`, 60_000, async () => {
      await core.readNamespacedServiceAccount({ name: "default", namespace: ns });
      return { done: true };
    });

    // the study volume: a folder of this machine as a PersistentVolume, three CT slices in it
    data = mkdtempSync(path.join(tmpdir(), "radflow-real-node-"));
    // (mkdtemp makes it 0700: the model's non-root user could not even look in)
    chmodSync(data, 0o755);
    const study = path.join(data, "studies", "s1");
    mkdirSync(study, { recursive: true });
    for (let i = 1; i <= 3; i++) {
      // 60 HU everywhere: in the range of fresh blood, which the example model flags
      const bytes = dicomBytes(
        {
          StudyInstanceUID: "1.2.826.0.1.3680043.10.77",
          SeriesInstanceUID: "1.2.826.0.1.3680043.11.77",
          SOPInstanceUID: `1.2.826.0.1.3680043.12.77.${i}`,
          SeriesNumber: "1",
          RescaleIntercept: "60",
          RescaleSlope: "1",
        },
        64,
      );
      writeFileSync(path.join(study, `${i}.dcm`), bytes);
    }
    mkdirSync(path.join(data, "studies", "empty"), { recursive: true });
    writeFileSync(path.join(data, "studies", "empty", "notes.txt"), "no image here\n");
    // results are written by the model's non-root user
    mkdirSync(path.join(data, "results"));
    chmodSync(path.join(data, "results"), 0o777);
    await core.createPersistentVolume({
      body: {
        metadata: { name: `${ns}-studies` },
        spec: {
          capacity: { storage: "1Gi" },
          accessModes: ["ReadWriteMany"],
          storageClassName: "real-node-local",
          persistentVolumeReclaimPolicy: "Retain",
          hostPath: { path: data, type: "Directory" },
          claimRef: { namespace: ns, name: "studies" },
        },
      },
    });
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {
        metadata: { name: "studies" },
        spec: {
          accessModes: ["ReadWriteMany"],
          storageClassName: "real-node-local",
          volumeName: `${ns}-studies`,
          resources: { requests: { storage: "1Gi" } },
        },
      },
    });
    op = startOperator({
      namespace: ns,
      args: ["--leader-elect=false", "--start-timeout-seconds", "10", "--allow-pvc", `${ns}/studies`],
      env: { KUBECONFIG: path.join(o.dir, "kubeconfig"), RADFLOW_NATS_URL: "" },
    });
  }, 1_500_000);

  afterAll(async () => {
    await op?.stop();
    if (core) {
      await core.deleteNamespace({ name: ns }).catch(() => undefined);
      await core.deletePersistentVolume({ name: `${ns}-studies` }).catch(() => undefined);
    }
    if (o && !process.env.RADFLOW_KEEP_CLUSTER) await down(o);
    if (data) rmSync(data, { recursive: true, force: true });
  }, 120_000);

  it("registers the machine as a Ready node with its label, next to the KWOK nodes", async () => {
    const nodes = (await core.listNode()).items;
    const real = nodes.find((n) => n.metadata?.name === realNodeName());
    expect(real?.metadata?.labels?.[REAL_NODE_LABEL]).toBe("true");
    expect(real?.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    // the kubelet is built from the control plane's Kubernetes version
    expect(real?.status?.nodeInfo?.kubeletVersion).toMatch(/^v1\.\d+\.\d+$/);
    expect(real?.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\/2\./);
    expect(nodes.filter((n) => n.metadata?.labels?.type === "kwok").length).toBe(3);
  });

  it("runs a restricted pod (non-root, read-only root, Never pull) to Succeeded and reads its termination message", async () => {
    const t0 = Date.now();
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: "restricted" },
        spec: {
          restartPolicy: "Never",
          nodeSelector: onRealNode,
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
          volumes: [{ name: "tmp", emptyDir: {} }],
          containers: [
            {
              name: "probe",
              image: PROBE_IMAGE,
              imagePullPolicy: "Never",
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              resources: { limits: { cpu: "200m", memory: "64Mi" } },
            },
          ],
        },
      },
    });
    const pod = await waitFor(
      "pod restricted to succeed",
      60_000,
      async () => {
        const p = await core.readNamespacedPod({ name: "restricted", namespace: ns });
        return { done: p.status?.phase === "Succeeded" || p.status?.phase === "Failed", value: p, seen: p.status };
      },
      250,
    );
    console.info(`restricted pod: Pending → ${pod.status?.phase} in ${Date.now() - t0} ms`);
    expect(pod.status?.phase).toBe("Succeeded");
    const term = pod.status?.containerStatuses?.[0]?.state?.terminated;
    expect(term?.exitCode).toBe(0);
    // written by the process inside the container, read back by the kubelet
    const said = JSON.parse(term?.message ?? "{}") as Record<string, unknown>;
    expect(said).toMatchObject({ uid: 1000, rootWritable: false });
  });

  it("runs a two-step workflow on the example model: the first step's outputs, written by the process, gate the second", async () => {
    const t0 = Date.now();
    const gate = haveExampleModel
      ? "steps.triage.outputs.suspectedHemorrhage == true"
      : "steps.triage.outputs.instances > 0";
    const name = await createTask("ct-head", [
      { name: "triage", image: MODEL },
      { name: "confirm", image: MODEL, dependsOn: ["triage"], when: gate },
      { name: "routine", image: MODEL, dependsOn: ["triage"], when: `!(${gate})` },
    ]);
    const done = await waitTask(
      name,
      "finished",
      (t) => ["Succeeded", "Failed"].includes(t.status?.phase ?? ""),
      280_000,
    );
    console.info(`two-step workflow on the real node: ${done.status?.phase} in ${Date.now() - t0} ms`);
    expect(done.status?.phase, JSON.stringify(done.status?.steps)).toBe("Succeeded");
    const steps = Object.fromEntries((done.status?.steps ?? []).map((s) => [s.name, s]));
    expect(steps.triage?.outputs).toMatchObject({ instances: 3 });
    if (haveExampleModel) expect(steps.triage?.outputs).toMatchObject({ modality: "CT", suspectedHemorrhage: true });
    expect(steps.confirm?.phase).toBe("Succeeded");
    expect(steps.routine?.phase).toBe("Skipped");
    // the result files are where the contract says: RADFLOW_OUTPUT_DIR = <mount>/results/<task>/<step>
    const out = path.join(data, "results", name);
    const file = haveExampleModel ? "hyperdensity.json" : "result.json";
    const triage = JSON.parse(readFileSync(path.join(out, "triage", file), "utf8")) as Record<string, unknown>;
    const confirm = JSON.parse(readFileSync(path.join(out, "confirm", file), "utf8")) as Record<string, unknown>;
    if (haveExampleModel) {
      expect(triage).toMatchObject({ outputs: { instances: 3 } });
      // the second step was given the first one's outputs (RADFLOW_INPUTS)
      expect(confirm).toMatchObject({ inputsFrom: ["triage"] });
    } else {
      expect(triage).toMatchObject({ instances: 3 });
      expect(steps.confirm?.outputs).toMatchObject({ inputSteps: 1 });
    }
    expect(existsSync(path.join(out, "routine"))).toBe(false);
    // a loaded machine starts Node-based models slowly: three pods one after another
  }, 300_000);

  it.each([
    [
      "a root image under runAsNonRoot",
      PROBE_ROOT_IMAGE,
      [],
      "CreateContainerConfigError",
      /non-root|runAsNonRoot|root/,
    ],
    ["a missing image", "radflow.local/missing-model:dev", [], "ErrImagePull|ImagePullBackOff", /missing-model/],
    ["a crashing model", PROBE_IMAGE, ["exit", "3"], "Error", /exited with code 3/],
  ] as const)("%s ends the step with a clear reason within seconds", async (_what, image, args, reason, message) => {
    const t0 = Date.now();
    const name = await createTask(`fail-${++seq}`, [
      { name: "model", image, args: args.length ? [...args] : undefined },
    ]);
    const failed = await waitTask(name, "Failed", (t) => t.status?.phase === "Failed", 90_000);
    const took = Date.now() - t0;
    const s = failed.status?.steps?.[0];
    console.info(`${_what}: step ${s?.phase} (${s?.reason}: ${s?.message}) after ${took} ms`);
    expect(s?.reason).toMatch(new RegExp(`^(${reason})$`));
    expect(s?.message).toMatch(message);
    // the start timeout is 10 s here; the queue timeout (and the Job's deadline) would be hours
    expect(took).toBeLessThan(60_000);
  });

  it.skipIf(!haveRadflowImage)(
    "helm install runs the operator on the real node (chart ServiceAccount, probes, restricted context): it leads and handles a study end to end",
    async () => {
      const t0 = Date.now();
      const hns = `helm-${ns}`;
      const kubeconfig = path.join(o.dir, "kubeconfig");
      await core.createNamespace({ body: { metadata: { name: hns } } });
      await core.createPersistentVolume({
        body: {
          metadata: { name: `${hns}-studies` },
          spec: {
            capacity: { storage: "1Gi" },
            accessModes: ["ReadWriteMany"],
            storageClassName: "real-node-local",
            hostPath: { path: data, type: "Directory" },
            claimRef: { namespace: hns, name: "studies" },
          },
        },
      });
      await core.createNamespacedPersistentVolumeClaim({
        namespace: hns,
        body: {
          metadata: { name: "studies" },
          spec: {
            accessModes: ["ReadWriteMany"],
            storageClassName: "real-node-local",
            volumeName: `${hns}-studies`,
            resources: { requests: { storage: "1Gi" } },
          },
        },
      });
      const helm = (args: string[]) =>
        execFileSync(toolBin("helm"), [...args, "--kubeconfig", kubeconfig], { encoding: "utf8", stdio: "pipe" });
      helm([
        "upgrade",
        "--install",
        "radflow",
        path.join(root, "helm", "radflow"),
        "--namespace",
        "radflow-system",
        "--create-namespace",
        "--set",
        "image.repository=radflow.local/radflow",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "replicaCount=1",
        "--set-string",
        `nodeSelector.radflow\\.io/real-node=true`,
        // NATS listens on the machine's loopback: pods reach it on the bridge (service-proxy.ts)
        "--set",
        `nats.url=nats://${NODE_GATEWAY}:${ports(o.portBase).nats}`,
        "--set",
        `watchNamespaces={${hns}}`,
        "--set",
        `storageTrust.pvcs={${hns}/studies}`,
        "--set",
        "priorityClasses.create=true",
      ]);
      try {
        const pod = await waitFor(
          "the operator pod to be Ready on the real node",
          240_000,
          async () => {
            const pods = (await core.listNamespacedPod({ namespace: "radflow-system" })).items;
            const p = pods.find((x) => x.metadata?.name?.startsWith("radflow-") && !x.metadata?.deletionTimestamp);
            const ready = p?.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
            return { done: ready, value: p, seen: p?.status?.containerStatuses ?? p?.status?.conditions };
          },
          500,
        );
        console.info(`operator pod Ready on the real node after ${Date.now() - t0} ms`);
        expect(pod?.spec?.nodeName).toBe(realNodeName());
        expect(pod?.spec?.serviceAccountName).toMatch(/radflow/);
        const c = pod?.spec?.containers[0];
        expect(c?.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(c?.readinessProbe && c?.livenessProbe).toBeTruthy();
        const coord = kc.makeApiClient(k8s.CoordinationV1Api);
        await waitFor(
          "the operator pod to hold the leader Lease",
          120_000,
          async () => {
            const l = await coord.readNamespacedLease({ name: "radflow-operator", namespace: "radflow-system" });
            return { done: l.spec?.holderIdentity === pod?.metadata?.name, seen: l.spec?.holderIdentity };
          },
          500,
        );
        // a study event through NATS: ingest, the task, the step on the real node, the result
        await custom.createNamespacedCustomObject({
          ...G,
          namespace: hns,
          plural: "aiworkflows",
          body: {
            apiVersion: "radflow.io/v1alpha1",
            kind: "AIWorkflow",
            metadata: { name: "ct-triage" },
            spec: {
              priority: "stat",
              trigger: { match: { modalities: ["CT"] } },
              steps: [{ name: "triage", image: MODEL, resources: { gpu: 0, nodeSelector: onRealNode } }],
              storage: { pvc: { claimName: "studies" } },
            },
          },
        });
        await waitFor("the AIWorkflow to be Ready", 60_000, async () => {
          const w = (await custom.getNamespacedCustomObject({
            ...G,
            namespace: hns,
            plural: "aiworkflows",
            name: "ct-triage",
          })) as { status?: { conditions?: { type: string; status: string }[] } };
          return {
            done: w.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True") === true,
            seen: w.status,
          };
        });
        execFileSync(
          process.execPath,
          [
            path.join(root, "src", "cmd", "radflow.ts"),
            "send",
            path.join(data, "studies", "s1"),
            "--location",
            "studies/s1",
          ],
          { env: { ...process.env, RADFLOW_NATS_URL: `nats://127.0.0.1:${ports(o.portBase).nats}` }, stdio: "pipe" },
        );
        const task = await waitFor(
          "the study's task to succeed",
          180_000,
          async () => {
            const l = (await custom.listNamespacedCustomObject({ ...G, namespace: hns, plural: "inferencetasks" })) as {
              items: InferenceTask[];
            };
            const t = l.items[0];
            return {
              done: t?.status?.phase === "Succeeded" || t?.status?.phase === "Failed",
              value: t,
              seen: t?.status,
            };
          },
          500,
        );
        console.info(`in-cluster operator: study → task ${task?.status?.phase} after ${Date.now() - t0} ms`);
        expect(task?.status?.phase, JSON.stringify(task?.status?.steps)).toBe("Succeeded");
        expect(task?.status?.steps?.[0]?.outputs).toMatchObject({ instances: 3 });
      } catch (e) {
        const logs = await core
          .listNamespacedPod({ namespace: "radflow-system" })
          .then((l) => JSON.stringify(l.items.map((p) => p.status?.containerStatuses)))
          .catch(() => "");
        throw new Error(`${(e as Error).message}\noperator pods: ${logs}`);
      } finally {
        helm(["uninstall", "radflow", "--namespace", "radflow-system", "--wait", "--timeout", "120s"]);
        await core.deleteNamespace({ name: hns }).catch(() => undefined);
        await core.deletePersistentVolume({ name: `${hns}-studies` }).catch(() => undefined);
      }
    },
    600_000,
  );
});
