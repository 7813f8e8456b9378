// Runs `radflow operator` as a real child process (so tests can SIGKILL and restart it), watching
// only the test's namespace, with its logs kept for assertions and failure messages.
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { kubeconfigPath, natsUrl } from "./helpers.ts";

const entry = path.resolve(import.meta.dirname, "../../src/cmd/radflow.ts");

export interface OperatorProcess {
  proc: ChildProcess;
  identity: string;
  logs(): string;
  /** SIGTERM and wait for exit (graceful) */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash at an arbitrary instant */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

export interface OperatorOptions {
  namespace: string;
  identity?: string;
  args?: string[];
  env?: Record<string, string>;
  nats?: boolean;
}

let counter = 0;

export function startOperator(o: OperatorOptions): OperatorProcess {
  const identity = o.identity ?? `op-${process.pid}-${++counter}`;
  let out = "";
  const proc = spawn(
    process.execPath,
    [
      entry,
      "operator",
      "--namespaces",
      o.namespace,
      "--lease-namespace",
      o.namespace,
      "--identity",
      identity,
      "--metrics-port",
      "0",
      "--health-port",
      "0",
      ...(o.args ?? []),
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: kubeconfigPath(),
        RADFLOW_NATS_URL: o.nats ? natsUrl() : "",
        RADFLOW_NATS_CONSUMER: `op-${o.namespace}`,
        RADFLOW_LOG_LEVEL: "debug",
        ...o.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  proc.stdout?.on("data", (d) => {
    out += d;
  });
  proc.stderr?.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return {
    proc,
    identity,
    logs: () => out,
    exited,
    async stop() {
      proc.kill("SIGTERM");
      return exited;
    },
    async kill() {
      proc.kill("SIGKILL");
      await exited;
    },
  };
}
