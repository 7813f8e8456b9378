// `npm run demo` fails the way it once did on a fresh machine (dcmtk's dump2dcm cannot be run)
// after it has started a cluster of its own, the operator, the gateway and Orthanc: it must say
// why, and leave nothing running — no cluster component, no operator, gateway or PACS — and no
// state directory. A cluster of the demo's
// own (directory and ports PORT_OFFSET above the test cluster's), so the shared one is not touched.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PORT_SPAN } from "../../hack/cluster.ts";
import { orthancAvailable } from "../support/orthanc.ts";
import { clusterOptions } from "./helpers.ts";

const PORT_OFFSET = 200;
const root = path.resolve(import.meta.dirname, "../..");

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("npm run demo", () => {
  it("cleans up the cluster and the operator it started when it fails", async () => {
    const test = clusterOptions();
    const dir = `${test.dir}-demo`;
    const base = test.portBase + PORT_OFFSET;
    const child = spawn(process.execPath, [path.join(root, "hack", "demo.ts"), "--fast"], {
      env: {
        ...process.env,
        RADFLOW_CLUSTER_DIR: dir,
        RADFLOW_PORT_BASE: String(base),
        RADFLOW_DEMO_METRICS_PORT: String(base + PORT_SPAN),
        // the DICOM side's ports too: past the operator's metrics (+0) and health (+1) ports
        RADFLOW_DEMO_GATEWAY_METRICS_PORT: String(base + PORT_SPAN + 2),
        RADFLOW_DEMO_GATEWAY_PORT: String(base + PORT_SPAN + 3),
        RADFLOW_DEMO_ORTHANC_HTTP_PORT: String(base + PORT_SPAN + 4),
        RADFLOW_DEMO_ORTHANC_DICOM_PORT: String(base + PORT_SPAN + 5),
        // what a machine without dcmtk has: no program to write the DICOM files with
        RADFLOW_DEMO_DUMP2DCM: "/nonexistent/dump2dcm",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    // every process the demo starts leaves its pid in the cluster's directory: remember them all
    const seen = new Map<string, number>();
    const watch = setInterval(() => {
      try {
        for (const f of readdirSync(path.join(dir, "pids")).filter((x) => x.endsWith(".pid"))) {
          const pid = Number(readFileSync(path.join(dir, "pids", f), "utf8"));
          if (pid) seen.set(f.replace(/\.pid$/, ""), pid);
        }
      } catch {}
    }, 100);
    const code = await new Promise<number | null>((r) => child.on("exit", r));
    clearInterval(watch);

    expect(out).toContain("demo failed:");
    expect(out).toContain("ENOENT");
    expect(code, out).toBe(1);
    // it had got as far as the operator, the gateway and Orthanc before failing, and stopped every one of them
    const started = ["etcd", "kube-apiserver", "kube-scheduler", "nats-server", "radflow-operator", "radflow-gateway"];
    if (orthancAvailable()) started.push("orthanc");
    expect([...seen.keys()].sort()).toEqual(expect.arrayContaining(started));
    expect([...seen.entries()].filter(([, pid]) => alive(pid))).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(out).toMatch(/the cluster's and operator's logs: \S+/);
  }, 900_000);
});
