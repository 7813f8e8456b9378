// hack/cluster, the local control plane every test and the demo stand on: a component that dies,
// or cannot start because its port is taken (the scheduler once came up bound to nothing while
// `up` said "up"), is named by `status` (non-zero exit) and by `up` (which starts a dead one again
// and fails, naming it and quoting its log, when it cannot). A cluster of this file's own
// (directory and ports PORT_OFFSET above the test cluster's), so the shared one is not disturbed.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterOptions, down, kill, ports, up } from "../../hack/cluster.ts";
import { clusterOptions } from "./helpers.ts";

const run = promisify(execFile);
const PORT_OFFSET = 100;
const cli = path.resolve(import.meta.dirname, "../../hack/cluster");
let o: ClusterOptions;

/** `hack/cluster <args>` against this file's cluster: exit code and everything it printed. */
async function cluster(...args: string[]): Promise<{ code: number; out: string }> {
  const t0 = Date.now();
  const r = await clusterCli(args);
  console.info(`hack/cluster ${args.join(" ")}: exit ${r.code} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

async function clusterCli(args: string[]): Promise<{ code: number; out: string }> {
  const env = { ...process.env, RADFLOW_CLUSTER_DIR: o.dir, RADFLOW_PORT_BASE: String(o.portBase) };
  try {
    const r = await run(cli, args, { env, maxBuffer: 16 << 20 });
    return { code: 0, out: `${r.stdout}${r.stderr}` };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === "number" ? err.code : -1, out: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

beforeAll(async () => {
  const test = clusterOptions();
  o = { dir: `${test.dir}-health`, portBase: test.portBase + PORT_OFFSET, quiet: true };
  await up(o);
}, 600_000);

afterAll(async () => {
  if (o) await down(o);
});

describe("hack/cluster", () => {
  it("uses ports below the kernel's ephemeral range by default", async () => {
    const { DEFAULT_PORT_BASE, DEFAULT_TEST_PORT_BASE, PORT_SPAN } = await import("../../hack/cluster.ts");
    for (const base of [DEFAULT_PORT_BASE, DEFAULT_TEST_PORT_BASE]) {
      expect(Math.max(...Object.values(ports(base)))).toBeLessThan(base + PORT_SPAN);
      expect(base + PORT_SPAN).toBeLessThanOrEqual(32768);
    }
  });

  it("status names a dead scheduler; up starts it again, and fails naming it when it cannot bind", async () => {
    const healthy = await cluster("status");
    expect(healthy.out).toMatch(/kube-scheduler\s+running \(pid \d+\), healthy/);
    expect(healthy.out).toMatch(/kube-controller-manager\s+running \(pid \d+\), healthy/);
    expect(healthy.code, healthy.out).toBe(0);

    await kill(o, "kube-scheduler");
    console.info("killed kube-scheduler");
    const dead = await cluster("status");
    expect(dead.out).toMatch(/kube-scheduler\s+NOT RUNNING/);
    expect(dead.code, dead.out).toBe(1);

    // the failure seen in CI: something else holds the scheduler's port when it starts
    // (it drops whatever connects, so that closing it later waits for nothing)
    const holder = net.createServer((socket) => socket.destroy());
    await new Promise<void>((r) => holder.listen(ports(o.portBase).scheduler, "127.0.0.1", r));
    let failed: { code: number; out: string };
    try {
      failed = await cluster("up");
    } finally {
      await new Promise((r) => holder.close(r));
    }
    expect(failed.out).toContain("kube-scheduler exited at start");
    expect(failed.out).toContain("address already in use");
    expect(failed.code, failed.out).toBe(1);
    expect((await cluster("status")).code).toBe(1);

    const again = await cluster("up");
    expect(again.out).toContain("starting kube-scheduler again");
    expect(again.code, again.out).toBe(0);
    const back = await cluster("status");
    expect(back.out).toMatch(/kube-scheduler\s+running \(pid \d+\), healthy/);
    expect(back.code, back.out).toBe(0);
  }, 300_000);

  it("status exits non-zero where there is no cluster", async () => {
    const saved = o;
    o = { ...o, dir: `${saved.dir}-none` };
    try {
      expect(existsSync(o.dir)).toBe(false);
      const r = await cluster("status");
      expect(r.out).toContain("no cluster in");
      expect(r.code).toBe(1);
    } finally {
      o = saved;
    }
  });
});
