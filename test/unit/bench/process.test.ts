// BenchProcess: the benchmark's children (operator, Argo's controller) must not be mistaken for a
// process an earlier run left behind on the same port (last stop, a stale workflow-controller
// answered the new one's metrics port, so the new one's configuration was never exercised), and
// must all be stoppable when the benchmark itself is interrupted.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { BenchProcess, listeningInodes, portHolder, stopAllProcesses } from "../../../bench/lib/process.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "radflow-bench-process-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await stopAllProcesses(2000);
});

/** A node child that listens on port 0 and prints the port it got. */
function server(name: string): BenchProcess {
  return new BenchProcess({
    name,
    command: process.execPath,
    args: [
      "-e",
      "const s=require('node:net').createServer();s.listen(0,'127.0.0.1',()=>console.log('port',s.address().port))",
    ],
    logFile: path.join(dir, `${name}.log`),
  });
}

async function portOf(p: BenchProcess): Promise<number> {
  let port = 0;
  await p.waitReady(async () => {
    port = Number(/port (\d+)/.exec(readFileSync(p.o.logFile, "utf8"))?.[1] ?? 0);
    return port > 0;
  }, 20_000);
  return port;
}

function listen(): Promise<net.Server> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

describe("listeningInodes", () => {
  it("takes only listening sockets on the port, v4 and v6 tables alike", () => {
    const head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const v4 = `${head}   0: 0100007F:6596 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:6596 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0
   2: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n`;
    const v6 = `${head}   0: 00000000000000000000000000000000:6596 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0\n`;
    writeFileSync(path.join(dir, "tcp"), v4);
    writeFileSync(path.join(dir, "tcp6"), v6);
    // 0x6596 = 26006; the established connection (state 01) on it is not a listener
    expect([...listeningInodes(26006, [path.join(dir, "tcp"), path.join(dir, "tcp6")])].sort()).toEqual(["111", "444"]);
    expect(listeningInodes(3000, [path.join(dir, "tcp")]).size).toBe(1);
    expect(listeningInodes(3001, [path.join(dir, "tcp"), path.join(dir, "missing")]).size).toBe(0);
  });
});

describe("portHolder", () => {
  it("names the process that listens on a port, and nothing for a closed port", async () => {
    const s = await listen();
    const port = (s.address() as net.AddressInfo).port;
    expect(portHolder(port)?.pid).toBe(process.pid);
    await new Promise((r) => s.close(r));
    expect(portHolder(port)).toBeUndefined();
  });
});

describe("BenchProcess", () => {
  it("refuses to start on a port another process still serves, naming it", async () => {
    const s = await listen();
    const port = (s.address() as net.AddressInfo).port;
    const p = new BenchProcess({
      name: "workflow-controller",
      command: process.execPath,
      args: ["-e", "setTimeout(()=>{},60000)"],
      logFile: path.join(dir, "refused.log"),
      ports: [port],
    });
    try {
      expect(() => p.start()).toThrow(new RegExp(`port ${port} is already served by pid ${process.pid}`));
      expect(p.pid).toBeUndefined();
    } finally {
      await new Promise((r) => s.close(r));
    }
  });

  it("is ready once its probe answers, and owns the port it listens on", async () => {
    const p = server("owner");
    p.start();
    const port = await portOf(p);
    expect(portHolder(port)?.pid).toBe(p.pid);
    expect(p.cpuSeconds()).toBeGreaterThanOrEqual(0);
    expect(p.memory().rss).toBeGreaterThan(0);
    expect(p.memory().anon).toBeGreaterThan(0);
    await p.stop(2000);
    expect(p.running).toBe(false);
  });

  it("fails fast with the log's tail when the child exits before it is ready", async () => {
    const p = new BenchProcess({
      name: "operator",
      command: process.execPath,
      args: ["-e", "console.log('no kubeconfig');process.exit(3)"],
      logFile: path.join(dir, "dies.log"),
    });
    p.start();
    const t0 = Date.now();
    await expect(p.waitReady(async () => false, 60_000)).rejects.toThrow(
      /operator exited with code 3[\s\S]*no kubeconfig/,
    );
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it("stopAllProcesses stops every child still running, one that ignores SIGTERM too", async () => {
    const stubborn = new BenchProcess({
      name: "stubborn",
      command: process.execPath,
      args: ["-e", "process.on('SIGTERM',()=>{});console.log('up');setInterval(()=>{},1000)"],
      logFile: path.join(dir, "stubborn.log"),
    });
    const plain = server("plain");
    stubborn.start();
    plain.start();
    await stubborn.waitReady(async () => readFileSync(stubborn.o.logFile, "utf8").includes("up"), 20_000);
    await portOf(plain);
    const stopped = await stopAllProcesses(500);
    expect(stopped).toHaveLength(2);
    expect(stubborn.running).toBe(false);
    expect(plain.running).toBe(false);
  });
});
