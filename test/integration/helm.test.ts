// The Helm chart on the real local cluster:
//   - helm lint; helm template | kubectl apply --dry-run=server (every variant, and manifests/);
//   - helm install into a fresh namespace (PodSecurity "restricted" enforced there);
//   - the operator, run beside the cluster with a token of the chart's ServiceAccount and the
//     environment of the chart's Deployment, takes the Lease, validates an AIWorkflow, turns a
//     study event into an InferenceTask, runs its Job, writes Events, deletes the task after its
//     TTL and cancels another: the grants suffice;
//   - each verb of each rule, removed alone, makes the operation that needs it fail with 403, and
//     `kubectl auth can-i --list` shows nothing else: no grant is in excess (both RBAC scopes);
//   - the image's entry point, from the build output with production dependencies only, as uid
//     1000 on a read-only root, starts the operator as the chart configures it;
//   - helm upgrade changes the Deployment; helm uninstall leaves nothing but the CRDs;
//   - the trust model (docs/security.md): with watchNamespaces the ServiceAccount may act in
//     those namespaces only (kubectl auth can-i), the admission policy refuses storage outside
//     storageTrust, the operator reads the allowed Secret and cuts its value out of a step's
//     outputs, and the NetworkPolicies (operator egress pinned, step pods) are accepted as rendered.
//     Whether a NetworkPolicy blocks traffic needs a CNI that enforces them: KWOK has none.
import { execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  AppsV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  EventsV1Api,
  RbacAuthorizationV1Api,
  type V1Deployment,
  V1MicroTime,
  type V1PolicyRule,
} from "@kubernetes/client-node";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { kinds as crdKinds } from "../../src/api/v1alpha1/crd.ts";
import type { InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { STREAM } from "../../src/ingest/streams.ts";
import { studyRefWith } from "../../src/log/logger.ts";
import {
  createWorkflow,
  freePort,
  listTasks,
  type Nats,
  natsConnect,
  numericRunId,
  publishRetry,
  studyEvent,
  tail,
  uniqueAE,
} from "../support/e2e.ts";
import {
  batch,
  core,
  custom,
  kubeConfig,
  kubeconfigPath,
  kubectl,
  natsUrl,
  toolBin,
  useNamespace,
  waitFor,
} from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const execFileP = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "../..");
const CHART = path.join(ROOT, "helm/radflow");
const G = { group: "radflow.io", version: "v1alpha1" };

const rel = useNamespace("helm-rel"); // the release namespace (the Lease lives here)
const work = useNamespace("helm-work"); // the namespace the operator watches
const RUN = numericRunId();
const RELEASE = `rf${RUN.slice(-8)}`;
const FULL = `${RELEASE}-radflow`; // the chart's full name: Deployment, ServiceAccount, Roles
const LEASE = "radflow-operator";
const CONSUMER = `helm-${RUN}`;
const STUDY_SUBJECT = `radflow.study.helm.${RUN}`;
const HMAC_KEY = randomBytes(24).toString("hex");
// cluster-scoped names must not collide with other runs on the shared cluster
const pcName = (p: string) => `rf-${RUN}-${p}`;

const tmp = mkdtempSync(path.join(tmpdir(), "radflow-helm-it-"));
chmodSync(tmp, 0o755); // the image test's uid 1000 must reach the build under it (its secrets stay 0400/0600)
const valuesFile = path.join(tmp, "values.yaml");
// the same with a ClusterRole: watchNamespaces must go (cluster scope with them is refused)
const clusterValuesFile = path.join(tmp, "values-cluster.yaml");
// the Secret the platform allowed for radflow, and the value a model prints from it
const S3_SECRET = "imaging-s3";
const S3_KEY = randomBytes(20).toString("base64url");

const apps = () => kubeConfig().makeApiClient(AppsV1Api);
const rbac = () => kubeConfig().makeApiClient(RbacAuthorizationV1Api);
const authz = () => kubeConfig().makeApiClient(AuthorizationV1Api);
const leases = () => kubeConfig().makeApiClient(CoordinationV1Api);
const eventsApi = () => kubeConfig().makeApiClient(EventsV1Api);

async function helm(args: string[], input?: string): Promise<string> {
  const p = execFileP(toolBin("helm"), [...args, "--kubeconfig", kubeconfigPath()], { maxBuffer: 64 << 20 });
  if (input !== undefined) p.child.stdin?.end(input);
  try {
    return (await p).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`helm ${args.join(" ")}: ${err.stderr || err.message}`);
  }
}

function installValues() {
  return {
    // no rbac.scope: watchNamespaces alone must give Roles, not a ClusterRole (issue 12, item 11)
    watchNamespaces: [work.name] as string[],
    storageTrust: { secrets: [`${work.name}/${S3_SECRET}`], pvcs: [`${work.name}/studies`] },
    stepNetworkPolicy: { enabled: true },
    workers: 4,
    nats: { url: natsUrl(), consumer: CONSUMER },
    phi: { hmacKey: { existingSecret: "radflow-phi-key" } },
    priorityClasses: {
      create: true,
      stat: { name: pcName("stat") },
      urgent: { name: pcName("urgent") },
      routine: { name: pcName("routine") },
      batch: { name: pcName("batch") },
    },
  };
}

let installed = false;
let nats: Nats | undefined;
const operators: OperatorProcess[] = [];

// A real API server keeps the EndpointSlice default/kubernetes (its own addresses), from which the
// chart pins the operator's egress to it; the local cluster runs without that reconciler, so the
// test writes one as the API server would (and removes it afterwards).
let madeApiSlice = false;

beforeAll(async () => {
  const slices = await kubectl(["get", "endpointslice", "-n", "default", "-o", "name"]);
  if (!slices.split("\n").includes("endpointslice.discovery.k8s.io/kubernetes")) {
    const server = new URL(kubeConfig().getCurrentCluster()?.server as string);
    await kubectl(
      ["apply", "-f", "-"],
      yaml.dump({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: { name: "kubernetes", namespace: "default" },
        addressType: "IPv4",
        // the local API server listens on loopback, which an EndpointSlice may not name: an
        // address from TEST-NET-1 stands for it (the chart copies whatever it finds)
        endpoints: [{ addresses: ["192.0.2.10"] }],
        ports: [{ name: "https", port: Number(server.port || 443), protocol: "TCP" }],
      }),
    );
    madeApiSlice = true;
  }
  writeFileSync(valuesFile, yaml.dump(installValues()));
  writeFileSync(
    clusterValuesFile,
    yaml.dump({
      ...installValues(),
      rbac: { scope: "cluster" },
      watchNamespaces: [],
      stepNetworkPolicy: { enabled: true, namespaces: [work.name] },
    }),
  );
  await core().createNamespacedSecret({
    namespace: work.name,
    body: {
      metadata: { name: S3_SECRET },
      stringData: { AWS_ACCESS_KEY_ID: "radflow-test", AWS_SECRET_ACCESS_KEY: S3_KEY },
    },
  });
  // the operator's pods must pass the restricted Pod Security Standard
  await kubectl(["label", "namespace", rel.name, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"]);
  await core().createNamespacedSecret({
    namespace: rel.name,
    body: { metadata: { name: "radflow-phi-key" }, stringData: { "hmac-key": HMAC_KEY } },
  });
});

afterAll(async () => {
  await Promise.all(operators.map((o) => o.kill().catch(() => undefined)));
  if (madeApiSlice) await kubectl(["delete", "endpointslice", "kubernetes", "-n", "default"]).catch(() => undefined);
  // no operator is left to take the tasks' cleanup finalizers off: without this the watched
  // namespace would hang in Terminating
  const left = await kubectl(["get", "inferencetasks", "-n", work.name, "-o", "name"]).catch(() => "");
  for (const t of left.split("\n").filter(Boolean)) {
    await kubectl(["patch", "-n", work.name, t, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']).catch(
      () => undefined,
    );
  }
  if (installed) await helm(["uninstall", RELEASE, "-n", rel.name, "--wait"]).catch(() => undefined);
  // cluster-scoped leftovers of a failed run (the release name is this run's own)
  await kubectl([
    "delete",
    "priorityclass,clusterrole,clusterrolebinding",
    "-l",
    `app.kubernetes.io/instance=${RELEASE}`,
    "--ignore-not-found",
  ]).catch(() => undefined);
  if (nats) {
    await nats.jsm.consumers.delete(STREAM.studies, CONSUMER).catch(() => undefined);
    await nats.jsm.streams.purge(STREAM.studies, { filter: STUDY_SUBJECT }).catch(() => undefined);
    await nats.nc.drain();
  }
  rmSync(tmp, { recursive: true, force: true });
});

// ---- the ServiceAccount's credentials and requests made with them ---------------------------

interface Credentials {
  server: string;
  ca: Buffer;
  token: string;
}
let sa: Credentials;

/** A token of the chart's ServiceAccount from the TokenRequest API, for the cluster's server and CA. */
async function serviceAccountCredentials(): Promise<Credentials> {
  const tr = await core().createNamespacedServiceAccountToken({
    name: FULL,
    namespace: rel.name,
    body: { spec: { expirationSeconds: 3600 } },
  });
  const cluster = kubeConfig().getCurrentCluster();
  if (!cluster?.caData) throw new Error("the admin kubeconfig has no certificate-authority-data");
  return { server: cluster.server, ca: Buffer.from(cluster.caData, "base64"), token: tr.status?.token as string };
}

function writeKubeconfig(file: string, c: Credentials) {
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "local", cluster: { server: c.server, "certificate-authority-data": c.ca.toString("base64") } }],
    users: [{ name: FULL, user: { token: c.token } }],
    contexts: [{ name: "sa", context: { cluster: "local", user: FULL } }],
    "current-context": "sa",
  };
  writeFileSync(file, yaml.dump(doc), { mode: 0o600 });
}

interface Reply {
  status: number;
  body: string;
}

/** One API request as the ServiceAccount. A watch resolves as soon as its status is known. */
function asServiceAccount(method: string, p: string, body?: unknown, contentType = "application/json"): Promise<Reply> {
  const url = new URL(p, sa.server);
  const watch = url.searchParams.has("watch");
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: sa.ca,
        headers: {
          Authorization: `Bearer ${sa.token}`,
          Accept: "application/json",
          ...(body === undefined ? {} : { "Content-Type": contentType }),
        },
      },
      (res) => {
        if (watch) {
          resolve({ status: res.statusCode ?? 0, body: "" });
          req.destroy();
          return;
        }
        let data = "";
        res.on("data", (d) => {
          data += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on("error", (e) => {
      if (!watch || !req.destroyed) reject(e);
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** What the authorizer answers for the ServiceAccount (the same RBAC cache a request meets). */
async function allowed(a: {
  verb: string;
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}): Promise<boolean> {
  const [resource, subresource] = a.resource.split("/");
  const r = await authz().createSubjectAccessReview({
    body: {
      spec: {
        user: `system:serviceaccount:${rel.name}:${FULL}`,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${rel.name}`, "system:authenticated"],
        resourceAttributes: {
          verb: a.verb,
          group: a.group,
          resource,
          subresource,
          namespace: a.namespace,
          name: a.name,
        },
      },
    },
  });
  return r.status?.allowed === true;
}

// ---- the environment of the chart's Deployment, outside the cluster ------------------------

async function installedDeployment(): Promise<V1Deployment> {
  return apps().readNamespacedDeployment({ name: FULL, namespace: rel.name });
}

/**
 * The operator container's environment as the kubelet would build it: values, the downward API
 * (pod name = `identity`), Secret keys, and files from Secret and ConfigMap volumes written under
 * `dir` (the variable then names that copy). Returns the variables and the files written.
 */
async function chartEnvironment(
  identity: string,
  dir: string,
): Promise<{ env: Record<string, string>; files: string[] }> {
  const d = await installedDeployment();
  const pod = d.spec?.template.spec;
  const c = pod?.containers[0];
  const env: Record<string, string> = {};
  const files: string[] = [];
  for (const e of c?.env ?? []) {
    if (e.value !== undefined) {
      if (!e.value.startsWith("/etc/radflow/")) {
        env[e.name] = e.value;
        continue;
      }
      const mount = c?.volumeMounts?.find((m) => m.mountPath === path.dirname(e.value as string));
      const vol = pod?.volumes?.find((v) => v.name === mount?.name);
      const base = path.basename(e.value);
      let content: string;
      if (vol?.secret) {
        const item = vol.secret.items?.find((i) => i.path === base);
        const s = await core().readNamespacedSecret({ name: vol.secret.secretName as string, namespace: rel.name });
        content = Buffer.from(s.data?.[item?.key as string] ?? "", "base64").toString("utf8");
      } else if (vol?.configMap) {
        const cm = await core().readNamespacedConfigMap({ name: vol.configMap.name as string, namespace: rel.name });
        content = cm.data?.[base] ?? "";
      } else {
        throw new Error(`${e.name}=${e.value}: no Secret or ConfigMap volume mounted there`);
      }
      const file = path.join(dir, e.value);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, content, { mode: 0o400 });
      files.push(file);
      env[e.name] = file;
    } else if (e.valueFrom?.fieldRef) {
      env[e.name] = e.valueFrom.fieldRef.fieldPath === "metadata.name" ? identity : rel.name;
    } else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      const s = await core().readNamespacedSecret({ name: ref.name as string, namespace: rel.name });
      const v = s.data?.[ref.key];
      if (v !== undefined) env[e.name] = Buffer.from(v, "base64").toString("utf8");
      else if (!ref.optional) throw new Error(`${e.name}: Secret ${ref.name} has no key ${ref.key}`);
    }
  }
  return { env, files };
}

// ---- small cluster helpers ------------------------------------------------------------------

let seq = 0;
function taskBody(name: string, steps: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  const n = ++seq;
  return {
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name, labels: { "radflow.io/workflow": "direct" } },
    spec: {
      workflowRef: { name: "direct", uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
      priority: "routine",
      steps,
      study: {
        studyInstanceUID: `1.2.826.0.1.3680043.10.${RUN}.${n}`,
        series: [{ seriesInstanceUID: `1.2.826.0.1.3680043.11.${RUN}.${n}`, modality: "CT", numberOfInstances: 1 }],
      },
      eventId: `helm-${RUN}-${n}`,
      ...extra,
    },
  };
}

async function createDirectTask(name: string, steps: Record<string, unknown>[], extra = {}): Promise<string> {
  await custom().createNamespacedCustomObject({
    ...G,
    namespace: work.name,
    plural: "inferencetasks",
    body: taskBody(name, steps, extra),
  });
  return name;
}

async function getTask(name: string): Promise<InferenceTask | undefined> {
  try {
    return (await custom().getNamespacedCustomObject({
      ...G,
      namespace: work.name,
      plural: "inferencetasks",
      name,
    })) as InferenceTask;
  } catch (e) {
    if ((e as { code?: number }).code === 404) return undefined;
    throw e;
  }
}

async function waitTask(name: string, what: string, pred: (t: InferenceTask) => boolean, timeoutMs = 60_000) {
  return waitFor(`task ${name}: ${what}`, timeoutMs, async () => {
    const t = await getTask(name);
    return { done: !!t && pred(t), value: t as InferenceTask, seen: t?.status ?? "gone" };
  });
}

const step = (name: string, env: Record<string, string> = {}) => ({
  name,
  image: `registry.example.org/models/${name}:1.0`,
  env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
});

async function lease() {
  return leases()
    .readNamespacedLease({ name: LEASE, namespace: rel.name })
    .catch(() => undefined);
}

function logsOnFailure(get: () => OperatorProcess | undefined) {
  onTestFailed(() => {
    const op = get();
    if (op) console.error(`--- operator ${op.identity} logs ---\n${tail(op.logs())}`);
  });
}

// ---- tests ------------------------------------------------------------------------------------

describe("helm chart on the local cluster", () => {
  it("passes helm lint --strict with the test's values", async () => {
    const out = await helm(["lint", "--strict", CHART, "-f", valuesFile]);
    expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it.each([
    ["the test's values (namespaced RBAC, PriorityClasses, NATS, PHI key)", {}],
    [
      "cluster RBAC, managed CRDs, every Secret, audit codes, monitoring peers",
      {
        rbac: { scope: "cluster", ownerReferencesPermissionEnforcement: true },
        watchNamespaces: [],
        stepNetworkPolicy: { namespaces: [work.name] },
        crds: { manage: true },
        nats: {
          url: "",
          existingSecret: "nats-conn",
          secretKeys: { url: "url", user: "username", password: "password" },
          tls: { existingSecret: "nats-tls", secretKeys: { ca: "ca.crt", cert: "tls.crt", key: "tls.key" } },
        },
        audit: { syslog: { existingSecret: "arr" }, codes: { events: {} } },
        networkPolicy: {
          metricsFrom: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }],
          egress: { nats: { to: [{ ipBlock: { cidr: "10.0.0.0/8" } }] } },
        },
        replicaCount: 3,
        podDisruptionBudget: { maxUnavailable: "50%" },
        dashboard: { annotations: { grafana_folder: "Radiology" } },
      },
    ],
  ])("renders objects the API server accepts: %s", async (_name, overrides) => {
    const file = path.join(tmp, `dry-run-${++seq}.yaml`);
    writeFileSync(file, yaml.dump(overrides));
    const rendered = await helm(["template", RELEASE, CHART, "-n", rel.name, "-f", valuesFile, "-f", file]);
    const out = await kubectl(["apply", "--dry-run=server", "-f", "-"], rendered);
    const kinds = [...out.matchAll(/^([\w.]+)\/\S+ \w+ \(server dry run\)$/gm)].map((m) => m[1]);
    expect(kinds).toContain("deployment.apps");
    expect(kinds).toContain("networkpolicy.networking.k8s.io");
    expect(kinds).toContain("poddisruptionbudget.policy");
    if ((overrides as { crds?: unknown }).crds) {
      // every kind the API defines (src/api/v1alpha1/crd.ts), and nothing else
      expect(kinds.filter((k) => k === "customresourcedefinition.apiextensions.k8s.io")).toHaveLength(crdKinds.length);
    }
  });

  it("manifests/radflow.yaml is accepted by the API server (its namespace renamed to a test namespace)", async () => {
    const text = readFileSync(path.join(ROOT, "manifests/radflow.yaml"), "utf8").replaceAll("radflow-system", rel.name);
    const out = await kubectl(["apply", "--dry-run=server", "-f", "-"], text);
    expect(out).toMatch(/namespace\/\S+ \w+ \(server dry run\)/);
    expect(out).toMatch(/customresourcedefinition\.apiextensions\.k8s\.io\/aiworkflows\.radflow\.io/);
    expect(out).toMatch(/deployment\.apps\/radflow \w+ \(server dry run\)/);
  });

  it("installs: RBAC in the watched and release namespaces only, pods admitted under PodSecurity restricted", async () => {
    await helm(["install", RELEASE, CHART, "-n", rel.name, "-f", valuesFile]);
    installed = true;
    const workRole = await rbac().readNamespacedRole({ name: FULL, namespace: work.name });
    expect(workRole.rules?.length).toBeGreaterThan(0);
    await rbac().readNamespacedRole({ name: `${FULL}-leader-election`, namespace: rel.name });
    const clusterRoles = await rbac().listClusterRole({ labelSelector: `app.kubernetes.io/instance=${RELEASE}` });
    expect(clusterRoles.items).toEqual([]);
    const pcs = await kubectl(["get", "priorityclass", "-l", `app.kubernetes.io/instance=${RELEASE}`, "-o", "name"]);
    expect(pcs.trim().split("\n").sort()).toEqual(
      ["batch", "routine", "stat", "urgent"].map((p) => `priorityclass.scheduling.k8s.io/${pcName(p)}`),
    );
    // the ReplicaSet's pods get past admission (PodSecurity restricted) and are scheduled
    const pods = await waitFor("the Deployment's 2 pods", 60_000, async () => {
      const ps = await core().listNamespacedPod({
        namespace: rel.name,
        labelSelector: `app.kubernetes.io/instance=${RELEASE}`,
      });
      return { done: ps.items.length === 2, value: ps.items, seen: ps.items.length };
    });
    for (const p of pods) expect(p.spec?.securityContext?.runAsNonRoot).toBe(true);
    const rsEvents = await kubectl(["get", "events", "-n", rel.name, "--field-selector", "reason=FailedCreate"]);
    expect(rsEvents).not.toMatch(/violates PodSecurity/);
  });

  it("watchNamespaces alone: the ServiceAccount may act in the watched namespace, 403 elsewhere (kubectl auth can-i)", async () => {
    const canI = async (...args: string[]) => {
      const r = spawnSync(
        toolBin("kubectl"),
        ["--kubeconfig", kubeconfigPath(), "auth", "can-i", ...args, `--as=system:serviceaccount:${rel.name}:${FULL}`],
        { encoding: "utf8" },
      );
      return r.stdout.trim();
    };
    for (const res of ["pods", "jobs.batch", "inferencetasks.radflow.io", "aiworkflows.radflow.io"]) {
      expect(await canI("list", res, "-n", work.name), `list ${res} in ${work.name}`).toBe("yes");
      expect(await canI("watch", res, "-n", work.name), `watch ${res} in ${work.name}`).toBe("yes");
      for (const ns of ["default", rel.name, "kube-system"]) {
        expect(await canI("list", res, "-n", ns), `list ${res} in ${ns}`).toBe("no");
      }
      expect(await canI("list", res, "--all-namespaces"), `list ${res} cluster-wide`).toBe("no");
    }
    expect(await canI("create", "jobs.batch", "-n", work.name)).toBe("yes");
    expect(await canI("create", "jobs.batch", "-n", "default")).toBe("no");
    // Secrets: the allowed one by name, nothing else
    expect(await canI("get", `secrets/${S3_SECRET}`, "-n", work.name)).toBe("yes");
    expect(await canI("get", "secrets/radflow-phi-key", "-n", rel.name)).toBe("no");
    expect(await canI("get", "secrets/other", "-n", work.name)).toBe("no");
    expect(await canI("list", "secrets", "-n", work.name)).toBe("no");
  });

  it("the admission policy refuses storage outside storageTrust in the watched namespace, at create", async () => {
    const wf = (ns: string, storage: object) =>
      yaml.dump({
        apiVersion: "radflow.io/v1alpha1",
        kind: "AIWorkflow",
        metadata: { name: `storage-${RUN}`, namespace: ns },
        spec: {
          trigger: { match: { modalities: ["CT"] } },
          steps: [{ name: "detect", image: "registry.example.org/models/detect:1.0" }],
          storage,
        },
      });
    const task = (storage: object) =>
      yaml.dump({
        ...taskBody(`storage-${RUN}`, [step("detect")], { storage }),
        metadata: { name: `storage-${RUN}`, namespace: work.name },
      });
    const refusal = async (doc: string) =>
      kubectl(["apply", "--dry-run=server", "-f", "-"], doc).then(
        () => "accepted",
        (e: Error) => e.message,
      );
    // a freshly created policy takes a moment to be enforced
    await waitFor("the policy to refuse an unlisted PVC", 30_000, async () => {
      const r = await refusal(wf(work.name, { pvc: { claimName: "payroll" } }));
      return { done: r !== "accepted", value: r, seen: r };
    });
    expect(await refusal(wf(work.name, { pvc: { claimName: "payroll" } }))).toMatch(
      new RegExp(
        `storage\\.pvc\\.claimName payroll is not a PersistentVolumeClaim the platform allowed for radflow \\(chart value storageTrust\\.pvcs: ${work.name}/payroll\\)`,
      ),
    );
    expect(await refusal(task({ s3: { uri: "s3://imaging/x", secretName: "db-root" } }))).toMatch(
      /storage\.s3\.secretName db-root is not a Secret the platform allowed for radflow/,
    );
    expect(await refusal(wf(work.name, { s3: { uri: "s3://imaging/x", secretName: "radflow-phi-key" } }))).toMatch(
      /not a Secret the platform allowed/,
    );
    // the allowed ones, and no storage at all, pass
    expect(await refusal(wf(work.name, { pvc: { claimName: "studies" } }))).toBe("accepted");
    expect(await refusal(task({ s3: { uri: "s3://imaging/x", secretName: S3_SECRET } }))).toBe("accepted");
    expect(await refusal(task({ s3: { uri: "s3://imaging/x" } }))).toBe("accepted");
    // bound to the watched namespaces: another namespace is another release's business
    expect(await refusal(wf(rel.name, { pvc: { claimName: "payroll" } }))).toBe("accepted");
  });

  it("NetworkPolicies as rendered: operator egress pinned (API server from its EndpointSlice, NATS from nats.url), step pods closed", async () => {
    const np = await kubectl(["get", "networkpolicy", FULL, "-n", rel.name, "-o", "json"]).then(JSON.parse);
    expect(np.metadata.annotations?.["radflow.io/egress-unpinned"]).toBeUndefined();
    const slice = await kubectl(["get", "endpointslice", "kubernetes", "-n", "default", "-o", "json"]).then(JSON.parse);
    const apiAddrs = (slice.endpoints as { addresses: string[] }[]).flatMap((e) => e.addresses);
    expect(apiAddrs.length).toBeGreaterThan(0);
    type Rule = { ports: { port: number }[]; to?: { ipBlock?: { cidr: string } }[] };
    const rule = (port: number) => (np.spec.egress as Rule[]).find((r) => r.ports.some((p) => p.port === port));
    expect(rule(6443)?.to).toEqual(apiAddrs.map((a) => ({ ipBlock: { cidr: `${a}/32` } })));
    const natsHosts = [
      ...new Set(
        natsUrl()
          .split(",")
          .map((u) => new URL(u.trim()).hostname),
      ),
    ];
    expect(rule(4222)?.to).toEqual(natsHosts.map((h) => ({ ipBlock: { cidr: `${h}/32` } })));
    // the step pods' policy in the watched namespace: the labels every step Job's pods carry
    const steps = await kubectl(["get", "networkpolicy", `${FULL}-steps`, "-n", work.name, "-o", "json"]).then(
      JSON.parse,
    );
    expect(steps.spec.podSelector).toEqual({
      matchLabels: { "app.kubernetes.io/managed-by": "radflow" },
      matchExpressions: [{ key: "radflow.io/step", operator: "Exists" }],
    });
    expect(steps.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(steps.spec.ingress ?? []).toEqual([]);
    expect(steps.spec.egress.flatMap((r: Rule) => r.ports.map((p) => p.port))).toEqual([53, 53]);
  });

  describe("the operator as the chart's ServiceAccount (namespaced RBAC)", () => {
    let op: OperatorProcess | undefined;

    it("has every grant it needs: lease, workflow Ready, study → task → Job → Succeeded, Events, TTL, cancel", async () => {
      logsOnFailure(() => op);
      sa = await serviceAccountCredentials();
      const kcFile = path.join(tmp, "sa.kubeconfig");
      writeKubeconfig(kcFile, sa);
      const identity = `${FULL}-local-0`;
      const { env } = await chartEnvironment(identity, path.join(tmp, "op-files"));
      expect(env.RADFLOW_PHI_HMAC_KEY_FILE).toBeDefined();
      const healthPort = await freePort();
      op = startOperator({
        namespace: work.name,
        identity,
        // the chart's environment; the flags startOperator adds are set back to the chart's values
        args: ["--lease-namespace", env.RADFLOW_LEASE_NAMESPACE as string, "--health-port", String(healthPort)],
        env: { ...env, KUBECONFIG: kcFile, RADFLOW_LOG_LEVEL: "debug" },
      });
      operators.push(op);
      const running = op;

      // the Lease in the release namespace (NATS first: other tests on the shared cluster restart it)
      await waitFor("the operator to hold the Lease", 90_000, async () => {
        const l = await lease();
        return { done: l?.spec?.holderIdentity === identity, seen: l?.spec ?? running.logs().slice(-500) };
      });

      // an AIWorkflow is validated (aiworkflows/status patch)
      nats = await natsConnect("helm-test");
      const ae = uniqueAE("HELM");
      await createWorkflow(work.name, "triage", ae, [{ name: "triage", env: { KWOK_RESULT: '{"bleed":false}' } }], {
        priority: "stat",
        ttlSecondsAfterFinished: 4,
      });

      // a study event becomes an InferenceTask (create) that runs a Job (create) to Succeeded
      const uid = `1.2.826.0.1.3680043.8.498.${RUN}.1`;
      const ev = studyEvent({ id: `helm-${RUN}-1`, studyInstanceUID: uid, calledAETitle: ae });
      await publishRetry(nats.js, STUDY_SUBJECT, JSON.stringify(ev), ev.id);
      const [created] = await waitFor("the operator to create the task", 60_000, async () => {
        const ts = await listTasks(work.name, "triage");
        return { done: ts.length === 1, value: ts, seen: ts.length };
      });
      const name = created?.metadata.name as string;
      const done = await waitTask(name, "Succeeded", (t) => t.status?.phase === "Succeeded");
      expect(done.status?.steps?.[0]?.outputs).toEqual({ bleed: false });
      expect(done.metadata.finalizers).toContain("radflow.io/cleanup-jobs"); // inferencetasks patch
      const jobs = await batch().listNamespacedJob({ namespace: work.name, labelSelector: `radflow.io/task=${name}` });
      expect(jobs.items).toHaveLength(1);
      expect(jobs.items[0]?.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "InferenceTask", name });
      // the chart's PriorityClass for "stat" reached the Job, and it exists (the pod was admitted)
      expect(jobs.items[0]?.spec?.template.spec?.priorityClassName).toBe(pcName("stat"));
      expect(jobs.items[0]?.status?.succeeded).toBe(1);

      // Events on the task
      const events = await eventsApi().listNamespacedEvent({ namespace: work.name });
      const mine = events.items.filter((e) => e.reportingController === "radflow.io/operator");
      expect(mine.some((e) => e.regarding?.kind === "InferenceTask" && e.regarding.name === name)).toBe(true);

      // the PHI key from the chart's Secret: the log's study reference is the HMAC under that key
      const ref = studyRefWith(HMAC_KEY, uid);
      expect(op.logs()).toContain(ref);
      expect(op.logs()).not.toContain(uid);

      // ttlSecondsAfterFinished: the finalizer comes off (patch) and the task goes (delete)
      await waitFor(`task ${name} deleted after its TTL`, 30_000, async () => {
        const t = await getTask(name);
        return { done: t === undefined, seen: t?.metadata.finalizers };
      });

      // an InferenceTask created directly, canceled while running: its Job is deleted
      const slow = await createDirectTask(`slow-${RUN}`, [step("slow", { KWOK_RUN: "120s" })]);
      await waitTask(slow, "Running", (t) => t.status?.phase === "Running");
      await custom().patchNamespacedCustomObject({
        ...G,
        namespace: work.name,
        plural: "inferencetasks",
        name: slow,
        body: [{ op: "add", path: "/spec/cancel", value: true }],
      });
      await waitTask(slow, "Canceled", (t) => t.status?.phase === "Canceled");
      await waitFor("the canceled task's Job deleted", 30_000, async () => {
        const js = await batch().listNamespacedJob({ namespace: work.name, labelSelector: `radflow.io/task=${slow}` });
        const left = js.items.filter((j) => !j.metadata?.deletionTimestamp);
        return { done: left.length === 0, seen: left.length };
      });

      // a model that prints its allowed Secret into the termination log (KWOK_RESULT is what the
      // KWOK "container" writes there): the operator, with the chart's get on that Secret, cuts
      // the value out before it reaches status (and so NATS)
      const leaky = await createDirectTask(
        `leaky-${RUN}`,
        [step("leaky", { KWOK_RESULT: JSON.stringify({ env: `AWS_SECRET_ACCESS_KEY=${S3_KEY}`, score: 0.5 }) })],
        { storage: { s3: { uri: "s3://imaging/studies", secretName: S3_SECRET } } },
      );
      const leaked = await waitTask(leaky, "Succeeded", (t) => t.status?.phase === "Succeeded");
      expect(leaked.status?.steps?.[0]?.outputs).toEqual({ env: "AWS_SECRET_ACCESS_KEY=[redacted]", score: 0.5 });
      expect(JSON.stringify(leaked.status)).not.toContain(S3_KEY);
      const leakyJob = await batch().listNamespacedJob({
        namespace: work.name,
        labelSelector: `radflow.io/task=${leaky}`,
      });
      expect(leakyJob.items[0]?.spec?.template.spec?.containers[0]?.envFrom).toEqual([
        { secretRef: { name: S3_SECRET, optional: false } },
      ]);
      expect(op.logs()).not.toContain("cannot read an allowed Secret");

      // ready, and never refused anything
      const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
      expect(ready.status).toBe(200);
      expect(op.logs()).not.toMatch(/forbidden/i);

      // a graceful stop gives the Lease back
      expect(await op.stop()).toBe(0);
      expect((await lease())?.spec?.holderIdentity).toBeFalsy();
    }, 240_000);
  });

  describe("no grant in excess (namespaced RBAC)", () => {
    // no operator may campaign or reconcile while Roles are being cut
    beforeAll(async () => {
      await Promise.all(operators.map((o) => o.kill().catch(() => undefined)));
    });

    it("kubectl auth can-i --list: exactly the operator's verbs in each namespace, nothing elsewhere", async () => {
      const who = `--as=system:serviceaccount:${rel.name}:${FULL}`;
      const list = async (ns: string) => {
        const out = await kubectl(["auth", "can-i", "--list", "-n", ns, who]);
        return out
          .split("\n")
          .slice(1)
          .map((l) => l.trim().split(/\s{2,}/))
          .filter((cols) => cols.length === 4 && !cols[0]?.startsWith("selfsubject"))
          .map(([res, , names, verbs]) => `${res}${names === "[]" ? "" : names}:${verbs}`)
          .sort();
      };
      expect(await list(work.name)).toEqual(
        [
          "aiworkflows.radflow.io/status:[patch]",
          "aiworkflows.radflow.io:[list watch]",
          "events.events.k8s.io:[create patch]",
          "inferencetasks.radflow.io/status:[patch]",
          "inferencetasks.radflow.io:[list watch create patch delete]",
          "jobs.batch:[list watch create delete]",
          "pods:[list watch]",
          `secrets[${S3_SECRET}]:[get]`,
        ].sort(),
      );
      expect(await list(rel.name)).toEqual(
        [
          "events.events.k8s.io:[create patch]",
          "leases.coordination.k8s.io:[create]",
          `leases.coordination.k8s.io[${LEASE}]:[get update]`,
        ].sort(),
      );
      expect(await list("default")).toEqual([]);
    });

    it("real requests outside the grants are refused", async () => {
      const refused = [
        ["GET", `/apis/radflow.io/v1alpha1/namespaces/${work.name}/aiworkflows/triage`],
        ["GET", `/api/v1/namespaces/${rel.name}/secrets/radflow-phi-key`],
        ["GET", `/api/v1/namespaces/${work.name}/secrets`],
        ["GET", `/api/v1/namespaces/${work.name}/secrets/radflow-phi-key`],
        ["GET", `/apis/batch/v1/namespaces/default/jobs`],
        ["GET", `/apis/radflow.io/v1alpha1/inferencetasks`],
        ["GET", `/apis/coordination.k8s.io/v1/namespaces/${rel.name}/leases/someone-elses-lease`],
        ["GET", `/apis/coordination.k8s.io/v1/namespaces/${work.name}/leases/${LEASE}`],
        ["DELETE", `/apis/radflow.io/v1alpha1/namespaces/${work.name}/aiworkflows/triage`],
      ];
      for (const [method, p] of refused) {
        expect((await asServiceAccount(method as string, p as string)).status, `${method} ${p}`).toBe(403);
      }
    });

    it.each(["work", "lease"] as const)(
      "each verb of the %s Role, removed alone, breaks the operation that needs it",
      async (which) => {
        const role =
          which === "work"
            ? { namespace: work.name, name: FULL, ops: namespacedOps(work.name) }
            : { namespace: rel.name, name: `${FULL}-leader-election`, ops: leaseOps(true) };
        await proveEachVerbNeeded("Role", role.namespace, role.name, role.ops);
      },
      240_000,
    );
  });

  describe("cluster RBAC scope", () => {
    it("helm upgrade to rbac.scope=cluster: a ClusterRole replaces the watched namespace's Role", async () => {
      await helm(["upgrade", RELEASE, CHART, "-n", rel.name, "-f", clusterValuesFile]);
      const cr = await rbac().readClusterRole({ name: `${rel.name}-${FULL}` });
      expect(cr.rules?.length).toBeGreaterThan(0);
      await waitFor("the watched namespace's Role removed", 30_000, async () => {
        const roles = await rbac().listNamespacedRole({ namespace: work.name });
        // the allowed Secret's Role stays: it is not about scope
        const names = roles.items.map((r) => r.metadata?.name);
        return { done: names.length === 1 && names[0] === `${FULL}-allowed-secrets`, seen: names };
      });
      // informers over every namespace: the cluster-wide list and watch are granted
      for (const p of ["/apis/radflow.io/v1alpha1/aiworkflows", "/apis/batch/v1/jobs", "/api/v1/pods"]) {
        expect((await asServiceAccount("GET", `${p}?limit=1`)).status, p).toBe(200);
      }
    });

    it("each verb of the ClusterRole, removed alone, breaks the operation that needs it", async () => {
      await proveEachVerbNeeded("ClusterRole", undefined, `${rel.name}-${FULL}`, clusterOps(work.name));
    }, 240_000);

    it("each verb of the release namespace's Role (the Lease only), removed alone, breaks the operation that needs it", async () => {
      await proveEachVerbNeeded("Role", rel.name, `${FULL}-leader-election`, leaseOps(false));
    }, 120_000);

    it("the image's entry point, built with production dependencies only, runs the operator as uid 1000 on a read-only root", async () => {
      const app = path.join(tmp, "app");
      mkdirSync(app, { recursive: true });
      // what the Dockerfile's build stage runs, into the image's layout
      await execFileP("npm", ["run", "build", "--", "--outDir", path.join(app, "dist")], { cwd: ROOT });
      // what `npm ci --omit=dev` installs: the production dependency tree of the lock file
      const prod = (await execFileP("npm", ["ls", "--omit=dev", "--all", "--parseable"], { cwd: ROOT })).stdout
        .trim()
        .split("\n")
        .slice(1);
      for (const p of prod) {
        const dest = path.join(app, path.relative(ROOT, p));
        if (!existsSync(dest)) cpSync(p, dest, { recursive: true });
      }
      for (const dev of ["typescript", "vitest", "@biomejs/biome"]) {
        expect(existsSync(path.join(app, "node_modules", dev)), `${dev} is a dev dependency`).toBe(false);
      }
      copyFileSync(path.join(ROOT, "package.json"), path.join(app, "package.json"));
      const node = path.join(app, "node");
      copyFileSync(process.execPath, node);
      chmodSync(node, 0o755);

      const sandbox =
        process.getuid?.() === 0 &&
        spawnSync("unshare", ["--mount", "--propagation", "private", "true"]).status === 0 &&
        spawnSync("setpriv", ["--help"]).status === 0;
      if (!sandbox) console.warn("no root or no mount namespaces: running the image's entry point without the sandbox");
      const uid = 1000;
      // The image's conditions: the root filesystem read-only but /tmp (the chart's emptyDir), the
      // application read-only as well (it sits under /tmp here, at /app in the image), uid 1000.
      const sandboxed = (argv: string[]): [string, string[]] =>
        sandbox
          ? [
              "unshare",
              [
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                `mount --bind /tmp /tmp && mount -o remount,bind,ro / && mount --bind "${app}" "${app}" && mount -o remount,bind,ro "${app}" && exec setpriv --reuid=${uid} --regid=${uid} --clear-groups "$@"`,
                "sh",
                ...argv,
              ],
            ]
          : [argv[0] as string, argv.slice(1)];
      const command = (args: string[]) => sandboxed([node, path.join(app, "dist/cmd/radflow.js"), ...args]);

      if (sandbox) {
        // the sandbox holds: nothing but /tmp is writable
        const probe = (file: string) =>
          spawnSync(...sandboxed([node, "-e", `require("node:fs").writeFileSync(${JSON.stringify(file)}, "x")`]), {
            encoding: "utf8",
          });
        expect(probe(path.join(app, "written")).stderr).toMatch(/EROFS/);
        expect(probe("/var/tmp/radflow-written").stderr).toMatch(/EROFS|EACCES/);
        const inTmp = path.join(tmpdir(), `radflow-written-${RUN}`);
        expect(probe(inTmp).status).toBe(0);
        rmSync(inTmp, { force: true });
      }

      const [helpCmd, helpArgs] = command(["operator", "--help"]) as [string, string[]];
      const help = spawnSync(helpCmd, helpArgs, { encoding: "utf8", env: { PATH: "/usr/bin:/bin" } });
      expect(help.status, help.stderr).toBe(0);
      expect(help.stdout).toMatch(/^radflow operator — run the radflow controllers/);

      // credentials and the chart's environment, as the pod would have them
      sa = await serviceAccountCredentials();
      const kcFile = path.join(app, "kubeconfig");
      writeKubeconfig(kcFile, sa);
      const identity = `${FULL}-image-0`;
      const { env, files } = await chartEnvironment(identity, path.join(app, "mounts"));
      if (sandbox) for (const f of [kcFile, ...files]) chownSync(f, uid, uid);
      const [metricsPort, healthPort] = [await freePort(), await freePort()];
      const [cmd, args] = command([
        "operator",
        "--metrics-port",
        String(metricsPort),
        "--health-port",
        String(healthPort),
      ]) as [string, string[]];
      let logs = "";
      const proc = spawn(cmd, args, {
        env: { ...env, KUBECONFIG: kcFile, HOME: "/nonexistent", PATH: "/usr/bin:/bin", RADFLOW_LOG_LEVEL: "debug" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
      proc.stdout.on("data", (d) => {
        logs += d;
      });
      proc.stderr.on("data", (d) => {
        logs += d;
      });
      onTestFailed(() => {
        const file = path.join(tmpdir(), `radflow-helm-image-${RUN}.log`);
        writeFileSync(file, logs);
        console.error(`--- image entry point logs (all of them: ${file}) ---\n${tail(logs)}`);
      });
      try {
        expect(env.RADFLOW_NAMESPACES).toBeUndefined(); // cluster scope: every namespace
        expect(env.RADFLOW_LEASE_NAMESPACE).toBe(rel.name);
        await waitFor("the image's operator to be ready", 60_000, async () => {
          const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined);
          return { done: r?.status === 200, seen: proc.exitCode ?? logs.slice(-300) };
        });
        await waitFor("the image's operator to hold the Lease", 30_000, async () => {
          const l = await lease();
          return { done: l?.spec?.holderIdentity === identity, seen: l?.spec?.holderIdentity };
        });
        if (sandbox) {
          const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
          expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(uid));
        }
        const t = await createDirectTask(`image-${RUN}`, [step("triage", { KWOK_RESULT: '{"ok":true}' })]);
        const done = await waitTask(t, "Succeeded", (x) => x.status?.phase === "Succeeded");
        expect(done.status?.steps?.[0]?.outputs).toEqual({ ok: true });
        const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        expect(metrics).toMatch(/^radflow_leader 1$/m);
        expect(logs).not.toMatch(/EROFS|EACCES|read-only file system|forbidden/i);
      } finally {
        // a graceful stop within the chart's terminationGracePeriodSeconds (30 s), or SIGKILL as the kubelet would
        proc.kill("SIGTERM");
        const code = await Promise.race([exited, new Promise<"hung">((r) => setTimeout(() => r("hung"), 30_000))]);
        if (code === "hung") {
          proc.kill("SIGKILL");
          await exited;
        }
        expect(code, "exit code after SIGTERM").toBe(0);
      }
      expect(logs).toMatch(/released leader lease/);
    }, 300_000);
  });

  it("helm upgrade with a changed value changes the Deployment", async () => {
    const before = await installedDeployment();
    expect(before.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === "RADFLOW_WORKERS")?.value).toBe("4");
    await helm(["upgrade", RELEASE, CHART, "-n", rel.name, "-f", clusterValuesFile, "--set", "workers=6"]);
    const after = await installedDeployment();
    expect(after.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === "RADFLOW_WORKERS")?.value).toBe("6");
    expect(after.metadata?.generation).toBeGreaterThan(before.metadata?.generation ?? 0);
    // a rollout: a ReplicaSet with the new template (the cluster-scope upgrade made one already:
    // it dropped RADFLOW_NAMESPACES)
    await waitFor("a ReplicaSet for the new template", 30_000, async () => {
      const rs = await apps().listNamespacedReplicaSet({
        namespace: rel.name,
        labelSelector: `app.kubernetes.io/instance=${RELEASE}`,
      });
      const workers = rs.items.map(
        (r) => r.spec?.template?.spec?.containers[0]?.env?.find((e) => e.name === "RADFLOW_WORKERS")?.value,
      );
      return { done: workers.includes("6") && workers.length >= 2, seen: workers };
    });
    const history = await helm(["history", RELEASE, "-n", rel.name, "-o", "json"]);
    expect((JSON.parse(history) as unknown[]).length).toBe(3);
  });

  it("helm uninstall leaves no radflow object but the CRDs", async () => {
    await helm(["uninstall", RELEASE, "-n", rel.name, "--wait"]);
    installed = false;
    const sel = `app.kubernetes.io/instance=${RELEASE}`;
    const kinds =
      "deployment,replicaset,service,serviceaccount,configmap,role,rolebinding,poddisruptionbudget,networkpolicy";
    await waitFor("every namespaced object of the release gone", 60_000, async () => {
      const left = [
        ...(await kubectl(["get", `${kinds},pod`, "-n", rel.name, "-l", sel, "-o", "name"])).split("\n"),
        ...(await kubectl(["get", kinds, "-n", work.name, "-l", sel, "-o", "name"])).split("\n"),
      ].filter(Boolean);
      return { done: left.length === 0, seen: left };
    });
    const cluster = await kubectl(["get", "clusterrole,clusterrolebinding,priorityclass", "-l", sel, "-o", "name"]);
    expect(cluster.trim()).toBe("");
    // by name too: objects that lost their labels would still be the chart's
    expect(await kubectl(["get", "clusterrole", `${rel.name}-${FULL}`, "--ignore-not-found", "-o", "name"])).toBe("");
    const crds = await kubectl(["get", "crd", "aiworkflows.radflow.io", "inferencetasks.radflow.io", "-o", "name"]);
    expect(crds.trim().split("\n")).toHaveLength(2);
  });
});

// ---- the operations each grant exists for -----------------------------------------------------

/** A focused request that needs exactly one grant: `setup` (as admin) makes it possible, `call` makes it as the ServiceAccount. */
interface Operation {
  /** `<group|core>/<resource>[<names>]:<verb>`, as the Role lists it */
  key: string;
  /** the operator's code path that makes this request */
  why: string;
  access: { verb: string; group: string; resource: string; namespace?: string; name?: string };
  setup?: () => Promise<void>;
  call: () => Promise<Reply>;
}

const MERGE = "application/merge-patch+json";
const JSON_PATCH = "application/json-patch+json";
// the operator's Job and Pod informers select what it made
const SELECT = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dradflow";
let probe = 0;
const probeName = (what: string) => `probe-${what}-${RUN}-${++probe}`;

async function ensureWorkflow(ns: string) {
  await custom()
    .createNamespacedCustomObject({
      ...G,
      namespace: ns,
      plural: "aiworkflows",
      body: {
        apiVersion: "radflow.io/v1alpha1",
        kind: "AIWorkflow",
        metadata: { name: "rbac-probe" },
        spec: { priority: "batch", trigger: { match: { modalities: ["XA"] } }, steps: [step("noop")] },
      },
    })
    .catch((e) => {
      if ((e as { code?: number }).code !== 409) throw e;
    });
}

async function ensureTask(ns: string, name: string) {
  await custom()
    .createNamespacedCustomObject({
      ...G,
      namespace: ns,
      plural: "inferencetasks",
      body: taskBody(name, [step("noop")]),
    })
    .catch((e) => {
      if ((e as { code?: number }).code !== 409) throw e;
    });
}

function suspendedJob(name: string) {
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name },
    spec: {
      suspend: true,
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [{ name: "noop", image: "registry.example.org/noop:1" }],
        },
      },
    },
  };
}

async function ensureEvent(ns: string, name: string) {
  await eventsApi()
    .createNamespacedEvent({
      namespace: ns,
      body: {
        metadata: { name },
        eventTime: new V1MicroTime(),
        reportingController: "radflow.io/operator",
        reportingInstance: "rbac-probe",
        action: "Probe",
        reason: "Probe",
        type: "Normal",
        note: "RBAC probe",
        regarding: { apiVersion: "radflow.io/v1alpha1", kind: "AIWorkflow", namespace: ns, name: "rbac-probe" },
      },
    })
    .catch((e) => {
      if ((e as { code?: number }).code !== 409) throw e;
    });
}

function eventBody(ns: string) {
  return {
    apiVersion: "events.k8s.io/v1",
    kind: "Event",
    metadata: { name: probeName("event") },
    eventTime: new Date().toISOString().replace("Z", "000Z"),
    reportingController: "radflow.io/operator",
    reportingInstance: "rbac-probe",
    action: "Probe",
    reason: "Probe",
    type: "Normal",
    note: "RBAC probe",
    regarding: { apiVersion: "radflow.io/v1alpha1", kind: "AIWorkflow", namespace: ns, name: "rbac-probe" },
  };
}

const seriesPatch = () => [
  { op: "add", path: "/series", value: { count: 2, lastObservedTime: new Date().toISOString().replace("Z", "000Z") } },
];

/**
 * The operations of the Role for a watched namespace `ns`: informers list and watch at `listPath`
 * (one namespace, or all of them with rbac.scope=cluster), writes go to `ns`.
 */
function watchOps(ns: string, listPath: (group: string, resource: string) => string, listNs?: string): Operation[] {
  const A = `/apis/radflow.io/v1alpha1/namespaces/${ns}/aiworkflows`;
  const T = `/apis/radflow.io/v1alpha1/namespaces/${ns}/inferencetasks`;
  const J = `/apis/batch/v1/namespaces/${ns}/jobs`;
  const E = `/apis/events.k8s.io/v1/namespaces/${ns}/events`;
  const informer = (group: string, resource: string, why: string, query = ""): Operation[] => [
    {
      key: `${group || "core"}/${resource}:list`,
      why: `${why}: initial list`,
      access: { verb: "list", group, resource, namespace: listNs },
      call: () => asServiceAccount("GET", `${listPath(group, resource)}?limit=1${query}`),
    },
    {
      key: `${group || "core"}/${resource}:watch`,
      why: `${why}: watch`,
      access: { verb: "watch", group, resource, namespace: listNs },
      call: () => asServiceAccount("GET", `${listPath(group, resource)}?watch=1&timeoutSeconds=1${query}`),
    },
  ];
  let victimTask = "";
  let victimJob = "";
  let event = "";
  return [
    ...informer("radflow.io", "aiworkflows", "AIWorkflow informer (src/controllers/manager.ts)"),
    {
      key: "radflow.io/aiworkflows/status:patch",
      why: "Ready condition (src/controllers/aiworkflow.ts)",
      access: { verb: "patch", group: "radflow.io", resource: "aiworkflows/status", namespace: ns },
      setup: () => ensureWorkflow(ns),
      call: () => asServiceAccount("PATCH", `${A}/rbac-probe/status`, { status: {} }, MERGE),
    },
    ...informer("radflow.io", "inferencetasks", "InferenceTask informer (manager.ts)"),
    {
      key: "radflow.io/inferencetasks:create",
      why: "study ingest creates the task (src/ingest/consumer.ts)",
      access: { verb: "create", group: "radflow.io", resource: "inferencetasks", namespace: ns },
      call: () => asServiceAccount("POST", T, taskBody(probeName("task"), [step("noop")])),
    },
    {
      key: "radflow.io/inferencetasks:patch",
      why: "finalizer added and removed (src/controllers/inferencetask.ts)",
      access: { verb: "patch", group: "radflow.io", resource: "inferencetasks", namespace: ns },
      setup: () => ensureTask(ns, "rbac-probe"),
      call: () => asServiceAccount("PATCH", `${T}/rbac-probe`, { metadata: { finalizers: [] } }, MERGE),
    },
    {
      key: "radflow.io/inferencetasks:delete",
      why: "ttlSecondsAfterFinished (inferencetask.ts)",
      access: { verb: "delete", group: "radflow.io", resource: "inferencetasks", namespace: ns },
      setup: async () => {
        victimTask = probeName("victim");
        await ensureTask(ns, victimTask);
      },
      call: () => asServiceAccount("DELETE", `${T}/${victimTask}?propagationPolicy=Background`),
    },
    {
      key: "radflow.io/inferencetasks/status:patch",
      why: "phase, conditions, steps (inferencetask.ts)",
      access: { verb: "patch", group: "radflow.io", resource: "inferencetasks/status", namespace: ns },
      setup: () => ensureTask(ns, "rbac-probe"),
      call: () => asServiceAccount("PATCH", `${T}/rbac-probe/status`, { status: {} }, MERGE),
    },
    ...informer("batch", "jobs", "Job informer (manager.ts)", `&${SELECT}`),
    {
      key: "batch/jobs:create",
      why: "a Job per step (inferencetask.ts)",
      access: { verb: "create", group: "batch", resource: "jobs", namespace: ns },
      call: () => asServiceAccount("POST", J, suspendedJob(probeName("job"))),
    },
    {
      key: "batch/jobs:delete",
      why: "cancel, queue timeout, deadline (inferencetask.ts)",
      access: { verb: "delete", group: "batch", resource: "jobs", namespace: ns },
      setup: async () => {
        victimJob = probeName("victim-job");
        await batch().createNamespacedJob({ namespace: ns, body: suspendedJob(victimJob) });
      },
      call: () => asServiceAccount("DELETE", `${J}/${victimJob}?propagationPolicy=Background`),
    },
    ...informer("", "pods", "Pod informer: exit codes, termination messages, scheduling (manager.ts)", `&${SELECT}`),
    {
      key: "events.k8s.io/events:create",
      why: "Events on workflows and tasks (src/kube/events.ts)",
      access: { verb: "create", group: "events.k8s.io", resource: "events", namespace: ns },
      setup: () => ensureWorkflow(ns),
      call: () => asServiceAccount("POST", E, eventBody(ns)),
    },
    {
      key: "events.k8s.io/events:patch",
      why: "a repeated Event's series count (events.ts)",
      access: { verb: "patch", group: "events.k8s.io", resource: "events", namespace: ns },
      setup: async () => {
        event = probeName("series");
        await ensureEvent(ns, event);
      },
      call: () => asServiceAccount("PATCH", `${E}/${event}`, seriesPatch(), JSON_PATCH),
    },
  ];
}

const apiPath = (group: string, resource: string, ns?: string) => {
  const where = ns ? `namespaces/${ns}/` : "";
  if (!group) return `/api/v1/${where}${resource}`;
  return `/apis/${group}/${group === "radflow.io" ? "v1alpha1" : "v1"}/${where}${resource}`;
};

/** rbac.scope=namespaced: the informers list and watch in the watched namespace. */
function namespacedOps(ns: string): Operation[] {
  return watchOps(ns, (g, r) => apiPath(g, r, ns), ns);
}

/** rbac.scope=cluster: the informers list and watch across all namespaces. */
function clusterOps(ns: string): Operation[] {
  return watchOps(ns, (g, r) => apiPath(g, r));
}

/** The release namespace's Role; with rbac.scope=namespaced it also grants the operator's own Events. */
function leaseOps(withEvents: boolean): Operation[] {
  const L = `/apis/coordination.k8s.io/v1/namespaces/${rel.name}/leases`;
  const E = `/apis/events.k8s.io/v1/namespaces/${rel.name}/events`;
  const body = () => ({
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name: LEASE },
    spec: { holderIdentity: "rbac-probe", leaseDurationSeconds: 1 },
  });
  const ensureLease = async () => {
    if (await lease()) return;
    await leases()
      .createNamespacedLease({ namespace: rel.name, body: body() })
      .catch((e) => {
        if ((e as { code?: number }).code !== 409) throw e;
      });
  };
  let event = "";
  const ops: Operation[] = [
    {
      key: "coordination.k8s.io/leases:create",
      why: "the first candidate creates the Lease (src/kube/lease.ts)",
      access: { verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: rel.name },
      setup: async () => {
        await leases()
          .deleteNamespacedLease({ name: LEASE, namespace: rel.name })
          .catch(() => undefined);
      },
      call: () => asServiceAccount("POST", L, body()),
    },
    {
      key: `coordination.k8s.io/leases[${LEASE}]:get`,
      why: "read before renewing or taking over (lease.ts)",
      access: { verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: rel.name, name: LEASE },
      setup: ensureLease,
      call: () => asServiceAccount("GET", `${L}/${LEASE}`),
    },
    {
      key: `coordination.k8s.io/leases[${LEASE}]:update`,
      why: "renew, take over, release with the read resourceVersion (lease.ts)",
      access: { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: rel.name, name: LEASE },
      setup: ensureLease,
      call: async () => {
        const current = await leases().readNamespacedLease({ name: LEASE, namespace: rel.name });
        return asServiceAccount("PUT", `${L}/${LEASE}`, current);
      },
    },
  ];
  if (!withEvents) return ops;
  return [
    ...ops,
    {
      key: "events.k8s.io/events:create",
      why: "Events about the operator on its Pod (manager.ts: operatorEvent)",
      access: { verb: "create", group: "events.k8s.io", resource: "events", namespace: rel.name },
      call: () => asServiceAccount("POST", E, eventBody(rel.name)),
    },
    {
      key: "events.k8s.io/events:patch",
      why: "a repeated operator Event's series count (events.ts)",
      access: { verb: "patch", group: "events.k8s.io", resource: "events", namespace: rel.name },
      setup: async () => {
        event = probeName("series");
        await ensureEvent(rel.name, event);
      },
      call: () => asServiceAccount("PATCH", `${E}/${event}`, seriesPatch(), JSON_PATCH),
    },
  ];
}

/** Retries `f` while the API server does not answer (connection errors) or reports a conflict, up to 2 minutes. */
async function retrying<T>(what: string, f: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const transient = typeof code !== "number" || code === 409 || code >= 500;
      if (!transient || Date.now() > deadline) throw new Error(`${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const ruleKeys = (r: V1PolicyRule) =>
  (r.apiGroups ?? []).flatMap((g) =>
    (r.resources ?? []).flatMap((res) =>
      r.verbs.map((v) => `${g || "core"}/${res}${r.resourceNames ? `[${r.resourceNames.join(",")}]` : ""}:${v}`),
    ),
  );

/**
 * For every verb the installed (Cluster)Role grants: the focused operation succeeds with the full
 * grants, fails with 403 once that one verb is removed, and the Role is put back. A granted verb
 * that no operation here needs fails the test: it would be a grant in excess.
 */
async function proveEachVerbNeeded(
  kind: "Role" | "ClusterRole",
  namespace: string | undefined,
  name: string,
  ops: Operation[],
) {
  const read = () =>
    kind === "Role"
      ? rbac().readNamespacedRole({ name, namespace: namespace as string })
      : rbac().readClusterRole({ name });
  // other tests on the shared cluster freeze the API server for a while: retry until it answers
  const write = (rules: V1PolicyRule[]) =>
    retrying(`${kind} ${name}: write its rules`, async () => {
      const body = { ...(await read()), rules };
      if (kind === "Role") await rbac().replaceNamespacedRole({ name, namespace: namespace as string, body });
      else await rbac().replaceClusterRole({ name, body });
    });
  const original = (await read()).rules ?? [];
  const granted = original.flatMap(ruleKeys).sort();
  expect(granted, `${kind} ${name}: a verb without an operation that needs it`).toEqual(ops.map((o) => o.key).sort());

  const results: string[] = [];
  try {
    for (const op of ops) {
      const [, verb] = op.key.split(":") as [string, string];
      await retrying(`${op.key}: setup`, async () => op.setup?.());
      const ok = await retrying(op.key, op.call);
      expect(ok.status, `${op.key} with every grant: ${ok.body.slice(0, 300)}`).toBeLessThan(300);

      const without = original
        .map((r) => (ruleKeys(r).includes(op.key) ? { ...r, verbs: r.verbs.filter((v) => v !== verb) } : r))
        .filter((r) => r.verbs.length > 0);
      await write(without);
      await waitFor(`RBAC to drop ${op.key}`, 90_000, async () => ({ done: !(await allowed(op.access)) }), 100);
      await retrying(`${op.key}: setup`, async () => op.setup?.());
      const refused = await retrying(op.key, op.call);
      results.push(`${op.key} -> ${refused.status} (${op.why})`);
      expect(refused.status, `${op.key} without its grant: ${refused.body.slice(0, 300)}`).toBe(403);

      await write(original);
      await waitFor(`RBAC to restore ${op.key}`, 90_000, async () => ({ done: await allowed(op.access) }), 100);
    }
  } finally {
    await write(original);
    // the probes' tasks and Jobs go; a later operator in this namespace must not run them
    await kubectl(["delete", "inferencetasks,jobs", "--all", "-n", work.name, "--wait=false"]).catch(() => undefined);
    console.log(`${kind} ${name}:\n  ${results.join("\n  ")}`);
  }
}
