// `npm run demo`: a hospital's day on a laptop. Brings up the local cluster (real API server,
// Job controller, scheduler, KWOK GPU nodes, JetStream), installs radflow's CRDs and RBAC with
// the Helm chart, starts the operator, applies the example AIWorkflows, makes a day of synthetic
// studies as real DICOM Part-10 files with dcmtk, sends them with `radflow send`, shows live
// progress and ends with a per-workflow summary. Ctrl-C stops it and cleans up.
//
//   npm run demo [-- --keep] [-- --studies N]
//     --keep      leave the cluster and operator running after the summary (explore with kubectl)
//     --fast      skip the pauses between waves of studies
//     --real-node the head-CT step really runs: the example model (hack/images) on the cluster's
//                 real node (hack/cluster up --real-node) reads each study's DICOM files
//
// On a fresh machine it first installs what it needs (hack/deps.sh: dcmtk for the DICOM files).
// Whatever fails, it stops what it started — the operator and, unless it was already running, the
// cluster — and keeps their logs in a directory it names. RADFLOW_CLUSTER_DIR / RADFLOW_PORT_BASE
// choose the cluster (hack/cluster.ts); RADFLOW_DEMO_DUMP2DCM the dcmtk program (tests point it at
// one that does not exist to check the cleanup).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import yaml from "js-yaml";
import type { AIWorkflow, InferenceTask } from "../src/api/v1alpha1/index.ts";
import { buildTools, defaultOptions, down, isUp, up } from "./cluster.ts";
import { imagesDir } from "./real-node/images.ts";
import { loadImages } from "./real-node/node.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NS = "radiology";
// the examples' storage, allowed for radflow as a platform team would (docs/security.md)
const DEMO_PVCS = [`${NS}/imaging-studies`, `${NS}/neuro-studies`];
const DEMO_SECRETS = [`${NS}/imaging-s3-credentials`, `${NS}/research-s3-credentials`];
const METRICS_PORT = Number(process.env.RADFLOW_DEMO_METRICS_PORT ?? 9464);
const DUMP2DCM = process.env.RADFLOW_DEMO_DUMP2DCM ?? "dump2dcm";

const { values: flags } = parseArgs({
  options: { keep: { type: "boolean" }, fast: { type: "boolean" }, "real-node": { type: "boolean" } },
  allowPositionals: false,
});
const tty = process.stdout.isTTY === true;
const say = (s = "") => process.stdout.write(`${s}\n`);
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (tty ? `\x1b[2m${s}\x1b[0m` : s);

// ---- the day's studies -------------------------------------------------------------------------

interface SeriesPlan {
  modality: string;
  bodyPart: string;
  description: string;
  sopClass: string;
  instances: number;
}
interface StudyPlan {
  kind: string;
  calling: string;
  called: string;
  series: SeriesPlan[];
}

const CT = "1.2.840.10008.5.1.4.1.1.2";
const CR = "1.2.840.10008.5.1.4.1.1.1";
const DX = "1.2.840.10008.5.1.4.1.1.1.1";
const MR = "1.2.840.10008.5.1.4.1.1.4";

function dayOfStudies(): StudyPlan[] {
  const many = (n: number, f: (i: number) => StudyPlan) => Array.from({ length: n }, (_, i) => f(i));
  return [
    ...many(10, (i) => ({
      kind: "head CT (ED, stat)",
      calling: i % 2 ? "ED-CT-1" : "ED-CT-2",
      called: "RADFLOW-GW",
      series: [{ modality: "CT", bodyPart: "HEAD", description: "HEAD AXIAL 5MM", sopClass: CT, instances: 3 }],
    })),
    ...many(16, (i) => ({
      kind: "chest X-ray",
      calling: "XR-ROOM-2",
      called: "RADFLOW-GW",
      series: [
        {
          modality: i % 3 ? "DX" : "CR",
          bodyPart: "CHEST",
          description: "CHEST PA",
          sopClass: i % 3 ? DX : CR,
          instances: 1,
        },
        {
          modality: i % 3 ? "DX" : "CR",
          bodyPart: "CHEST",
          description: "CHEST LAT",
          sopClass: i % 3 ? DX : CR,
          instances: 1,
        },
      ],
    })),
    ...many(6, (i) => ({
      kind: "hand X-ray (pediatric)",
      calling: `PEDS-XR-${(i % 3) + 1}`,
      called: "RADFLOW-GW",
      series: [{ modality: "DX", bodyPart: "HAND", description: "BONE AGE HAND LEFT", sopClass: DX, instances: 1 }],
    })),
    ...many(4, () => ({
      kind: "brain MRI (glioma follow-up)",
      calling: "MR-3T-1",
      called: "RADFLOW-NEURO",
      series: [
        { modality: "MR", bodyPart: "BRAIN", description: "AX T2 FLAIR", sopClass: MR, instances: 3 },
        { modality: "MR", bodyPart: "BRAIN", description: "SAG T1 MPRAGE", sopClass: MR, instances: 3 },
      ],
    })),
    ...many(3, () => ({
      kind: "chest CT (ordered for other reasons)",
      calling: "CT-ROOM-1",
      called: "RADFLOW-GW",
      series: [{ modality: "CT", bodyPart: "CHEST", description: "CHEST 1.25MM LUNG", sopClass: CT, instances: 100 }],
    })),
    ...many(12, () => ({
      kind: "validation CT (research)",
      calling: "RESEARCH-PACS",
      called: "RADFLOW-VALID",
      series: [{ modality: "CT", bodyPart: "CHEST", description: "LDCT SCREENING", sopClass: CT, instances: 1 }],
    })),
  ];
}

/** Real DICOM Part-10 files, written by dcmtk's dump2dcm from a text dump. No patient data. */
function writeStudy(dir: string, n: number, s: StudyPlan): void {
  const base = `2.25.${BigInt(`0x${Buffer.from(crypto.getRandomValues(new Uint8Array(12))).toString("hex")}`)}`;
  const study = `${base}.${n}`;
  mkdirSync(dir, { recursive: true });
  s.series.forEach((se, si) => {
    const series = `${study}.${si + 1}`;
    for (let k = 0; k < se.instances; k++) {
      const dump = [
        "(0002,0010) UI =LittleEndianExplicit",
        `(0008,0016) UI [${se.sopClass}]`,
        `(0008,0018) UI [${series}.${k + 1}]`,
        "(0008,0020) DA [20261127]",
        `(0008,0050) SH [DEMO${String(n).padStart(5, "0")}]`,
        `(0008,0060) CS [${se.modality}]`,
        `(0008,1030) LO [SYNTHETIC ${s.kind.toUpperCase().slice(0, 50)}]`,
        `(0008,103e) LO [${se.description}]`,
        `(0010,0010) PN [SYNTHETIC^PATIENT${n}]`,
        `(0010,0020) LO [DEMO-${n}]`,
        `(0018,0015) CS [${se.bodyPart}]`,
        `(0020,000d) UI [${study}]`,
        `(0020,000e) UI [${series}]`,
        `(0020,0013) IS [${k + 1}]`,
        "(0028,0010) US 2",
        "(0028,0011) US 2",
        "(0028,0100) US 16",
        "(7fe0,0010) OW 0000\\0000\\0000\\0000",
      ].join("\n");
      const txt = path.join(dir, `s${si}-${k}.dump`);
      writeFileSync(txt, dump);
      execFileSync(DUMP2DCM, ["--write-xfer-little", txt, path.join(dir, `s${si}-${k}.dcm`)]);
      rmSync(txt);
    }
  });
}

// ---- the workflows, as the examples define them, with fake model behaviour for KWOK ----------

/** How long each demo model "runs" and what it answers (KWOK plays the model). */
const MODEL: Record<string, Record<string, string>> = {
  "ich-detect": {
    KWOK_RUN: "3s",
    KWOK_RESULT_CHOICES: '{"hemorrhage":false}|{"hemorrhage":false}|{"hemorrhage":true,"volumeMl":12.4}',
  },
  detect: {
    KWOK_RUN: "2s",
    KWOK_RESULT_CHOICES: '{"device":false,"score":0.03}|{"device":false,"score":0.08}|{"device":true,"score":0.97}',
  },
  identify: { KWOK_RUN: "4s", KWOK_RESULT: '{"deviceClass":"pacemaker","mrConditional":true}' },
  "bone-age": { KWOK_RUN: "2s", KWOK_RESULT: '{"boneAgeMonths":131}' },
  segment: { KWOK_RUN: "8s", KWOK_RESULT: '{"voxels":53211}' },
  volumes: { KWOK_RUN: "1s", KWOK_RESULT: '{"volumeMl":14.2,"changePct":3.1}' },
  report: { KWOK_RUN: "1s" },
  "cac-score": { KWOK_RUN: "5s", KWOK_RESULT_CHOICES: '{"agatston":12.0}|{"agatston":520.0}' },
  "flag-high-score": { KWOK_RUN: "1s" },
  "detect-candidate": { KWOK_RUN: "3s", KWOK_RESULT: '{"nodules":2}' },
  "detect-reference": { KWOK_RUN: "3s", KWOK_RESULT: '{"nodules":2}' },
  compare: { KWOK_RUN: "1s", KWOK_RESULT: '{"agree":true}' },
};

/** With --real-node: the step that really runs, on the real node, and the image it runs. */
const REAL_STEP = "ich-detect";
const EXAMPLE_MODEL = "radflow.local/example-model:dev";

function demoWorkflows(realNode: boolean): AIWorkflow[] {
  const out: AIWorkflow[] = [];
  for (const f of readdirSync(path.join(root, "examples"))
    .filter((x) => x.endsWith(".yaml"))
    .sort()) {
    const wf = yaml.load(readFileSync(path.join(root, "examples", f), "utf8")) as AIWorkflow;
    wf.metadata.namespace = NS;
    // there is no Kueue in the local cluster: radflow's own concurrency limit applies instead
    delete wf.spec.kueue;
    for (const st of wf.spec.steps) {
      if (realNode && st.name === REAL_STEP) {
        // the example model on the real node's CPU instead of a GPU model KWOK would play
        st.image = EXAMPLE_MODEL;
        delete st.args;
        st.resources = { gpu: 0, cpu: "500m", memory: "256Mi", nodeSelector: { "radflow.io/real-node": "true" } };
        continue;
      }
      const extra = MODEL[st.name] ?? { KWOK_RUN: "2s" };
      st.env = [...(st.env ?? []), ...Object.entries(extra).map(([name, value]) => ({ name, value }))];
    }
    out.push(wf);
  }
  return out;
}

const storageYaml = (imaging: string) => `apiVersion: v1
kind: PersistentVolume
metadata: {name: radflow-demo-imaging-studies}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteMany]
  storageClassName: ""
  hostPath: {path: ${imaging}}
  claimRef: {namespace: ${NS}, name: imaging-studies}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: radflow-demo-neuro-studies}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteMany]
  storageClassName: ""
  hostPath: {path: /var/lib/radflow-demo/neuro}
  claimRef: {namespace: ${NS}, name: neuro-studies}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: imaging-studies, namespace: ${NS}}
spec: {accessModes: [ReadWriteMany], storageClassName: "", volumeName: radflow-demo-imaging-studies, resources: {requests: {storage: 100Gi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: neuro-studies, namespace: ${NS}}
spec: {accessModes: [ReadWriteMany], storageClassName: "", volumeName: radflow-demo-neuro-studies, resources: {requests: {storage: 100Gi}}}
`;

// ---- running ------------------------------------------------------------------------------------

function percentile(xs: number[], p: number): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const secs = (x: number | undefined) => (x === undefined ? "-" : `${x.toFixed(1)}s`);

/** The Debian packages the demo uses (dcmtk's dump2dcm), installed when missing: hack/deps.sh. */
function ensureDeps(): void {
  try {
    execFileSync(path.join(root, "hack", "deps.sh"), { stdio: ["ignore", "inherit", "inherit"] });
  } catch (e) {
    throw new Error(`installing the demo's Debian packages failed (hack/deps.sh: ${(e as Error).message})`);
  }
}

/** Set by main once it may have started something: stops it all and exits with the code. */
let cleanupRef: ((exitCode: number) => Promise<void>) | undefined;

async function stopOperator(operator: ChildProcess | undefined): Promise<void> {
  if (!operator || operator.exitCode !== null || operator.signalCode !== null) return;
  const exited = new Promise((r) => operator.once("exit", r));
  operator.kill("SIGTERM");
  const timer = setTimeout(() => operator.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const o = defaultOptions();
  const realNode = flags["real-node"] === true;
  if (realNode) o.realNode = true;
  // the imaging volume: on the real node a folder of the cluster's (steps read it for real)
  const imaging = realNode ? path.join(o.dir, "demo-imaging") : "/var/lib/radflow-demo/imaging";
  const hadCluster = await isUp(o);
  let operator: ChildProcess | undefined;
  let work: string | undefined;
  let cleaning = false;
  let kubectlRef: ((args: string[], input?: string) => string) | undefined;
  const cleanup = async (exitCode: number) => {
    if (cleaning) return;
    cleaning = true;
    const failed = exitCode !== 0;
    if (hadCluster && kubectlRef) {
      // a cluster we did not start stays: remove the demo's namespace while the operator still
      // runs, so its finalizers are released
      say(dim(`deleting namespace ${NS}…`));
      try {
        kubectlRef(["delete", "namespace", NS, "--timeout=60s"]);
      } catch {}
    }
    await stopOperator(operator);
    if (work) rmSync(work, { recursive: true, force: true });
    // a failed demo leaves nothing running, --keep or not; a cluster that was up before stays
    if (!hadCluster && (failed || !flags.keep)) {
      const logs = path.join(o.dir, "logs");
      if (failed && existsSync(logs)) {
        const kept = mkdtempSync(path.join(os.tmpdir(), "radflow-demo-logs-"));
        cpSync(logs, kept, { recursive: true });
        say(`the cluster's and operator's logs: ${kept}`);
      }
      say(dim("stopping the local cluster (hack/cluster down)…"));
      await down(o).catch((e: Error) => say(`hack/cluster down failed: ${e.message}`));
    }
    process.exit(exitCode);
  };
  cleanupRef = cleanup;
  process.on("SIGINT", () => {
    say("\ninterrupted: cleaning up");
    void cleanup(130);
  });

  say(bold("radflow demo — a day of studies through AI models on (fake) GPU nodes"));
  ensureDeps();
  say(dim("1/6 local cluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK GPU nodes, NATS JetStream"));
  const bin = buildTools();
  if (realNode) {
    say(dim("   --real-node: building the example model image (hack/images/build.sh) for the real node"));
    execFileSync(path.join(root, "hack", "images", "build.sh"), ["example-model"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  const env = await up({ ...o, quiet: false });
  if (realNode) {
    // a cluster that was already up imported the images it found then
    loadImages(o.dir, bin, [path.join(imagesDir(), "example-model.oci.tar")]);
    mkdirSync(path.join(imaging, "ed", "results"), { recursive: true });
    // the model runs as a non-root user: it must be able to write its results
    chmodSync(path.join(imaging, "ed", "results"), 0o777);
  }
  const kubectl = (args: string[], input?: string) =>
    execFileSync(path.join(bin, "kubectl"), ["--kubeconfig", env.KUBECONFIG, ...args], {
      input,
      encoding: "utf8",
      stdio: ["pipe", "pipe", "pipe"],
    });

  kubectlRef = kubectl;
  // leftovers of an interrupted earlier demo: tasks whose operator is gone keep their finalizer
  if (kubectl(["get", "namespace", NS, "--ignore-not-found", "-o", "name"]).trim()) {
    say(dim(`   removing the namespace ${NS} of an earlier run`));
    const left = kubectl(["get", "inferencetasks", "-n", NS, "-o", "name"]).trim().split("\n").filter(Boolean);
    for (const t of left) kubectl(["patch", t, "-n", NS, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    kubectl(["delete", "namespace", NS, "--timeout=120s"]);
  }
  say(dim("2/6 installing radflow: CRDs and RBAC from the Helm chart, PriorityClasses, demo storage"));
  // first: the chart grants the operator `get` on the allowed Secrets in it
  kubectl(["apply", "-f", "-"], `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NS}}\n`);
  execFileSync(
    path.join(bin, "helm"),
    [
      "upgrade",
      "--install",
      "radflow",
      path.join(root, "helm", "radflow"),
      "--namespace",
      "radflow-system",
      "--create-namespace",
      "--kubeconfig",
      env.KUBECONFIG,
      // the operator runs beside the cluster here (KWOK nodes run no real containers)
      "--set",
      "replicaCount=0",
      "--set",
      "priorityClasses.create=true",
      // the demo's storage, allowed for radflow (docs/security.md)
      "--set",
      `storageTrust.pvcs={${DEMO_PVCS.join(",")}}`,
      "--set",
      `storageTrust.secrets={${DEMO_SECRETS.join(",")}}`,
      "--wait=false",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  kubectl(["wait", "--for=condition=Established", "crd/aiworkflows.radflow.io", "crd/inferencetasks.radflow.io"]);
  // PersistentVolumes of an earlier run are Released and would not bind again
  kubectl(["delete", "pv", "radflow-demo-imaging-studies", "radflow-demo-neuro-studies", "--ignore-not-found"]);
  kubectl(["apply", "-f", "-"], storageYaml(imaging));
  kubectl(["apply", "-f", "-"], `apiVersion: v1\nkind: Namespace\nmetadata: {name: radflow-system}\n`);

  say(dim(`3/6 starting the operator (leader election, ingest from NATS, metrics on :${METRICS_PORT})`));
  const opLog = path.join(o.dir, "logs", "radflow-operator.log");
  const logFd = openSync(opLog, "w");
  operator = spawn(
    process.execPath,
    [
      path.join(root, "src", "cmd", "radflow.ts"),
      "operator",
      "--namespaces",
      NS,
      "--lease-namespace",
      "radflow-system",
      "--metrics-port",
      String(METRICS_PORT),
      "--health-port",
      String(METRICS_PORT + 1),
      "--priority-class",
      "stat=radflow-stat",
      "--priority-class",
      "urgent=radflow-urgent",
      "--priority-class",
      "routine=radflow-routine",
      "--priority-class",
      "batch=radflow-batch",
      ...DEMO_PVCS.flatMap((p) => ["--allow-pvc", p]),
      ...DEMO_SECRETS.flatMap((p) => ["--allow-secret", p]),
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: env.KUBECONFIG,
        RADFLOW_NATS_URL: env.RADFLOW_NATS_URL,
        RADFLOW_NATS_CONSUMER: "radflow-demo",
      },
      stdio: ["ignore", logFd, logFd],
    },
  );
  // next to the cluster's components: `hack/cluster down` stops it too, should this process die
  writeFileSync(path.join(o.dir, "pids", "radflow-operator.pid"), String(operator.pid));
  operator.on("exit", (code) => {
    if (!cleaning) {
      say(`operator exited (${code}); its log: ${opLog}`);
      void cleanup(1);
    }
  });

  say(dim(`4/6 applying the example AIWorkflows (examples/*.yaml) to namespace ${NS}`));
  const wfs = demoWorkflows(realNode);
  kubectl(["apply", "--server-side", "--force-conflicts", "-f", "-"], wfs.map((w) => yaml.dump(w)).join("---\n"));
  const kc = new KubeConfig();
  kc.loadFromFile(env.KUBECONFIG);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const G = { group: "radflow.io", version: "v1alpha1", namespace: NS };
  for (let i = 0; ; i++) {
    const list = (await custom.listNamespacedCustomObject({ ...G, plural: "aiworkflows" })) as { items: AIWorkflow[] };
    const ready = list.items.filter((w) =>
      w.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"),
    );
    if (ready.length === wfs.length) break;
    if (i > 300) throw new Error(`workflows not Ready after 60 s; see ${opLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  say(`   ${wfs.length} AIWorkflows Ready: ${wfs.map((w) => w.metadata.name).join(", ")}`);

  say(dim("5/6 making the day's studies as DICOM Part-10 files (dcmtk dump2dcm) and sending them (radflow send)"));
  work = mkdtempSync(path.join(os.tmpdir(), "radflow-demo-"));
  const studies = dayOfStudies();
  // a day, compressed: shuffle, then send in waves
  studies.sort(() => Math.random() - 0.5);
  for (const [i, s] of studies.entries()) {
    writeStudy(path.join(work as string, `study-${i}`), i, s);
    // on the real node the head CTs are read from the imaging volume, where --location says
    if (realNode && s.kind.startsWith("head CT")) {
      cpSync(path.join(work as string, `study-${i}`), path.join(imaging, "ed", `study-${i}`), { recursive: true });
    }
  }
  const files = studies.reduce((n, s) => n + s.series.reduce((m, x) => m + x.instances, 0), 0);
  say(`   ${studies.length} studies, ${files} files`);

  const started = Date.now();
  const send = (i: number, s: StudyPlan) =>
    execFileSync(
      process.execPath,
      [
        path.join(root, "src", "cmd", "radflow.ts"),
        "send",
        path.join(work as string, `study-${i}`),
        "--calling-ae",
        s.calling,
        "--called-ae",
        s.called,
        "--location",
        `study-${i}`,
      ],
      { env: { ...process.env, RADFLOW_NATS_URL: env.RADFLOW_NATS_URL }, stdio: ["ignore", "pipe", "pipe"] },
    );

  say(dim("6/6 watching the day go by (tasks by phase, GPUs in use, turnaround)"));
  let sent = 0;
  const progress = async (): Promise<InferenceTask[]> => {
    const tasks = (
      (await custom.listNamespacedCustomObject({ ...G, plural: "inferencetasks" })) as { items: InferenceTask[] }
    ).items;
    const pods = (
      await core.listNamespacedPod({ namespace: NS, labelSelector: "app.kubernetes.io/managed-by=radflow" })
    ).items;
    const gpus = pods
      .filter((p) => p.status?.phase === "Running")
      .reduce((n, p) => n + Number(p.spec?.containers[0]?.resources?.limits?.["nvidia.com/gpu"] ?? 0), 0);
    const by = (ph: string) => tasks.filter((t) => (t.status?.phase ?? "Pending") === ph).length;
    const waiting = tasks.filter((t) => t.status?.steps?.some((s) => s.phase === "WaitingForGPU")).length;
    const line = `   t=${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s  sent ${String(sent).padStart(2)}/${studies.length}  tasks ${String(tasks.length).padStart(3)}  pending ${String(by("Pending")).padStart(2)} (GPU wait ${waiting})  running ${String(by("Running")).padStart(2)}  succeeded ${String(by("Succeeded")).padStart(3)}  failed ${by("Failed")}  GPUs ${gpus}/8`;
    if (tty) process.stdout.write(`\r${line}`);
    else say(line);
    return tasks;
  };
  const ticker = setInterval(() => void progress().catch(() => undefined), tty ? 500 : 3000);
  for (let i = 0; i < studies.length; i++) {
    send(i, studies[i] as StudyPlan);
    sent++;
    if (!flags.fast && i % 4 === 3) await new Promise((r) => setTimeout(r, 1000));
  }
  // wait for the day's tasks to end
  let tasks: InferenceTask[] = [];
  for (let i = 0; i < 600; i++) {
    try {
      tasks = (
        (await custom.listNamespacedCustomObject({ ...G, plural: "inferencetasks" })) as { items: InferenceTask[] }
      ).items;
    } catch {
      await new Promise((r) => setTimeout(r, 1000)); // the API server may be busy: look again
      continue;
    }
    const open = tasks.filter((t) => !["Succeeded", "Failed", "Canceled"].includes(t.status?.phase ?? ""));
    if (tasks.length > 0 && open.length === 0 && i > 3) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  clearInterval(ticker);
  await progress().catch(() => undefined);
  if (tty) say();

  // ---- summary ----
  say();
  say(bold("Summary"));
  const head = [
    "workflow",
    "priority",
    "studies",
    "succeeded",
    "failed",
    "steps skipped",
    "p50 turnaround",
    "p95 turnaround",
    "max GPU wait",
  ];
  const rows = wfs.map((w) => {
    const mine = tasks.filter((t) => t.spec.workflowRef.name === w.metadata.name);
    const turn = mine
      .filter((t) => t.status?.completionTime)
      .map(
        (t) =>
          (Date.parse(t.status?.completionTime as string) -
            Date.parse(t.spec.eventTime ?? (t.metadata.creationTimestamp as string))) /
          1000,
      );
    const gpuWait = mine.map((t) =>
      t.status?.startTime
        ? (Date.parse(t.status.startTime) - Date.parse(t.metadata.creationTimestamp as string)) / 1000
        : 0,
    );
    return [
      w.metadata.name as string,
      w.spec.priority,
      String(mine.length),
      String(mine.filter((t) => t.status?.phase === "Succeeded").length),
      String(mine.filter((t) => t.status?.phase === "Failed").length),
      String(mine.reduce((n, t) => n + (t.status?.steps?.filter((s) => s.phase === "Skipped").length ?? 0), 0)),
      secs(percentile(turn, 50)),
      secs(percentile(turn, 95)),
      secs(gpuWait.length ? Math.max(...gpuWait) : undefined),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join("  ");
  say(bold(fmt(head)));
  for (const r of rows) say(fmt(r));
  say();
  say(bold("Where to look next"));
  say(`  export KUBECONFIG=${env.KUBECONFIG} PATH=${bin}:$PATH`);
  say(`  kubectl get radflow -n ${NS}                 # AIWorkflows and InferenceTasks`);
  say(`  kubectl describe itask -n ${NS} <name>       # steps, outputs, conditions, events`);
  say(`  kubectl get jobs,pods -n ${NS} -l app.kubernetes.io/managed-by=radflow`);
  say(`  curl -s localhost:${METRICS_PORT}/metrics | grep ^radflow_   # Prometheus metrics (while the demo runs)`);
  say(
    `  audit trail: FHIR AuditEvents in JetStream stream RADFLOW_AUDIT at ${env.RADFLOW_NATS_URL} (subjects radflow.audit.>)`,
  );
  say(`  results:     stream RADFLOW_RESULTS (radflow.task.succeeded / radflow.task.failed)`);
  say(`  operator log: ${opLog}`);
  const failed = tasks.filter((t) => t.status?.phase === "Failed").length;
  if (flags.keep) {
    say();
    say("the cluster and operator keep running (--keep); `hack/cluster down` stops the cluster.");
    operator.unref();
    process.exit(0);
  }
  if (tty) {
    say();
    say(dim("press Ctrl-C to stop the operator and clean up"));
    await new Promise(() => undefined);
  }
  await cleanup(failed > 0 && tasks.length === 0 ? 1 : 0);
}

main().catch(async (e: Error) => {
  process.stderr.write(`demo failed: ${e.message}\n`);
  if (cleanupRef) await cleanupRef(1);
  process.exit(1);
});
