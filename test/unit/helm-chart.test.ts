// The Helm chart as rendered by the real `helm template`: the objects it makes with each value,
// the RBAC it grants (exactly the operator's verbs), the wiring of Secrets into the operator's
// environment (parsed by the operator's own flag parser), the capability-gated monitoring
// objects, and the messages for bad values. The cluster-side proof is test/integration/helm.test.ts.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHART } from "../../hack/render-manifests.ts";
import { parseOperatorArgs } from "../../src/cmd/operator.ts";
import { tool } from "./tools.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NS = "imaging";
const RELEASE = "rf";
const tmp = mkdtempSync(path.join(tmpdir(), "radflow-helm-"));

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are read field by field
  [k: string]: any;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
  };
}

let helm: string;
beforeAll(() => {
  // built by the unit project's global setup (test/unit/global-setup.ts), never here
  helm = tool("helm");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let nValues = 0;
function run(values: object, extra: string[] = []) {
  const file = path.join(tmp, `values-${++nValues}.yaml`);
  writeFileSync(file, yaml.dump(values));
  return spawnSync(helm, ["template", RELEASE, CHART, "--namespace", NS, "-f", file, ...extra], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
}

function render(values: object = {}, extra: string[] = []): Obj[] {
  const r = run(values, extra);
  if (r.status !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return (yaml.loadAll(r.stdout) as (Obj | null)[]).filter((o): o is Obj => !!o);
}

/** helm template's error for values it must refuse */
function refused(values: object): string {
  const r = run(values);
  expect(r.status, `helm template accepted ${JSON.stringify(values)}`).not.toBe(0);
  return r.stderr;
}

const one = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0] as Obj;
};
const kinds = (objs: Obj[]) => objs.map((o) => o.kind).sort();
const deployment = (objs: Obj[]) => one(objs, "Deployment");
const container = (objs: Obj[]) => deployment(objs).spec.template.spec.containers[0];
const envOf = (objs: Obj[]): EnvVar[] => container(objs).env;
const env = (objs: Obj[], name: string) => envOf(objs).find((e) => e.name === name);

/** The Deployment's environment as the process would see it, with Secrets read from `secrets`. */
function processEnv(objs: Obj[], secrets: Record<string, Record<string, string>> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const e of envOf(objs)) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) out[e.name] = e.valueFrom.fieldRef.fieldPath === "metadata.name" ? "pod-0" : NS;
    else if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const v = secrets[name]?.[key];
      if (v !== undefined) out[e.name] = v;
    }
  }
  return out;
}

/**
 * Every environment variable that names a file under /etc/radflow points at a file that a volume
 * of the pod puts there: the mount's path is the file's folder and the volume projects the
 * file's name. Returns file → [volume kind, source name, source key].
 */
function filesOf(objs: Obj[]): Record<string, [string, string, string]> {
  const pod = deployment(objs).spec.template.spec;
  const mounts = container(objs).volumeMounts as { name: string; mountPath: string }[];
  const out: Record<string, [string, string, string]> = {};
  for (const e of envOf(objs)) {
    if (!e.value?.startsWith("/etc/radflow/")) continue;
    const dir = path.dirname(e.value);
    const base = path.basename(e.value);
    const mount = mounts.find((m) => m.mountPath === dir);
    expect(mount, `${e.name}=${e.value}: no volume mounted on ${dir}`).toBeDefined();
    const vol = pod.volumes.find((v: { name: string }) => v.name === mount?.name);
    if (vol.secret) {
      const item = vol.secret.items.find((i: { path: string }) => i.path === base);
      expect(item, `${e.name}: Secret volume ${vol.name} does not project ${base}`).toBeDefined();
      out[e.value] = ["Secret", vol.secret.secretName, item.key];
    } else {
      const cm = one(objs, "ConfigMap", vol.configMap.name);
      expect(Object.keys(cm.data)).toContain(base);
      out[e.value] = ["ConfigMap", vol.configMap.name, base];
    }
  }
  return out;
}

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
const flat = (rules: Rule[]) =>
  rules
    .flatMap((r) =>
      r.apiGroups.flatMap((g) =>
        r.resources.flatMap((res) =>
          r.verbs.map((v) => `${g || "core"}/${res}${r.resourceNames ? `[${r.resourceNames.join(",")}]` : ""}:${v}`),
        ),
      ),
    )
    .sort();

// What the operator calls in each namespace it watches (see README.md, "RBAC"), and nothing more.
const WATCH_RULES = [
  "radflow.io/aiworkflows:list",
  "radflow.io/aiworkflows:watch",
  "radflow.io/aiworkflows/status:patch",
  "radflow.io/inferencetasks:list",
  "radflow.io/inferencetasks:watch",
  "radflow.io/inferencetasks:create",
  "radflow.io/inferencetasks:patch",
  "radflow.io/inferencetasks:delete",
  "radflow.io/inferencetasks/status:patch",
  "batch/jobs:list",
  "batch/jobs:watch",
  "batch/jobs:create",
  "batch/jobs:delete",
  "core/pods:list",
  "core/pods:watch",
  "events.k8s.io/events:create",
  "events.k8s.io/events:patch",
].sort();
const LEASE_RULES = [
  "coordination.k8s.io/leases:create",
  "coordination.k8s.io/leases[radflow-operator]:get",
  "coordination.k8s.io/leases[radflow-operator]:update",
].sort();
// the operator's own Events (on its Pod) where no other Role grants Events in the release namespace
const OWN_EVENTS = ["events.k8s.io/events:create", "events.k8s.io/events:patch"];

describe("helm chart: default values", () => {
  let objs: Obj[];
  beforeAll(() => {
    objs = render();
  });

  it("renders the operator's objects and nothing cluster-wide beyond its ClusterRole", () => {
    expect(kinds(objs)).toEqual(
      [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
      ].sort(),
    );
    for (const o of objs.filter((o) => !o.kind.startsWith("Cluster"))) expect(o.metadata.namespace).toBe(NS);
  });

  it("runs two replicas under leader election, restricted and read-only, probed on /healthz and /readyz", () => {
    const d = deployment(objs);
    const pod = d.spec.template.spec;
    const c = container(objs);
    expect(d.spec.replicas).toBe(2);
    expect(env(objs, "RADFLOW_LEADER_ELECT")?.value).toBe("true");
    expect(env(objs, "RADFLOW_LEASE_NAMESPACE")?.value).toBe(NS);
    expect(env(objs, "POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");
    expect(env(objs, "POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    expect(pod.serviceAccountName).toBe(one(objs, "ServiceAccount").metadata.name);
    // the restricted Pod Security Standard, plus a read-only root
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(c.volumeMounts).toContainEqual({ name: "tmp", mountPath: "/tmp" });
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources.limits.memory).toBeDefined();
    // probes on the port the operator serves them on
    const health = c.ports.find((p: { name: string }) => p.name === "health").containerPort;
    expect(env(objs, "RADFLOW_HEALTH_PORT")?.value).toBe(String(health));
    expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "health" });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
    expect(c.args).toEqual(["operator"]);
    // spread over nodes and zones, counting only this release's pods of the same revision
    const selector = d.spec.selector.matchLabels;
    expect(pod.topologySpreadConstraints.map((t: { topologyKey: string }) => t.topologyKey)).toEqual([
      "kubernetes.io/hostname",
      "topology.kubernetes.io/zone",
    ]);
    for (const t of pod.topologySpreadConstraints) {
      expect(t.labelSelector.matchLabels).toEqual(selector);
      expect(t.matchLabelKeys).toEqual(["pod-template-hash"]);
    }
    expect(d.spec.template.metadata.labels).toMatchObject(selector);
  });

  it("selects the operator's pods from the PodDisruptionBudget, the metrics Service and the NetworkPolicy", () => {
    const selector = deployment(objs).spec.selector.matchLabels;
    expect(one(objs, "PodDisruptionBudget").spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: selector } });
    const svc = one(objs, "Service");
    expect(svc.spec.selector).toEqual(selector);
    expect(svc.spec.ports).toEqual([{ name: "metrics", port: 8080, targetPort: "metrics", protocol: "TCP" }]);
    expect(container(objs).ports.find((p: { name: string }) => p.name === "metrics").containerPort).toBe(
      Number(env(objs, "RADFLOW_METRICS_PORT")?.value),
    );
    const np = one(objs, "NetworkPolicy");
    expect(np.spec.podSelector.matchLabels).toEqual(selector);
    expect(np.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    const egressPorts = np.spec.egress.flatMap((r: { ports: { port: number }[] }) => r.ports.map((p) => p.port));
    expect(egressPorts).toEqual([53, 53, 443, 6443]); // no NATS URL, no syslog: no egress for them
  });

  it("grants exactly the operator's verbs: a ClusterRole, and a Role for the Lease in the release namespace", () => {
    const cr = one(objs, "ClusterRole");
    expect(flat(cr.rules)).toEqual(WATCH_RULES);
    const crb = one(objs, "ClusterRoleBinding");
    expect(crb.roleRef).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: cr.metadata.name });
    const sa = one(objs, "ServiceAccount");
    expect(crb.subjects).toEqual([{ kind: "ServiceAccount", name: sa.metadata.name, namespace: NS }]);
    const lease = one(objs, "Role");
    expect(lease.metadata.namespace).toBe(NS);
    expect(flat(lease.rules)).toEqual(LEASE_RULES);
    expect(one(objs, "RoleBinding").subjects).toEqual(crb.subjects);
    // cluster-scoped names carry the namespace: two releases named alike do not collide
    expect(cr.metadata.name).toBe(`${NS}-${RELEASE}-radflow`);
  });

  it("ships the Grafana dashboard, identical to dashboards/radflow.json", () => {
    const cm = one(objs, "ConfigMap", `${RELEASE}-radflow-dashboard`);
    expect(cm.metadata.labels?.grafana_dashboard).toBe("1");
    expect(JSON.parse(cm.data["radflow.json"])).toEqual(
      JSON.parse(readFileSync(path.join(ROOT, "dashboards/radflow.json"), "utf8")),
    );
    const elsewhere = render({ dashboard: { namespace: "monitoring", annotations: { grafana_folder: "Radiology" } } });
    const cm2 = one(elsewhere, "ConfigMap", `${RELEASE}-radflow-dashboard`);
    expect(cm2.metadata.namespace).toBe("monitoring");
    expect(cm2.metadata.annotations).toEqual({ grafana_folder: "Radiology" });
    expect(render({ dashboard: { enabled: false } }).some((o) => o.kind === "ConfigMap")).toBe(false);
  });

  it("gives the operator an environment its own flag parser accepts", () => {
    const { cfg, syslog } = parseOperatorArgs([], processEnv(objs));
    expect(cfg).toMatchObject({
      identity: "pod-0",
      namespaces: [],
      workers: 8,
      leaderElection: true,
      leaseNamespace: NS,
      metricsPort: 8080,
      healthPort: 8081,
      maxRunningJobs: 0,
      priorityClasses: {},
      nats: { url: undefined },
    });
    expect(syslog).toBeUndefined();
  });
});

describe("helm chart: RBAC scopes", () => {
  it("namespaced: a Role and RoleBinding per watched namespace, the Lease Role, nothing cluster-wide", () => {
    const objs = render({ rbac: { scope: "namespaced" }, watchNamespaces: ["radiology", "research"] });
    expect(objs.filter((o) => o.kind.startsWith("Cluster"))).toEqual([]);
    const roles = objs.filter((o) => o.kind === "Role");
    expect(roles.map((r) => r.metadata.namespace).sort()).toEqual([NS, "radiology", "research"]);
    for (const r of roles) {
      expect(flat(r.rules)).toEqual(r.metadata.namespace === NS ? [...LEASE_RULES, ...OWN_EVENTS].sort() : WATCH_RULES);
    }
    const bindings = objs.filter((o) => o.kind === "RoleBinding");
    expect(bindings).toHaveLength(3);
    for (const b of bindings) {
      expect(b.subjects).toEqual([{ kind: "ServiceAccount", name: `${RELEASE}-radflow`, namespace: NS }]);
      expect(roles.some((r) => r.metadata.namespace === b.metadata.namespace && r.metadata.name === b.roleRef.name));
    }
    expect(parseOperatorArgs([], processEnv(objs)).cfg.namespaces).toEqual(["radiology", "research"]);
  });

  it("namespaced, watching the release namespace too: its Role already grants the operator's own Events", () => {
    const objs = render({ rbac: { scope: "namespaced" }, watchNamespaces: [NS, "radiology"] });
    const here = objs.filter((o) => o.kind === "Role" && o.metadata.namespace === NS);
    expect(here.map((r) => flat(r.rules))).toEqual(expect.arrayContaining([LEASE_RULES, WATCH_RULES]));
    expect(here).toHaveLength(2);
  });

  it("default scope with watchNamespaces: Roles in them, no ClusterRole (issue 12, item 11)", () => {
    const objs = render({ watchNamespaces: ["radiology"] });
    expect(objs.filter((o) => o.kind.startsWith("Cluster"))).toEqual([]);
    const work = one(objs, "Role", `${RELEASE}-radflow`);
    expect(work.metadata.namespace).toBe("radiology");
    expect(flat(work.rules)).toEqual(WATCH_RULES);
    expect(env(objs, "RADFLOW_NAMESPACES")?.value).toBe("radiology");
  });

  it("rbac.scope=cluster with watchNamespaces is refused: rights where the operator does not work", () => {
    expect(refused({ rbac: { scope: "cluster" }, watchNamespaces: ["radiology"] })).toContain(
      "rbac.scope=cluster with watchNamespaces=radiology",
    );
  });

  it("adds update on inferencetasks/finalizers only for OwnerReferencesPermissionEnforcement", () => {
    const objs = render({ rbac: { ownerReferencesPermissionEnforcement: true } });
    expect(flat(one(objs, "ClusterRole").rules)).toEqual(
      [...WATCH_RULES, "radflow.io/inferencetasks/finalizers:update"].sort(),
    );
  });

  it("rbac.create=false and an existing ServiceAccount: no RBAC objects, the pod runs as that account", () => {
    const objs = render({ rbac: { create: false }, serviceAccount: { create: false, name: "site-operator" } });
    expect(objs.filter((o) => /Role|ServiceAccount/.test(o.kind))).toEqual([]);
    expect(deployment(objs).spec.template.spec.serviceAccountName).toBe("site-operator");
  });
});

describe("helm chart: NATS, audit repository and PHI key from Secrets", () => {
  it("URL from the values, token from a Secret file, CA for TLS", () => {
    const objs = render({
      nats: {
        url: "tls://nats-0.nats:4222,tls://nats-1.nats:4222",
        consumer: "radflow-site-a",
        monai: true,
        existingSecret: "nats-auth",
        secretKeys: { token: "token" },
        tls: { existingSecret: "nats-ca", secretKeys: { ca: "ca.crt" } },
        streamReplicas: 3,
      },
    });
    expect(filesOf(objs)).toEqual({
      "/etc/radflow/nats/token": ["Secret", "nats-auth", "token"],
      "/etc/radflow/nats-tls/ca.crt": ["Secret", "nats-ca", "ca.crt"],
    });
    const { cfg } = parseOperatorArgs([], processEnv(objs));
    expect(cfg.nats).toMatchObject({
      url: "tls://nats-0.nats:4222,tls://nats-1.nats:4222",
      consumer: "radflow-site-a",
      monai: true,
      streamReplicas: 3, // a JetStream cluster keeps every stream on three nodes
    });
    const e = processEnv(objs);
    expect(e.RADFLOW_NATS_TOKEN_FILE).toBe("/etc/radflow/nats/token");
    expect(e.RADFLOW_NATS_TLS_CA).toBe("/etc/radflow/nats-tls/ca.crt");
    expect(e.RADFLOW_NATS_TOKEN).toBeUndefined(); // never the secret itself in the pod spec
    const np = one(objs, "NetworkPolicy");
    expect(np.spec.egress.flatMap((r: { ports: { port: number }[] }) => r.ports.map((p) => p.port))).toContain(4222);
  });

  it("URL, user and password file from one Secret; mutual TLS", () => {
    const objs = render({
      nats: {
        existingSecret: "nats-conn",
        secretKeys: { url: "url", user: "username", password: "password" },
        tls: { existingSecret: "nats-client-tls", secretKeys: { ca: "ca.crt", cert: "tls.crt", key: "tls.key" } },
      },
    });
    expect(env(objs, "RADFLOW_NATS_URL")?.valueFrom?.secretKeyRef).toEqual({ name: "nats-conn", key: "url" });
    expect(env(objs, "RADFLOW_NATS_USER")?.valueFrom?.secretKeyRef).toEqual({ name: "nats-conn", key: "username" });
    expect(filesOf(objs)).toEqual({
      "/etc/radflow/nats/password": ["Secret", "nats-conn", "password"],
      "/etc/radflow/nats-tls/ca.crt": ["Secret", "nats-client-tls", "ca.crt"],
      "/etc/radflow/nats-tls/tls.crt": ["Secret", "nats-client-tls", "tls.crt"],
      "/etc/radflow/nats-tls/tls.key": ["Secret", "nats-client-tls", "tls.key"],
    });
    const e = processEnv(objs, { "nats-conn": { url: "nats://nats:4222", username: "radflow" } });
    expect(parseOperatorArgs([], e).cfg.nats.url).toBe("nats://nats:4222");
    expect(e.RADFLOW_NATS_USER).toBe("radflow");
  });

  it("a .creds file or an nkey seed", () => {
    const creds = render({ nats: { url: "nats://n:4222", existingSecret: "s", secretKeys: { creds: "user.creds" } } });
    expect(filesOf(creds)).toEqual({ "/etc/radflow/nats/nats.creds": ["Secret", "s", "user.creds"] });
    expect(env(creds, "RADFLOW_NATS_CREDS")?.value).toBe("/etc/radflow/nats/nats.creds");
    const nkey = render({ nats: { url: "nats://n:4222", existingSecret: "s", secretKeys: { nkeySeed: "seed" } } });
    expect(filesOf(nkey)).toEqual({ "/etc/radflow/nats/nkey.seed": ["Secret", "s", "seed"] });
  });

  it("the audit repository's address and CA from a Secret, the PHI key from another, codes from the values", () => {
    const codes = { events: { TaskSucceeded: { eventId: { code: "AI-OK", codeSystemName: "SITE" } } } };
    const objs = render({
      nats: { url: "nats://nats:4222" },
      audit: { syslog: { existingSecret: "arr" }, codes },
      phi: { hmacKey: { existingSecret: "phi-key" } },
    });
    expect(env(objs, "RADFLOW_SYSLOG_HOST")?.valueFrom?.secretKeyRef).toEqual({ name: "arr", key: "host" });
    expect(env(objs, "RADFLOW_SYSLOG_PORT")?.valueFrom?.secretKeyRef).toEqual({
      name: "arr",
      key: "port",
      optional: true,
    });
    expect(filesOf(objs)).toEqual({
      "/etc/radflow/syslog/ca.crt": ["Secret", "arr", "ca.crt"],
      "/etc/radflow/audit/codes.yaml": ["ConfigMap", `${RELEASE}-radflow-audit-codes`, "codes.yaml"],
      "/etc/radflow/phi/hmac-key": ["Secret", "phi-key", "hmac-key"],
    });
    const cm = one(objs, "ConfigMap", `${RELEASE}-radflow-audit-codes`);
    expect(yaml.load(cm.data["codes.yaml"])).toEqual(codes);
    const { syslog, auditCodes } = parseOperatorArgs([], processEnv(objs, { arr: { host: "arr.hospital.org" } }));
    expect(syslog).toEqual({ host: "arr.hospital.org", port: 6514, caFile: "/etc/radflow/syslog/ca.crt" });
    expect(auditCodes).toBe("/etc/radflow/audit/codes.yaml");
    // a change of codes rolls the pods
    const changed = render({ nats: { url: "nats://nats:4222" }, audit: { codes: { ...codes, x: 1 } } });
    const sum = (o: Obj[]) => deployment(o).spec.template.metadata.annotations["checksum/audit-codes"];
    expect(sum(changed)).toMatch(/^[0-9a-f]{64}$/);
    expect(sum(changed)).not.toBe(sum(objs));
    const np = one(objs, "NetworkPolicy");
    expect(np.spec.egress.flatMap((r: { ports: { port: number }[] }) => r.ports.map((p) => p.port))).toContain(6514);
  });

  it("every RADFLOW_* variable the chart sets is one the operator reads", () => {
    const objs = render({
      watchNamespaces: ["a"],
      priorityClasses: { create: true },
      nats: {
        existingSecret: "n",
        secretKeys: { url: "url", user: "u", password: "p", creds: "c" },
        tls: { existingSecret: "t", secretKeys: { ca: "ca", cert: "crt", key: "key" } },
      },
      audit: { syslog: { existingSecret: "arr" }, codes: { x: 1 } },
      phi: { hmacKey: { existingSecret: "k" } },
      storageTrust: { secrets: ["a/s3"], pvcs: ["a/studies"] },
    });
    const source = readdirSync(path.join(ROOT, "src"), { recursive: true, withFileTypes: true })
      .filter((f) => f.isFile() && f.name.endsWith(".ts"))
      .map((f) => readFileSync(path.join(f.parentPath, f.name), "utf8"))
      .join("\n");
    const names = envOf(objs).map((e) => e.name);
    expect(names.length).toBeGreaterThan(20);
    for (const n of names) expect(source, `${n} is not read anywhere in src/`).toContain(n);
  });
});

const VAP = ["--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"];

describe("helm chart: storage workflows may use (docs/security.md)", () => {
  const values = {
    watchNamespaces: ["radiology", "research"],
    storageTrust: {
      secrets: ["radiology/imaging-s3", "radiology/other-s3", "research/s3"],
      pvcs: ["radiology/studies"],
    },
  };

  it("hands the allow-list to the operator's own flag parser", () => {
    const { storageTrust } = parseOperatorArgs([], processEnv(render(values)));
    expect([...storageTrust.secrets]).toEqual(values.storageTrust.secrets);
    expect([...storageTrust.pvcs]).toEqual(values.storageTrust.pvcs);
  });

  it("grants get on exactly the allowed Secrets, by name, in their namespaces; nothing when none", () => {
    const roles = render(values).filter((o) => o.kind === "Role" && o.metadata.name.endsWith("-allowed-secrets"));
    expect(Object.fromEntries(roles.map((r) => [r.metadata.namespace, flat(r.rules)]))).toEqual({
      radiology: ["core/secrets[imaging-s3,other-s3]:get"],
      research: ["core/secrets[s3]:get"],
    });
    const none = render();
    expect(none.filter((o) => o.metadata.name.includes("allowed-secrets"))).toEqual([]);
    expect(flat(one(none, "ClusterRole").rules).filter((r) => r.includes("secrets"))).toEqual([]);
  }, 30_000);

  it("a ValidatingAdmissionPolicy with the same lists, bound to the watched namespaces, where the cluster serves it", () => {
    expect(render(values).filter((o) => o.kind.startsWith("ValidatingAdmissionPolicy"))).toEqual([]);
    const objs = render(values, VAP);
    const named = (kind: string, suffix: string) =>
      one(
        objs.filter((o) => o.metadata.name.endsWith(suffix)),
        kind,
      );
    const vap = named("ValidatingAdmissionPolicy", "-storage");
    const vars = Object.fromEntries(vap.spec.variables.map((v: { name: string; expression: string }) => [v.name, v]));
    expect(JSON.parse(vars.allowedSecrets.expression)).toEqual(values.storageTrust.secrets);
    expect(JSON.parse(vars.allowedPvcs.expression)).toEqual(values.storageTrust.pvcs);
    expect(vap.spec.failurePolicy).toBe("Fail");
    expect(vap.spec.matchConstraints.resourceRules[0].resources).toEqual(["aiworkflows", "inferencetasks"]);
    const binding = named("ValidatingAdmissionPolicyBinding", "-storage");
    expect(binding.spec.policyName).toBe(vap.metadata.name);
    expect(binding.spec.validationActions).toEqual(["Deny"]);
    expect(binding.spec.matchResources.namespaceSelector.matchExpressions[0].values).toEqual(values.watchNamespaces);
    expect(
      render({ storageTrust: { admissionPolicy: { enabled: false } } }, VAP).map((o) => o.metadata.name),
    ).not.toContain(vap.metadata.name);
  }, 30_000);
});

describe("helm chart: a review verdict names the user who gave it (issue 13)", () => {
  const reviewerPolicy = (objs: Obj[]) => objs.filter((o) => o.metadata.name.endsWith("-reviewer"));

  it("a ValidatingAdmissionPolicy on new spec.reviews entries, bound to the watched namespaces, where the cluster serves it", () => {
    expect(reviewerPolicy(render({}))).toEqual([]);
    const objs = reviewerPolicy(render({ watchNamespaces: ["radiology"] }, VAP));
    const vap = one(objs, "ValidatingAdmissionPolicy");
    expect(vap.spec.failurePolicy).toBe("Fail");
    expect(vap.spec.matchConstraints.resourceRules[0].resources).toEqual(["inferencetasks"]);
    expect(vap.spec.validations[0].expression).toBe("size(variables.forged) == 0");
    const binding = one(objs, "ValidatingAdmissionPolicyBinding");
    expect(binding.spec.policyName).toBe(vap.metadata.name);
    expect(binding.spec.validationActions).toEqual(["Deny"]);
    expect(binding.spec.matchResources.namespaceSelector.matchExpressions[0].values).toEqual(["radiology"]);
    expect(reviewerPolicy(render({ reviewIdentity: { admissionPolicy: { enabled: false } } }, VAP))).toEqual([]);
  }, 30_000);
});

describe("helm chart: egress pinned (issue 12, item 11)", () => {
  const rules = (objs: Obj[]) => one(objs, "NetworkPolicy", `${RELEASE}-radflow`).spec.egress as Obj[];
  const byPort = (objs: Obj[], port: number) =>
    rules(objs).find((r) => r.ports.some((p: { port: number }) => p.port === port)) as Obj;

  it("cidrs and to from the values; nothing left unpinned", () => {
    const objs = render({
      nats: { url: "nats://nats.example.org:4222" },
      networkPolicy: {
        egress: {
          apiServer: { cidrs: ["10.0.0.1/32"] },
          nats: { to: [{ podSelector: { matchLabels: { app: "nats" } } }], cidrs: ["10.9.0.0/16"] },
        },
      },
    });
    expect(byPort(objs, 6443).to).toEqual([{ ipBlock: { cidr: "10.0.0.1/32" } }]);
    expect(byPort(objs, 4222).to).toEqual([
      { ipBlock: { cidr: "10.9.0.0/16" } },
      { podSelector: { matchLabels: { app: "nats" } } },
    ]);
    expect(one(objs, "NetworkPolicy").metadata.annotations).toBeUndefined();
  });

  it("NATS pinned from nats.url: a cluster Service's namespace, an IP address", () => {
    const objs = render({ nats: { url: "tls://nats.nats-system.svc.cluster.local:4222,nats://10.1.2.3:4222" } });
    expect(byPort(objs, 4222).to).toEqual([
      { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "nats-system" } } },
      { ipBlock: { cidr: "10.1.2.3/32" } },
    ]);
  });

  it("what nothing pins is named in an annotation; an external NATS host cannot be pinned from its name", () => {
    const objs = render({ nats: { url: "nats://nats.example.org:4222" } });
    expect(byPort(objs, 4222).to).toBeUndefined();
    expect(one(objs, "NetworkPolicy").metadata.annotations).toEqual({ "radflow.io/egress-unpinned": "apiServer,nats" });
  });

  it("step pods: optional policy per watched namespace, no ingress, egress to DNS and the given rules only", () => {
    expect(render({ watchNamespaces: ["radiology"] }).filter((o) => o.metadata.name.endsWith("-steps"))).toEqual([]);
    const s3 = { to: [{ ipBlock: { cidr: "10.20.0.15/32" } }], ports: [{ port: 443, protocol: "TCP" }] };
    const objs = render({
      watchNamespaces: ["radiology", "research"],
      stepNetworkPolicy: { enabled: true, egress: [s3] },
    });
    const steps = objs.filter((o) => o.kind === "NetworkPolicy" && o.metadata.name === `${RELEASE}-radflow-steps`);
    expect(steps.map((o) => o.metadata.namespace)).toEqual(["radiology", "research"]);
    for (const np of steps) {
      expect(np.spec.podSelector).toEqual({
        matchLabels: { "app.kubernetes.io/managed-by": "radflow" },
        matchExpressions: [{ key: "radflow.io/step", operator: "Exists" }],
      });
      expect(np.spec.policyTypes).toEqual(["Ingress", "Egress"]);
      expect(np.spec.ingress).toEqual([]);
      expect(np.spec.egress).toEqual([
        {
          ports: [
            { port: 53, protocol: "UDP" },
            { port: 53, protocol: "TCP" },
          ],
        },
        s3,
      ]);
    }
  }, 30_000);
});

describe("helm chart: PriorityClasses", () => {
  it("creates the four classes and hands their names to the operator", () => {
    const objs = render({ priorityClasses: { create: true } });
    const pcs = objs.filter((o) => o.kind === "PriorityClass");
    expect(pcs.map((p) => [p.metadata.name, p.value, p.preemptionPolicy, p.globalDefault])).toEqual([
      ["radflow-stat", 1000000, "PreemptLowerPriority", false],
      ["radflow-urgent", 100000, "PreemptLowerPriority", false],
      ["radflow-routine", 10000, "PreemptLowerPriority", false],
      ["radflow-batch", 1000, "Never", false],
    ]);
    expect(parseOperatorArgs([], processEnv(objs)).cfg.priorityClasses).toEqual({
      stat: "radflow-stat",
      urgent: "radflow-urgent",
      routine: "radflow-routine",
      batch: "radflow-batch",
    });
  });

  it("uses existing classes without creating them; a class without a name is left out", () => {
    const objs = render({ priorityClasses: { useExisting: true, stat: { name: "er-critical" }, batch: { name: "" } } });
    expect(objs.some((o) => o.kind === "PriorityClass")).toBe(false);
    expect(env(objs, "RADFLOW_PRIORITY_CLASSES")?.value).toBe(
      "stat=er-critical,urgent=radflow-urgent,routine=radflow-routine",
    );
    expect(env(render(), "RADFLOW_PRIORITY_CLASSES")).toBeUndefined();
  });
});

describe("helm chart: monitoring objects only where the cluster serves monitoring.coreos.com/v1", () => {
  const on = { metrics: { serviceMonitor: { enabled: true }, prometheusRule: { enabled: true } } };
  const withApi = ["--api-versions", "monitoring.coreos.com/v1"];

  it("enabled on a cluster without the Prometheus Operator: neither is rendered", () => {
    expect(render(on).filter((o) => o.apiVersion.startsWith("monitoring.coreos.com"))).toEqual([]);
  });

  it("disabled on a cluster with it: neither is rendered", () => {
    expect(render({}, withApi).filter((o) => o.apiVersion.startsWith("monitoring.coreos.com"))).toEqual([]);
  });

  it("enabled where it is served: a ServiceMonitor on the metrics Service and the shipped rules", () => {
    const objs = render(
      { ...on, metrics: { ...on.metrics, serviceMonitor: { enabled: true, labels: { release: "kps" } } } },
      withApi,
    );
    const sm = one(objs, "ServiceMonitor");
    expect(sm.metadata.labels?.release).toBe("kps");
    const svc = one(objs, "Service");
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels?.[k]).toBe(v);
    expect(sm.spec.endpoints).toEqual([{ port: "metrics", path: "/metrics", interval: "30s" }]);
    const rule = one(objs, "PrometheusRule");
    const shipped = yaml.load(readFileSync(path.join(ROOT, "alerts/radflow.rules.yaml"), "utf8")) as {
      groups: unknown;
    };
    expect(rule.spec.groups).toEqual(shipped.groups);
  });

  it("the PrometheusRule's groups pass promtool check rules", () => {
    const rule = one(render(on, withApi), "PrometheusRule");
    const file = path.join(tmp, "rules.yaml");
    writeFileSync(file, yaml.dump({ groups: rule.spec.groups }));
    const r = spawnSync(tool("promtool"), ["check", "rules", file], { encoding: "utf8" });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe("helm chart: CRDs", () => {
  const crdFiles = readdirSync(path.join(ROOT, "crds")).filter((f) => f.endsWith(".yaml"));
  const generated = crdFiles.map((f) => yaml.load(readFileSync(path.join(ROOT, "crds", f), "utf8")) as Obj);

  it("default: no CRD among the templates (helm installs crds/ once, --include-crds shows them)", () => {
    expect(render().filter((o) => o.kind === "CustomResourceDefinition")).toEqual([]);
    const included = render({}, ["--include-crds"]).filter((o) => o.kind === "CustomResourceDefinition");
    expect(included).toEqual(generated);
  });

  it("crds.manage: the same CRDs as templates, kept on uninstall", () => {
    const crds = render({ crds: { manage: true } }).filter((o) => o.kind === "CustomResourceDefinition");
    expect(crds.map((c) => c.metadata.name).sort()).toEqual(generated.map((g) => g.metadata.name).sort());
    for (const c of crds) {
      const g = generated.find((x) => x.metadata.name === c.metadata.name) as Obj;
      expect(c.spec).toEqual(g.spec);
      expect(c.metadata.annotations).toEqual({ "helm.sh/resource-policy": "keep" });
      expect(c.metadata.labels?.["app.kubernetes.io/instance"]).toBe(RELEASE);
    }
  });
});

describe("helm chart: bad values are refused with a message naming them", () => {
  it.each([
    [{ rbac: { scope: "namespace" } }, "at '/rbac/scope': value must be one of 'auto', 'cluster', 'namespaced'"],
    [
      { storageTrust: { secrets: ["imaging-s3"] } },
      "at '/storageTrust/secrets/0': 'imaging-s3' does not match pattern",
    ],
    [
      { networkPolicy: { egress: { nats: { cidrs: ["nats.example.org"] } } } },
      "at '/networkPolicy/egress/nats/cidrs/0'",
    ],
    [{ rbac: { scope: "namespaced" } }, "at '/watchNamespaces': minItems: got 0, want 1"],
    [{ watchNamespaces: ["Radiology"] }, "at '/watchNamespaces/0': 'Radiology' does not match pattern"],
    [{ replicas: 3 }, "additional properties 'replicas' not allowed"],
    [{ replicaCount: 2, leaderElection: { enabled: false } }, "at '/leaderElection/enabled': value must be true"],
    [{ workers: 0 }, "at '/workers': minimum: got 0, want 1"],
    [{ workers: "8" }, "at '/workers': got string, want integer"],
    [{ logLevel: "verbose" }, "at '/logLevel': value must be one of"],
    [{ image: { digest: "latest" } }, "at '/image/digest': 'latest' does not match pattern"],
    [{ nats: { url: "nats://a b" } }, "at '/nats/url'"],
    [{ nats: { consumer: "radflow.ops" } }, "at '/nats/consumer'"],
    [{ nats: { existingSecret: "Bad_Name" } }, "at '/nats/existingSecret'"],
    [{ priorityClasses: { stat: { value: 2000000000 } } }, "at '/priorityClasses/stat/value': maximum"],
    [{ priorityClasses: { batch: { preemptionPolicy: "Sometimes" } } }, "at '/priorityClasses/batch/preemptionPolicy'"],
    [{ metrics: { port: 70000 } }, "at '/metrics/port': maximum"],
    [{ metrics: { serviceMonitor: { interval: "30 seconds" } } }, "at '/metrics/serviceMonitor/interval'"],
    [{ podDisruptionBudget: { maxUnavailable: "half" } }, "at '/podDisruptionBudget/maxUnavailable'"],
    [{ topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "zone" }] }, "missing property 'whenUnsatisfiable'"],
  ])("%j", (values, message) => {
    expect(refused(values)).toContain(message);
  });

  it.each([
    [
      { nats: { url: "nats://n:4222", existingSecret: "s", secretKeys: { url: "url" } } },
      "nats.url and nats.secretKeys.url are both set",
    ],
    [{ nats: { secretKeys: { token: "token" } } }, "nats.existingSecret is empty"],
    [{ nats: { url: "nats://n:4222", existingSecret: "s" } }, "nats.secretKeys names no key"],
    [
      { nats: { url: "nats://n:4222", existingSecret: "s", secretKeys: { user: "u" } } },
      "nats.secretKeys.user needs nats.secretKeys.password",
    ],
    [
      { nats: { url: "nats://n:4222", existingSecret: "s", secretKeys: { user: "u", password: "p", token: "t" } } },
      "choose one",
    ],
    [{ nats: { tls: { existingSecret: "ca" } } }, "no NATS URL"],
    [
      { nats: { url: "nats://n:4222", tls: { existingSecret: "t", secretKeys: { ca: "", cert: "tls.crt" } } } },
      "cert and nats.tls.secretKeys.key go together",
    ],
    [{ audit: { syslog: { existingSecret: "arr" } } }, "audit.syslog needs NATS"],
    [{ priorityClasses: { create: true, useExisting: true } }, "choose one"],
    [{ metrics: { port: 9000 }, health: { port: 9000 } }, "metrics.port and health.port are both 9000"],
    [{ networkPolicy: { egress: { failOpen: false } } }, "no destination for apiServer"],
    [{ stepNetworkPolicy: { enabled: true } }, "stepNetworkPolicy.enabled needs the namespaces"],
  ])("%j", (values, message) => {
    expect(refused(values)).toContain(message);
  });
});

describe("helm chart: image", () => {
  it("tag defaults to appVersion; a digest wins over the tag", () => {
    const chart = yaml.load(readFileSync(path.join(CHART, "Chart.yaml"), "utf8")) as { appVersion: string };
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    expect(chart.appVersion).toBe(pkg.version);
    expect(container(render()).image).toBe(`ghcr.io/radflow/radflow:${chart.appVersion}`);
    const digest = `sha256:${"a".repeat(64)}`;
    expect(container(render({ image: { repository: "reg.hospital.org/radflow", tag: "x", digest } })).image).toBe(
      `reg.hospital.org/radflow@${digest}`,
    );
  });
});

describe("helm lint", () => {
  it.each([
    ["default values", []],
    ["namespaced, everything on", ["--set", "rbac.scope=namespaced,watchNamespaces={a,b},priorityClasses.create=true"]],
  ])("%s", (_name, args) => {
    const r = spawnSync(helm, ["lint", "--strict", CHART, ...args], { encoding: "utf8" });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
