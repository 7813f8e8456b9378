// Installs radflow's CRDs (crds/) into the test cluster once and waits until they serve.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { kubeConfig, kubeconfigPath, toolBin, waitFor } from "./helpers.ts";

const run = promisify(execFile);
export const crdDir = path.resolve(import.meta.dirname, "../../crds");

/** Applies crds/ (server-side) and resolves once both CRDs are Established; returns kubectl's stderr. */
export async function installCrds(): Promise<{ stderr: string }> {
  const { stderr } = await run(toolBin("kubectl"), [
    "--kubeconfig",
    kubeconfigPath(),
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager=radflow-tests",
    "-f",
    crdDir,
  ]);
  const ext = kubeConfig().makeApiClient(k8s.ApiextensionsV1Api);
  for (const name of ["aiworkflows.radflow.io", "inferencetasks.radflow.io"]) {
    await waitFor(`CRD ${name} Established`, 60_000, async () => {
      const crd = await ext.readCustomResourceDefinition({ name });
      const conds = crd.status?.conditions ?? [];
      const ok = conds.some((c) => c.type === "Established" && c.status === "True");
      return { done: ok, value: crd, seen: conds };
    });
  }
  return { stderr };
}
