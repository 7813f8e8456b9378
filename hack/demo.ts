// `npm run demo`: a hospital's day on a laptop. Brings up the local cluster (real API server,
// Job controller, scheduler, KWOK GPU nodes, JetStream), installs radflow's CRDs and RBAC with
// the Helm chart, starts the operator, `radflow gateway` (receiving C-STORE, and exporting results)
// and Orthanc as the hospital's PACS, applies the example AIWorkflows, makes a day of synthetic
// studies as real DICOM Part-10 files with dcmtk, sends them with dcmtk's storescu to the gateway
// as the modalities would, shows live progress and ends with a per-workflow summary and the
// results that reached the PACS (head-CT findings as DICOM SRs in Orthanc). Ctrl-C stops it and
// cleans up.
//
//   npm run demo [-- --keep] [-- --studies N]
//     --keep      leave the cluster and operator running after the summary (explore with kubectl)
//     --fast      skip the pauses between waves of studies
//     --real-node the head-CT step really runs: the example model (hack/images) on the cluster's
//                 real node (hack/cluster up --real-node) reads each study's DICOM files
//
// On a fresh machine it first installs what it needs (hack/deps.sh: dcmtk for the DICOM files).
// Whatever fails, it stops what it started — the operator and, unless it was already running, the
// cluster, the gateway, Orthanc — and keeps their logs in a directory it names.
// RADFLOW_CLUSTER_DIR / RADFLOW_PORT_BASE choose the cluster (hack/cluster.ts); RADFLOW_DEMO_DUMP2DCM
// the dcmtk program (tests point it at one that does not exist to check the cleanup); the ports
// below are RADFLOW_DEMO_*_PORT variables.
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
import { USER } from "./images/specs.ts";
import { type Orthanc, startOrthanc } from "./orthanc.ts";
import { imagesDir } from "./real-node/images.ts";
import { loadImages } from "./real-node/node.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NS = "radiology";
// the examples' storage, allowed for radflow as a platform team would (docs/security.md)
const DEMO_PVCS = [`${NS}/imaging-studies`, `${NS}/neuro-studies`];
const DEMO_SECRETS = [`${NS}/imaging-s3-credentials`, `${NS}/research-s3-credentials`];
const METRICS_PORT = Number(process.env.RADFLOW_DEMO_METRICS_PORT ?? 9464);
const DUMP2DCM = process.env.RADFLOW_DEMO_DUMP2DCM ?? "dump2dcm";
// the DICOM side: the gateway's C-STORE port (the DICOM default) and metrics, Orthanc's (its defaults)
const GATEWAY_PORT = Number(process.env.RADFLOW_DEMO_GATEWAY_PORT ?? 11112);
const GATEWAY_METRICS_PORT = Number(process.env.RADFLOW_DEMO_GATEWAY_METRICS_PORT ?? METRICS_PORT + 2);
const ORTHANC_HTTP_PORT = Number(process.env.RADFLOW_DEMO_ORTHANC_HTTP_PORT ?? 8042);
const ORTHANC_DICOM_PORT = Number(process.env.RADFLOW_DEMO_ORTHANC_DICOM_PORT ?? 4242);
const GATEWAY_AE_TITLES = "RADFLOW-GW,RADFLOW-NEURO,RADFLOW-VALID";

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
        // every third head CT holds hyperdense voxels (70 HU), so the example model on the real
        // node (--real-node) finds a suspected hemorrhage in some studies, as KWOK's stand-in does
        `(7fe0,0010) OW ${se.bodyPart === "HEAD" && n % 3 === 0 ? "0046\\0046\\0028" : "0000\\0000\\0000"}\\0000`,
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
      if (st.name === REAL_STEP) {
        // a positive finding goes back to the PACS as an SR in the study (the example model
        // calls it suspectedHemorrhage; the KWOK stand-in hemorrhage)
        const flag = realNode ? "suspectedHemorrhage" : "hemorrhage";
        st.export = [...(st.export ?? []), { destination: "pacs", when: `outputs.${flag} == true`, content: "auto" }];
      }
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

/** A process of the demo's, started with its log in the cluster's logs and its pid beside the components'. */
function startLogged(
  o: { dir: string },
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  gid?: number,
): ChildProcess {
  const fd = openSync(path.join(o.dir, "logs", `${name}.log`), "w");
  const p = spawn(process.execPath, [path.join(root, "src", "cmd", "radflow.ts"), ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", fd, fd],
    ...(gid !== undefined ? { gid } : {}),
  });
  // next to the cluster's components: `hack/cluster down` stops it too, should this process die
  if (p.pid) writeFileSync(path.join(o.dir, "pids", `${name}.pid`), String(p.pid));
  return p;
}

/** storescu sending one study's files to 127.0.0.1:port (resolves when it exits 0). */
function storescu(dir: string, calling: string, called: string, port: number): Promise<void> {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".dcm"))
    .map((f) => path.join(dir, f));
  return new Promise((resolve, reject) => {
    const p = spawn("storescu", ["-aet", calling, "-aec", called, "-nh", "127.0.0.1", String(port), ...files], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr?.on("data", (d) => {
      err = (err + d).slice(-2000);
    });
    p.once("error", reject);
    p.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`storescu to port ${port} exited ${code}: ${err.trim()}`)),
    );
  });
}

async function main(): Promise<void> {
  const o = defaultOptions();
  const realNode = flags["real-node"] === true;
  if (realNode) o.realNode = true;
  // the imaging volume: on the real node a folder of the cluster's (steps read it for real)
  const imaging = realNode ? path.join(o.dir, "demo-imaging") : "/var/lib/radflow-demo/imaging";
  const hadCluster = await isUp(o);
  let operator: ChildProcess | undefined;
  let gateway: ChildProcess | undefined;
  let orthanc: Orthanc | undefined;
  let work: string | undefined;
  // the gateway's volume: on the real node the imaging volume's folder the head-CT step mounts (subPath ed)
  const gatewayStore = path.join(o.dir, "demo-imaging", "ed");
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
    await stopOperator(gateway);
    await orthanc?.stop().catch(() => undefined);
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
  say(dim("1/7 local cluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK GPU nodes, NATS JetStream"));
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
  }
  // an earlier run's studies and results: the gateway's journals would only grow
  rmSync(gatewayStore, { recursive: true, force: true });
  mkdirSync(path.join(gatewayStore, "results"), { recursive: true });
  // the model runs as a non-root user: it must be able to write its results
  if (realNode) chmodSync(path.join(gatewayStore, "results"), 0o777);
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
  say(dim("2/7 installing radflow: CRDs and RBAC from the Helm chart, PriorityClasses, demo storage"));
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
  kubectl([
    "wait",
    "--for=condition=Established",
    "crd/aiworkflows.radflow.io",
    "crd/inferencetasks.radflow.io",
    "crd/dicomdestinations.radflow.io",
  ]);
  // PersistentVolumes of an earlier run are Released and would not bind again
  kubectl(["delete", "pv", "radflow-demo-imaging-studies", "radflow-demo-neuro-studies", "--ignore-not-found"]);
  kubectl(["apply", "-f", "-"], storageYaml(imaging));
  kubectl(["apply", "-f", "-"], `apiVersion: v1\nkind: Namespace\nmetadata: {name: radflow-system}\n`);

  say(dim(`3/7 starting the operator (leader election, ingest from NATS, metrics on :${METRICS_PORT})`));
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

  say(
    dim(
      `4/7 the DICOM side: radflow gateway (C-STORE on :${GATEWAY_PORT}, exports to PACS) and Orthanc as the PACS (:${ORTHANC_HTTP_PORT}, DICOM :${ORTHANC_DICOM_PORT})`,
    ),
  );
  orthanc = await startOrthanc({
    httpPort: ORTHANC_HTTP_PORT,
    dicomPort: ORTHANC_DICOM_PORT,
    dir: path.join(o.dir, "demo-orthanc"),
    logFile: path.join(o.dir, "logs", "orthanc.log"),
  });
  if (orthanc.pid) writeFileSync(path.join(o.dir, "pids", "orthanc.pid"), String(orthanc.pid));
  kubectl(
    ["apply", "-f", "-"],
    `apiVersion: radflow.io/v1alpha1
kind: DICOMDestination
metadata: {name: pacs, namespace: ${NS}}
spec:
  dimse: {host: 127.0.0.1, port: ${ORTHANC_DICOM_PORT}, calledAETitle: ORTHANC, callingAETitle: RADFLOW}
  checkIntervalSeconds: 30
`,
  );
  const gwLog = path.join(o.dir, "logs", "radflow-gateway.log");
  const gw = startLogged(
    o,
    "radflow-gateway",
    [
      "gateway",
      ...["--storage-dir", gatewayStore, "--dicom-port", String(GATEWAY_PORT), "--http-port", "0"],
      ...["--metrics-port", String(GATEWAY_METRICS_PORT), "--ae-title", GATEWAY_AE_TITLES],
      ...["--quiet-seconds", "1", "--max-wait-seconds", "30", "--nats-url", env.RADFLOW_NATS_URL],
      ...["--export", "--kubeconfig", env.KUBECONFIG, "--export-attempts", "3", "--export-backoff-seconds", "2"],
    ],
    { RADFLOW_NAMESPACES: NS, RADFLOW_PHI_HMAC_KEY: "radflow-demo-study-reference-key" },
    // on the real node the model runs as the images' user: the gateway stores the studies (mode
    // 0640) with that user's group, so the head-CT step can read them
    realNode ? USER.gid : undefined,
  );
  gateway = gw;
  gw.on("exit", (code) => {
    if (!cleaning) {
      say(`gateway exited (${code}); its log: ${gwLog}`);
      void cleanup(1);
    }
  });
  for (let i = 0; ; i++) {
    const ok = await fetch(`http://127.0.0.1:${GATEWAY_METRICS_PORT}/readyz`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (gw.exitCode !== null) throw new Error(`the gateway exited (${gw.exitCode}); see ${gwLog}`);
    if (i > 900) throw new Error(`the gateway was not ready after 180 s; see ${gwLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }

  say(dim(`5/7 applying the example AIWorkflows (examples/*.yaml) to namespace ${NS}`));
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

  say(dim("6/7 making the day's studies as DICOM Part-10 files (dcmtk dump2dcm), sent by storescu to the gateway"));
  work = mkdtempSync(path.join(os.tmpdir(), "radflow-demo-"));
  const studies = dayOfStudies();
  // a day, compressed: shuffle, then send in waves
  studies.sort(() => Math.random() - 0.5);
  for (const [i, s] of studies.entries()) writeStudy(path.join(work as string, `study-${i}`), i, s);
  const files = studies.reduce((n, s) => n + s.series.reduce((m, x) => m + x.instances, 0), 0);
  say(`   ${studies.length} studies, ${files} files`);

  const started = Date.now();
  // the modality sends to the gateway (the studies go where the steps read them); the ED's scanners
  // send their head CTs to the PACS too, where the SR of a positive finding joins the study
  const send = async (i: number, s: StudyPlan) => {
    const dir = path.join(work as string, `study-${i}`);
    await Promise.all([
      storescu(dir, s.calling, s.called, GATEWAY_PORT),
      ...(s.kind.startsWith("head CT") ? [storescu(dir, s.calling, "ORTHANC", ORTHANC_DICOM_PORT)] : []),
    ]);
  };

  say(dim("7/7 watching the day go by (tasks by phase, GPUs in use, turnaround)"));
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
  // in waves of four studies at once, as several modalities send
  for (let i = 0; i < studies.length; i += 4) {
    const wave = studies.slice(i, i + 4);
    await Promise.all(wave.map((s, k) => send(i + k, s)));
    sent += wave.length;
    if (!flags.fast) await new Promise((r) => setTimeout(r, 1000));
  }
  // every study announced (the gateway's quiet window has passed for each)
  const gatewayMetric = async (re: RegExp) =>
    fetch(`http://127.0.0.1:${GATEWAY_METRICS_PORT}/metrics`)
      .then((r) => r.text())
      .then((t) => Number(re.exec(t)?.[1] ?? Number.NaN))
      .catch(() => Number.NaN);
  for (let i = 0; i < 120 && (await gatewayMetric(/^radflow_gateway_studies_pending (\d+)/m)) !== 0; i++)
    await new Promise((r) => setTimeout(r, 500));
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

  // the exports: every task whose steps export has its outcome on status.exports
  const exporting = (t: InferenceTask) =>
    t.status?.phase === "Succeeded" && t.spec.steps.some((st) => (st.export?.length ?? 0) > 0);
  for (let i = 0; i < 240; i++) {
    const open = tasks.filter(
      (t) => exporting(t) && (!t.status?.exports?.length || t.status.exports.some((e) => e.phase === "Pending")),
    );
    if (!open.length) break;
    await new Promise((r) => setTimeout(r, 500));
    try {
      tasks = (
        (await custom.listNamespacedCustomObject({ ...G, plural: "inferencetasks" })) as { items: InferenceTask[] }
      ).items;
    } catch {}
  }

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
  // a failure says why here: the cluster (and its logs) goes away when the demo ends
  for (const t of tasks.filter((x) => x.status?.phase === "Failed")) {
    const step = t.status?.steps?.find((st) => st.phase === "Failed");
    const cond = t.status?.conditions?.find((c) => c.message);
    say(
      `  failed: ${t.metadata.name} — ${step ? `step ${step.name}: ${step.reason ?? ""} ${step.message ?? ""}` : `${cond?.reason ?? ""} ${cond?.message ?? ""}`}`.trimEnd(),
    );
  }
  say();
  say(bold("Results back in the PACS"));
  const exports = tasks.flatMap((t) => t.status?.exports ?? []);
  const phases = ["Sent", "Skipped", "Failed", "Pending"].map(
    (ph) => `${ph} ${exports.filter((e) => e.phase === ph).length}`,
  );
  const received = await gatewayMetric(/^radflow_gateway_instances_total\{protocol="dimse",outcome="stored"\} (\d+)/m);
  say(`  gateway: ${received} instances received by C-STORE; exports ${phases.join(", ")}`);
  const series = await (orthanc as Orthanc)
    .get<{ MainDicomTags: { Modality?: string }; ParentStudy: string; Instances: string[] }[]>("/series?expand")
    .catch(() => []);
  const srs = series.filter((x) => x.MainDicomTags.Modality === "SR");
  const srStudies = new Set(srs.map((x) => x.ParentStudy)).size;
  say(
    `  Orthanc holds ${srs.reduce((n, x) => n + x.Instances.length, 0)} radflow SR(s), in the ${srStudies} head-CT ${srStudies === 1 ? "study" : "studies"} with a suspected hemorrhage`,
  );
  say(`  Orthanc explorer: ${(orthanc as Orthanc).url}/app/explorer.html`);
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
  say(`  kubectl get dcmdest -n ${NS}                # the PACS as a DICOMDestination (Reachable)`);
  say(`  operator log: ${opLog}`);
  say(`  gateway log:  ${gwLog}`);
  const failed = tasks.filter((t) => t.status?.phase === "Failed").length;
  if (flags.keep) {
    say();
    say("the cluster, operator, gateway and Orthanc keep running (--keep); `hack/cluster down` stops them all.");
    operator.unref();
    gw.unref();
    orthanc?.detach();
    process.exit(0);
  }
  if (tty) {
    say();
    say(dim("press Ctrl-C to stop the operator, the gateway and Orthanc and clean up"));
    await new Promise(() => undefined);
  }
  await cleanup(failed > 0 && tasks.length === 0 ? 1 : 0);
}

main().catch(async (e: Error) => {
  process.stderr.write(`demo failed: ${e.message}\n`);
  if (cleanupRef) await cleanupRef(1);
  process.exit(1);
});
