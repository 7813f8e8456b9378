// Sending instances to a destination and checking that it answers: DIMSE C-STORE / C-ECHO SCU
// (dcmjs-dimse) and DICOMweb STOW-RS / an HTTP GET (fetch). A send resolves with what the
// destination said for each instance; a transport failure (refused, timeout, rejected
// association) throws SendError. Error texts name the destination's endpoint, never study data.
import { readFile } from "node:fs/promises";
import dimse from "dcmjs-dimse";
import type { DICOMDestinationSpec } from "../api/v1alpha1/dicomdestination.ts";
import type { Instance } from "./instances.ts";
import { RawDataset } from "./raw-dataset.ts";

const { Client } = dimse;
const { CStoreRequest, CEchoRequest } = dimse.requests;
dimse.log.setLevel("silent");

export class SendError extends Error {
  /** the status.exports reason when the attempts run out (SendFailed unless something more exact is known) */
  readonly reason: string;
  constructor(message: string, reason = "SendFailed") {
    super(message);
    this.reason = reason;
  }
}

export interface Credentials {
  username?: string;
  password?: string;
  token?: string;
  /** DICOM TLS towards a DIMSE destination: PEM CA (undefined: the system's), client cert and key */
  tls?: { ca?: string; cert?: string; key?: string };
}

// Node's TLS and X.509 verification error codes: a handshake that failed on trust, not on the network
const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|ERR_OSSL_)/;
// dcmjs-dimse re-wraps socket errors without their code ("<AE> -> Connection error: <Node's text>"):
// Node's verification texts say certificate, altnames or a TLS alert
const TLS_TEXT = /certificate|altnames|ssl|tls alert|handshake/i;

export interface SendResult {
  sent: number;
  failed: number;
  /** stored with a warning status (0001, Bxxx: e.g. coerced or elements discarded) */
  warnings?: number;
  /** the first failure's status or reason, for the task's message */
  detail?: string;
}

type Dimse = NonNullable<DICOMDestinationSpec["dimse"]>;

/** Runs requests on one association; resolves with each request's status (undefined: none came). */
function associate(
  d: Dimse,
  requests: InstanceType<typeof CStoreRequest | typeof CEchoRequest>[],
  timeoutMs: number,
  tls?: Credentials["tls"],
): Promise<(number | undefined)[]> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const statuses: (number | undefined)[] = requests.map(() => undefined);
    requests.forEach((r, i) => {
      r.on("response", (res: { getStatus(): number }) => {
        statuses[i] = res.getStatus();
      });
      client.addRequest(r);
    });
    let failure: string | undefined;
    let reason: string | undefined;
    const timer = setTimeout(() => {
      failure ??= `no answer within ${timeoutMs} ms`;
      client.abort();
    }, timeoutMs);
    client.on("networkError", (e: NodeJS.ErrnoException) => {
      const trust = d.tls !== undefined && (TLS_CODE.test(e.code ?? "") || TLS_TEXT.test(e.message));
      if (!failure && trust) reason = "TLSHandshakeFailed";
      const text = e.message.replace(/^.*? -> Connection error: /, "");
      failure ??= `${trust ? "TLS handshake failed" : "network error"}: ${text}${e.code && trust ? ` (${e.code})` : ""}`;
    });
    client.on("associationRejected", (r: { result: number; source: number; reason: number }) => {
      failure ??= `association rejected (result ${r.result}, source ${r.source}, reason ${r.reason})`;
    });
    client.on("closed", () => {
      clearTimeout(timer);
      if (failure && statuses.every((s) => s === undefined))
        reject(new SendError(`${d.calledAETitle}@${d.host}:${d.port}: ${failure}`, reason));
      else resolve(statuses);
    });
    client.send(d.host, d.port, d.callingAETitle ?? "RADFLOW", d.calledAETitle, {
      connectTimeout: timeoutMs,
      associationTimeout: timeoutMs,
      pduTimeout: timeoutMs,
      ...(d.tls
        ? {
            securityOptions: {
              ...(tls?.ca ? { ca: tls.ca } : {}),
              ...(tls?.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
              rejectUnauthorized: true,
              minVersion: "TLSv1.2",
            },
          }
        : {}),
    });
    // one request waits for its response before the next: without TCP_NODELAY, Nagle's algorithm
    // holds each request's last segment back for the peer's delayed ACK (~40 ms per instance on Linux)
    (client as unknown as { network?: { socket?: { setNoDelay?(on: boolean): void } } }).network?.socket?.setNoDelay?.(
      true,
    );
  });
}

const hex = (n: number | undefined) => (n === undefined ? "none" : n.toString(16).toUpperCase().padStart(4, "0"));
// 0000 success; 0001 and Bxxx are warnings (stored, with a remark)
const stored = (s: number | undefined) => s !== undefined && (s === 0 || s === 1 || (s & 0xf000) === 0xb000);

async function storeDimse(
  d: Dimse,
  instances: Instance[],
  timeoutMs: number,
  tls?: Credentials["tls"],
): Promise<SendResult> {
  // each data set leaves as its file holds it (src/export/raw-dataset.ts), not re-encoded
  const requests = instances.map(
    (inst) => new CStoreRequest(inst.kind === "file" ? RawDataset.ofFile(inst.path) : RawDataset.ofBytes(inst.bytes)),
  );
  const statuses = await associate(d, requests, timeoutMs, tls);
  const bad = statuses.filter((s) => !stored(s));
  const warnings = statuses.filter((s) => stored(s) && s !== 0).length;
  return {
    sent: statuses.length - bad.length,
    failed: bad.length,
    ...(warnings ? { warnings } : {}),
    ...(bad.length ? { detail: `C-STORE status ${hex(bad[0])}` } : {}),
  };
}

function authHeader(c: Credentials | undefined): Record<string, string> {
  if (c?.token) return { authorization: `Bearer ${c.token}` };
  if (c?.username !== undefined)
    return { authorization: `Basic ${Buffer.from(`${c.username}:${c.password ?? ""}`).toString("base64")}` };
  return {};
}

async function storeStow(
  url: string,
  instances: Instance[],
  timeoutMs: number,
  creds?: Credentials,
): Promise<SendResult> {
  const boundary = `radflow-${Math.random().toString(36).slice(2)}`;
  const parts: Uint8Array[] = [];
  for (const inst of instances) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`));
    parts.push(inst.kind === "file" ? await readFile(inst.path) : inst.bytes);
    parts.push(Buffer.from("\r\n"));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  const target = `${url.replace(/\/+$/, "")}/studies`;
  let res: Response;
  try {
    res = await fetch(target, {
      method: "POST",
      headers: {
        "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`,
        accept: "application/dicom+json",
        ...authHeader(creds),
      },
      body: Buffer.concat(parts),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new SendError(`${target}: ${(e as Error).message}`);
  }
  const text = await res.text().catch(() => "");
  if (res.status >= 500 || res.status === 401 || res.status === 403 || res.status === 404 || res.status === 415)
    throw new SendError(`${target}: HTTP ${res.status}`);
  // PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none
  let failed = 0;
  try {
    const body = JSON.parse(text) as Record<string, { Value?: unknown[] }>;
    failed = body["00081198"]?.Value?.length ?? 0;
  } catch {
    if (res.status !== 200) failed = instances.length;
  }
  if (res.status === 409) failed = Math.max(failed, instances.length);
  if (res.status === 202 && failed === 0) failed = 1;
  failed = Math.min(failed, instances.length);
  return {
    sent: instances.length - failed,
    failed,
    ...(failed ? { detail: `STOW-RS HTTP ${res.status}` } : {}),
  };
}

/** Sends the instances; throws SendError when the destination could not be reached. */
export async function sendInstances(
  spec: DICOMDestinationSpec,
  instances: Instance[],
  creds?: Credentials,
): Promise<SendResult> {
  const timeoutMs = (spec.timeoutSeconds ?? 60) * 1000;
  if (spec.dimse) return storeDimse(spec.dimse, instances, timeoutMs, creds?.tls);
  if (spec.dicomweb) return storeStow(spec.dicomweb.url, instances, timeoutMs, creds);
  throw new SendError("the destination has neither dimse nor dicomweb");
}

/** C-ECHO or an HTTP GET of the base URL's /studies (QIDO-RS, one result): undefined when it answers. */
export async function checkDestination(spec: DICOMDestinationSpec, creds?: Credentials): Promise<string | undefined> {
  const timeoutMs = Math.min((spec.timeoutSeconds ?? 60) * 1000, 30_000);
  try {
    if (spec.dimse) {
      const [status] = await associate(spec.dimse, [new CEchoRequest()], timeoutMs, creds?.tls);
      return status === 0 ? undefined : `C-ECHO status ${hex(status)}`;
    }
    if (spec.dicomweb) {
      const target = `${spec.dicomweb.url.replace(/\/+$/, "")}/studies?limit=1`;
      const res = await fetch(target, {
        headers: { accept: "application/dicom+json", ...authHeader(creds) },
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body?.cancel();
      return res.ok ? undefined : `HTTP ${res.status} from ${target.replace(/\?.*$/, "")}`;
    }
    return "neither dimse nor dicomweb";
  } catch (e) {
    return (e as Error).message;
  }
}
