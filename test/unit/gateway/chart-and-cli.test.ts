// The gateway's part of the chart (rendered by helm template) and its CLI flags.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CHART } from "../../../hack/render-manifests.ts";
import { help, parseGatewayArgs } from "../../../src/cmd/gateway.ts";
import { tool } from "../tools.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "rf-gw-chart-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let helm: string;
beforeAll(() => {
  helm = tool("helm"); // built by the unit project's global setup
});

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects
type Obj = { kind: string; metadata: { name: string }; spec: any };
let n = 0;
function render(values: object) {
  const file = path.join(tmp, `v${++n}.yaml`);
  writeFileSync(file, yaml.dump(values));
  const r = spawnSync(helm, ["template", "rf", CHART, "--namespace", "imaging", "-f", file], { encoding: "utf8" });
  return { ...r, objs: (yaml.loadAll(r.stdout ?? "") as Obj[]).filter(Boolean) };
}
const on = {
  nats: { url: "nats://nats.messaging.svc:4222" },
  gateway: {
    enabled: true,
    storage: { existingClaim: "imaging-studies", subPath: "radflow" },
    sources: [{ callingAETitle: "CT_EAST", calledAETitles: ["RADFLOW"] }, { callingAETitle: "PACS" }],
  },
};

describe("chart: gateway", { timeout: 60_000 }, () => {
  it("is off by default", () => {
    const r = render({});
    expect(r.status, r.stderr).toBe(0);
    expect(r.objs.filter((o) => o.metadata.name.includes("gateway"))).toEqual([]);
  });

  it("renders a Deployment on the study PVC and a Service for DICOM, STOW-RS and metrics", () => {
    const r = render(on);
    expect(r.status, r.stderr).toBe(0);
    const dep = r.objs.find((o) => o.kind === "Deployment" && o.metadata.name === "rf-radflow-gateway");
    const op = r.objs.find((o) => o.kind === "Deployment" && o.metadata.name === "rf-radflow");
    const svc = r.objs.find((o) => o.kind === "Service" && o.metadata.name === "rf-radflow-gateway");
    // the operator's selector must not select gateway pods (nor the other way round)
    const sel = (o?: Obj) => o?.spec.selector.matchLabels as Record<string, string>;
    const matches = (s: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(s).every(([k, v]) => labels[k] === v);
    expect(matches(sel(op), dep?.spec.template.metadata.labels)).toBe(false);
    expect(matches(sel(dep), op?.spec.template.metadata.labels)).toBe(false);
    expect(matches(svc?.spec.selector, dep?.spec.template.metadata.labels)).toBe(true);
    const c = dep?.spec.template.spec.containers[0];
    expect(c.args).toEqual(["gateway"]);
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(env).toMatchObject({
      RADFLOW_STORAGE_DIR: "/data",
      RADFLOW_SOURCES: "CT_EAST=RADFLOW;PACS=",
      RADFLOW_AE_TITLES: "RADFLOW",
      RADFLOW_NATS_URL: "nats://nats.messaging.svc:4222",
    });
    // what the chart passes is what the gateway parses
    const cfg = parseGatewayArgs([], env);
    expect(cfg === "help" ? undefined : [...cfg.policy.sources]).toEqual([
      ["CT_EAST", ["RADFLOW"]],
      ["PACS", []],
    ]);
    expect(c.volumeMounts).toContainEqual({ name: "studies", mountPath: "/data", subPath: "radflow" });
    expect(dep?.spec.template.spec.volumes).toContainEqual({
      name: "studies",
      persistentVolumeClaim: { claimName: "imaging-studies" },
    });
    expect(svc?.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port])).toEqual([
      ["dicom", 11112],
      ["stow", 8080],
      ["metrics", 9464],
    ]);
  });

  it("serves MONAI export sinks when the values name them, with the gateway's namespace for destinations", () => {
    const dep = (values: object) =>
      render(values).objs.find((o) => o.kind === "Deployment" && o.metadata.name === "rf-radflow-gateway");
    const envOf = (o?: Obj) =>
      o?.spec.template.spec.containers[0].env as { name: string; value?: string; valueFrom?: unknown }[];
    expect(envOf(dep(on)).map((e) => e.name)).not.toContain("RADFLOW_MONAI_EXPORT");
    const env = envOf(dep({ ...on, gateway: { ...on.gateway, export: { monaiSinks: ["monaiscu", "pacs_b"] } } }));
    expect(env.find((e) => e.name === "RADFLOW_MONAI_EXPORT")?.value).toBe("monaiscu,pacs_b");
    expect(env.find((e) => e.name === "RADFLOW_MONAI_EXPORT_NAMESPACE")?.valueFrom).toEqual({
      fieldRef: { fieldPath: "metadata.namespace" },
    });
    // what the chart passes is what the gateway parses (the namespace as the kubelet fills it in)
    const values = Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value]));
    const cfg = parseGatewayArgs([], { ...values, RADFLOW_MONAI_EXPORT_NAMESPACE: "imaging" });
    expect(cfg === "help" ? undefined : cfg.export?.monai).toEqual({
      sinks: ["monaiscu", "pacs_b"],
      namespace: "imaging",
    });
    const bad = render({ ...on, gateway: { ...on.gateway, export: { monaiSinks: ["md.export"] } } });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/monaiSinks/);
  });

  it.each([
    [{ ...on, gateway: { enabled: true } }, /existingClaim is required/],
    [{ gateway: on.gateway }, /needs NATS/],
    [{ ...on, gateway: { ...on.gateway, aeTitles: ["MUCH_TOO_LONG_AE_TITLE"] } }, /aeTitles/],
  ])("refuses %j", (values, msg) => {
    const r = render(values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(msg);
  });
});

describe("chart: gateway TLS, STOW-RS tokens and audit", () => {
  it("mounts the TLS Secret and the token Secret and points the gateway at them", { timeout: 60_000 }, () => {
    const r = render({
      ...on,
      gateway: {
        ...on.gateway,
        tls: { existingSecret: "gw-dicom-tls", requireClientCertificates: true },
        stow: { port: 8080, tokenSecret: { name: "stow-clients", key: "tokens" } },
        audit: "syslog",
      },
    });
    expect(r.status, r.stderr).toBe(0);
    const dep = r.objs.find((o) => o.kind === "Deployment" && o.metadata.name === "rf-radflow-gateway");
    const c = dep?.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(env).toMatchObject({
      RADFLOW_DICOM_TLS_CERT: "/etc/radflow/dicom-tls/tls.crt",
      RADFLOW_DICOM_TLS_KEY: "/etc/radflow/dicom-tls/tls.key",
      RADFLOW_DICOM_TLS_CA: "/etc/radflow/dicom-tls/ca.crt",
      RADFLOW_STOW_TOKEN_FILE: "/etc/radflow/stow/tokens",
      RADFLOW_GATEWAY_AUDIT: "syslog",
    });
    const vols = dep?.spec.template.spec.volumes.map((v: { name: string; secret?: { secretName: string } }) => [
      v.name,
      v.secret?.secretName,
    ]);
    expect(vols).toContainEqual(["dicom-tls", "gw-dicom-tls"]);
    expect(vols).toContainEqual(["stow-tokens", "stow-clients"]);
    // without them: no TLS variables, fhir audit
    const plain = render(on).objs.find((o) => o.kind === "Deployment" && o.metadata.name === "rf-radflow-gateway");
    const names = plain?.spec.template.spec.containers[0].env.map((e: { name: string }) => e.name);
    expect(names).not.toContain("RADFLOW_DICOM_TLS_CERT");
    expect(names).not.toContain("RADFLOW_STOW_TOKEN_FILE");
    expect(render({ ...on, gateway: { ...on.gateway, audit: "loud" } }).status).not.toBe(0);
  });
});

describe("radflow gateway flags", () => {
  it("--help", () => {
    expect(parseGatewayArgs(["--help"], {})).toBe("help");
    expect(help).toContain("--quiet-seconds");
  });
  it("flags win over the environment; bad values are refused", () => {
    const c = parseGatewayArgs(["--quiet-seconds", "2", "--source", "MR1"], { RADFLOW_QUIET_SECONDS: "9" });
    expect(c !== "help" && [c.quietMs, c.maxWaitMs, c.dicomPort, [...c.policy.sources.keys()]]).toEqual([
      2000,
      300_000,
      11112,
      ["MR1"],
    ]);
    expect(() => parseGatewayArgs(["--quiet-seconds", "0"], {})).toThrow(/quiet-seconds/);
    expect(() => parseGatewayArgs(["--max-wait-seconds", "1", "--quiet-seconds", "5"], {})).toThrow(/max-wait/);
    expect(() => parseGatewayArgs(["--dicom-port", "70000"], {})).toThrow(/dicom-port/);
  });
});
