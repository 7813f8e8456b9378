// Orthanc (Debian's `orthanc` with the `orthanc-dicomweb` plugin; hack/deps.sh installs both) as
// the PACS of the export tests and of the demo: started with a configuration of its own in a
// folder of its own (a temporary one unless the caller names one), on fixed loopback ports the
// caller chooses, waited for through its REST API, and stopped with its folder removed. Nothing
// else on the machine is touched (no service, no /etc).
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const BINARY = "/usr/sbin/Orthanc";
const PLUGIN_DIR = "/usr/lib/orthanc";

export interface Orthanc {
  readonly httpPort: number;
  readonly dicomPort: number;
  readonly aeTitle: string;
  /** REST base, e.g. http://127.0.0.1:24111 */
  readonly url: string;
  /** DICOMweb base (STOW-RS at <dicomweb>/studies) */
  readonly dicomweb: string;
  /** GET a REST path as JSON */
  get<T = unknown>(p: string): Promise<T>;
  /** the raw bytes of one stored instance (its Part-10 file) */
  file(instanceId: string): Promise<Buffer>;
  /** the log so far (for a failing test's message; empty when it goes to a file) */
  log(): string;
  readonly pid: number | undefined;
  /** lets this process exit while Orthanc keeps running (the demo's --keep) */
  detach(): void;
  stop(): Promise<void>;
}

export function orthancAvailable(): boolean {
  return existsSync(BINARY) && readdirSync(PLUGIN_DIR).some((f) => f.startsWith("libOrthancDicomWeb"));
}

export async function startOrthanc(o: {
  httpPort: number;
  dicomPort: number;
  aeTitle?: string;
  /** its configuration and database (created; removed by stop()); a temporary folder by default */
  dir?: string;
  /** where its output goes instead of memory */
  logFile?: string;
}): Promise<Orthanc> {
  if (!orthancAvailable()) throw new Error("Orthanc with its DICOMweb plugin is not installed: run hack/deps.sh");
  const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), "radflow-orthanc-"));
  mkdirSync(dir, { recursive: true });
  const aeTitle = o.aeTitle ?? "ORTHANC";
  const plugin = readdirSync(PLUGIN_DIR).find((f) => f.startsWith("libOrthancDicomWeb")) as string;
  const config = {
    Name: "radflow-test-pacs",
    StorageDirectory: path.join(dir, "db"),
    IndexDirectory: path.join(dir, "db"),
    HttpPort: o.httpPort,
    DicomPort: o.dicomPort,
    DicomAet: aeTitle,
    RemoteAccessAllowed: false, // HTTP from loopback only
    AuthenticationEnabled: false,
    DicomCheckCalledAet: true,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowEcho: true,
    UnknownSopClassAccepted: true,
    ConcurrentJobs: 1,
    HttpsVerifyPeers: false,
    Plugins: [path.join(PLUGIN_DIR, plugin)],
    DicomWeb: { Enable: true, Root: "/dicom-web/", EnableWado: false, Host: "127.0.0.1" },
  };
  writeFileSync(path.join(dir, "orthanc.json"), JSON.stringify(config, null, 2));
  let output = "";
  const logFd = o.logFile ? openSync(o.logFile, "a") : undefined;
  const child: ChildProcess = spawn(BINARY, [path.join(dir, "orthanc.json")], {
    stdio: logFd === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", logFd, logFd],
  });
  if (logFd !== undefined) closeSync(logFd); // the child has its own copy
  const keep = (b: Buffer) => {
    output = (output + b.toString()).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited: number | null | undefined;
  child.on("exit", (code) => {
    exited = code;
  });
  const url = `http://127.0.0.1:${o.httpPort}`;
  const get = async <T>(p: string): Promise<T> => {
    const res = await fetch(`${url}${p}`);
    if (!res.ok) throw new Error(`Orthanc GET ${p}: HTTP ${res.status}`);
    return (await res.json()) as T;
  };
  const stop = async () => {
    if (exited === undefined) {
      child.kill("SIGTERM");
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, 10_000);
        child.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== undefined) {
      await stop();
      throw new Error(`Orthanc exited (${exited}) while starting:\n${output.slice(-3000) || o.logFile}`);
    }
    try {
      await get("/system");
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`Orthanc did not answer on ${url} within 60 s:\n${output.slice(-3000) || o.logFile}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return {
    httpPort: o.httpPort,
    dicomPort: o.dicomPort,
    aeTitle,
    url,
    dicomweb: `${url}/dicom-web`,
    get,
    async file(id) {
      const res = await fetch(`${url}/instances/${id}/file`);
      if (!res.ok) throw new Error(`Orthanc instance file: HTTP ${res.status}`);
      return Buffer.from(await res.arrayBuffer());
    },
    log: () => output,
    pid: child.pid,
    detach: () => child.unref(),
    stop,
  };
}
