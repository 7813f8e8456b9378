// Brings the local cluster (API server, Job controller, scheduler, KWOK GPU nodes, JetStream)
// up once per test run, or uses an existing one when KUBECONFIG and RADFLOW_NATS_URL are set,
// and tears down only what it started.
import { execFileSync } from "node:child_process";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { buildTools, DEFAULT_PORT_BASE, DEFAULT_TEST_PORT_BASE, down, up } from "../../hack/cluster.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    natsUrl: string;
    toolsBin: string;
    /** the cluster's state directory and port base, when this run (or hack/cluster) made it */
    clusterDir: string;
    clusterPortBase: number;
  }
}

export default async function setup(project: TestProject) {
  const toolsBin = buildTools();
  let teardown: (() => Promise<void>) | undefined;
  let env: { KUBECONFIG: string; RADFLOW_NATS_URL: string };
  let o = {
    dir: process.env.RADFLOW_CLUSTER_DIR ?? "/tmp/radflow-cluster",
    portBase: Number(process.env.RADFLOW_PORT_BASE ?? DEFAULT_PORT_BASE),
  };
  if (process.env.KUBECONFIG && process.env.RADFLOW_NATS_URL) {
    env = { KUBECONFIG: process.env.KUBECONFIG, RADFLOW_NATS_URL: process.env.RADFLOW_NATS_URL };
    process.stderr.write(`integration: using the existing cluster (KUBECONFIG=${env.KUBECONFIG})\n`);
  } else {
    const mine = {
      dir: process.env.RADFLOW_TEST_CLUSTER_DIR ?? "/tmp/radflow-test-cluster",
      portBase: Number(process.env.RADFLOW_TEST_PORT_BASE ?? DEFAULT_TEST_PORT_BASE),
    };
    o = mine;
    env = await up(mine);
    teardown = () => down(mine);
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
  project.provide("clusterDir", o.dir);
  project.provide("clusterPortBase", o.portBase);
  return async () => {
    if (teardown && !process.env.RADFLOW_KEEP_CLUSTER) await teardown();
  };
}
