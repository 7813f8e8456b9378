// What the gateway tests share: `radflow gateway` as a real child process (its log kept for
// failure messages and PHI checks, ready when /readyz says so), a nats-server of the test's own
// (so it can read the streams without touching a shared cluster's), polling, and dcmtk's
// storescu as the sending modality.
import { type ChildProcess, execFileSync, type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { makeInstance } from "../unit/gateway/dicom-fixture.ts";

const SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4";
const ENTRY = path.resolve(import.meta.dirname, "../../src/cmd/radflow.ts");

/** Polls f until it gives something other than undefined/false; the error carries what `log` says. */
export async function waitFor<T>(
  f: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 30_000,
  what = "condition",
  log: () => string = () => "",
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) {
      const tail = log().slice(-3000);
      throw new Error(`timed out waiting for ${what}${tail ? `\n${tail}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface GatewayPorts {
  dicom: number;
  http: number;
  metrics: number;
}

export interface GatewayOptions {
  storage: string;
  ports: GatewayPorts;
  natsUrl: string;
  /** flags after the storage, ports and NATS ones (AE titles, sources, quiet window, audit…) */
  args?: string[];
  env?: Record<string, string>;
}

/** The flags most tests give: one gateway title, CT_EAST and STORESCU as senders, a 1 s window. */
export const DEFAULT_GATEWAY_ARGS = ["--ae-title", "RADFLOW", "--source", "CT_EAST=RADFLOW;STORESCU"];

/** `radflow gateway` as a process with its own storage and ports. */
export class GatewayProcess {
  log = "";
  proc?: ChildProcess;
  readonly storage: string;
  readonly ports: GatewayPorts;
  private readonly o: GatewayOptions;

  constructor(o: GatewayOptions) {
    this.o = o;
    this.storage = o.storage;
    this.ports = o.ports;
  }

  /** Starts it (extra flags after the options' ones: a later flag wins) and waits for /readyz. */
  async start(extra: string[] = [], env: Record<string, string> = {}, readyMs = 180_000): Promise<void> {
    this.log = "";
    const p = spawn(
      process.execPath,
      [
        ENTRY,
        "gateway",
        ...["--storage-dir", this.storage, "--dicom-port", String(this.ports.dicom)],
        ...["--http-port", String(this.ports.http), "--metrics-port", String(this.ports.metrics)],
        ...["--nats-url", this.o.natsUrl],
        ...(this.o.args ?? DEFAULT_GATEWAY_ARGS),
        ...extra,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, RADFLOW_PHI_HMAC_KEY: "gateway-test-key-0123456789", ...this.o.env, ...env },
      },
    );
    this.proc = p;
    const keep = (d: Buffer) => {
      this.log = (this.log + d).slice(-200_000);
    };
    p.stdout?.on("data", keep);
    p.stderr?.on("data", keep);
    await waitFor(
      async () => {
        if (p.exitCode !== null) throw new Error(`the gateway exited (${p.exitCode}):\n${this.log.slice(-3000)}`);
        return (await fetch(`http://127.0.0.1:${this.ports.metrics}/readyz`).catch(() => undefined))?.ok || undefined;
      },
      readyMs, // a loaded 2-core machine takes its time to start Node
      "the gateway to be ready",
      () => this.log,
    );
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await done;
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.ports.metrics}/metrics`)).text();
  }
}

export interface NatsServer {
  nc: NatsConnection;
  url: string;
  stop(): Promise<void>;
}

/** A JetStream nats-server on 127.0.0.1:port with its store in dir, and a connection to it. */
export async function startNats(bin: string, port: number, dir: string): Promise<NatsServer> {
  const proc = spawn(bin, ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
  let exited = false;
  proc.once("exit", () => {
    exited = true;
  });
  const url = `nats://127.0.0.1:${port}`;
  const nc = await waitFor(
    () => {
      // another server on the port would hand us its (older) streams: refuse to test against it
      if (exited) throw new Error(`nats-server exited: is port ${port} in use?`);
      return connect({ servers: url }).catch(() => undefined);
    },
    20_000,
    "NATS",
  );
  return {
    nc,
    url,
    async stop() {
      await nc.close().catch(() => {});
      if (!exited) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await done;
      }
    },
  };
}

/** Writes DICOM buffers as <dir>/<i>.dcm and returns the paths. */
export function writeFiles(dir: string, bufs: Buffer[]): string[] {
  mkdirSync(dir, { recursive: true });
  return bufs.map((b, i) => {
    const f = path.join(dir, `${i}.dcm`);
    writeFileSync(f, b);
    return f;
  });
}

/** A model's segmentation, as a step or MONAI application leaves it: <dir>/seg.dcm (a SEG instance of the study); its path. */
export function writeSeg(dir: string, o: { study: string; series: string; sop: string; patientName?: string }): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "seg.dcm");
  writeFileSync(file, makeInstance({ ...o, sopClass: SEG_STORAGE, modality: "SEG" }));
  return file;
}

/** dcmtk's storescu sending files to 127.0.0.1:port (synchronously; its stderr tells the statuses with -v). */
export function storescu(
  port: number,
  files: string[],
  o: { calling?: string; called?: string; extra?: string[] } = {},
): SpawnSyncReturns<string> {
  return spawnSync(
    "storescu",
    [
      "-aet",
      o.calling ?? "CT_EAST",
      "-aec",
      o.called ?? "RADFLOW",
      "-nh",
      ...(o.extra ?? []),
      "127.0.0.1",
      String(port),
      ...files,
    ],
    { encoding: "utf8", maxBuffer: 64 << 20 },
  );
}

/** storescu in the background (several senders at once). */
export function storescuAsync(port: number, files: string[], calling = "CT_EAST", called = "RADFLOW"): Promise<number> {
  return new Promise((resolve) => {
    const p = spawn("storescu", ["-aet", calling, "-aec", called, "-nh", "127.0.0.1", String(port), ...files], {
      stdio: "ignore",
    });
    p.once("exit", (code) => resolve(code ?? -1));
  });
}

/**
 * The DICOM files pydicom ships as its test data (PyPI wheel, fetched once with pip into
 * ~/.cache/radflow/pydicom): the .dcm paths, or why they are not available (offline).
 */
export function pydicomFiles(): { files: string[] } | { skip: string } {
  const cache = path.join(homedir(), ".cache/radflow/pydicom");
  const wheel = path.join(cache, "pydicom-3.0.2-py3-none-any.whl");
  if (!existsSync(wheel)) {
    const dl = spawnSync(
      "python3",
      ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "pydicom==3.0.2", "-d", cache],
      { encoding: "utf8", timeout: 120_000 },
    );
    if (dl.status !== 0) return { skip: "pydicom's wheel could not be downloaded from PyPI with pip (offline?)" };
  }
  const out = path.join(cache, "files");
  if (!existsSync(out)) execFileSync("python3", ["-m", "zipfile", "-e", wheel, out]);
  const dir = path.join(out, "pydicom/data/test_files");
  return {
    files: readdirSync(dir, { recursive: true })
      .map((f) => path.join(dir, String(f)))
      .filter((f) => f.endsWith(".dcm") && statSync(f).isFile()),
  };
}
