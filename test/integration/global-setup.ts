// Brings the local cluster (API server, Job controller, scheduler, KWOK GPU nodes, JetStream)
// up once per test run, or uses an existing one when KUBECONFIG and RADFLOW_NATS_URL are set,
// and tears down only what it started.
import { execFileSync } from "node:child_process";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { buildTools, down, up } from "../../hack/cluster.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    natsUrl: string;
    toolsBin: string;
  }
}

export default async function setup(project: TestProject) {
  const toolsBin = buildTools();
  let teardown: (() => Promise<void>) | undefined;
  let env: { KUBECONFIG: string; RADFLOW_NATS_URL: string };
  if (process.env.KUBECONFIG && process.env.RADFLOW_NATS_URL) {
    env = { KUBECONFIG: process.env.KUBECONFIG, RADFLOW_NATS_URL: process.env.RADFLOW_NATS_URL };
    process.stderr.write(`integration: using the existing cluster (KUBECONFIG=${env.KUBECONFIG})\n`);
  } else {
    const o = {
      dir: process.env.RADFLOW_TEST_CLUSTER_DIR ?? "/tmp/radflow-test-cluster",
      portBase: Number(process.env.RADFLOW_TEST_PORT_BASE ?? 36500),
    };
    env = await up(o);
    teardown = () => down(o);
  }
  // radflow's CRDs, as the chart installs them (server-side apply: idempotent, no annotations)
  const kubectl = (args: string[]) =>
    execFileSync(path.join(toolsBin, "kubectl"), ["--kubeconfig", env.KUBECONFIG, ...args], { stdio: "pipe" });
  const crds = process.env.RADFLOW_TEST_CRDS ?? path.resolve(import.meta.dirname, "../../crds");
  kubectl(["apply", "--server-side", "--force-conflicts", "-f", crds]);
  kubectl([
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    "crd/aiworkflows.radflow.io",
    "crd/inferencetasks.radflow.io",
  ]);
  project.provide("kubeconfig", env.KUBECONFIG);
  project.provide("natsUrl", env.RADFLOW_NATS_URL);
  project.provide("toolsBin", toolsBin);
  return async () => {
    if (teardown && !process.env.RADFLOW_KEEP_CLUSTER) await teardown();
  };
}
