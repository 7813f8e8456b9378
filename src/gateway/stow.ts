// DICOMweb STOW-RS (PS3.18 10.5): POST /studies and POST /studies/{StudyInstanceUID} with
// multipart/related; type="application/dicom". Each part is streamed to storage like a C-STORE
// data set and goes through the same checks and journal; the answer is the Store Instances
// Response Module in DICOM JSON — ReferencedSOPSequence for what was stored, FailedSOPSequence
// with a FailureReason per instance that was not — with 200 (all stored), 202 (some failed),
// 409 (none stored), 400 (unreadable request) or 415 (not application/dicom).
import http from "node:http";
import type { AddressInfo } from "node:net";
import { logger } from "../log/logger.ts";
import type { Assembler } from "./assembler.ts";
import { type AuditRecorder, peerAddress, TransferAudit } from "./audit.ts";
import { bytesReceived, instances, storageErrors, stowUnauthorized } from "./metrics.ts";
import { MultipartError, parseContentType, readMultipart } from "./multipart.ts";
import type { Refusal } from "./security-alerts.ts";
import { STATUS, type StudyStorage } from "./storage.ts";
import type { BearerTokens } from "./stow-auth.ts";

const log = logger("gateway");

export interface StowOptions {
  port: number;
  host?: string;
  storage: StudyStorage;
  assembler: Assembler;
  /** CloudEvents/AE context for STOW-RS studies (no AE titles: the sender is an HTTP client). */
  maxParts?: number;
  /** PS3.15 transfer records; none when unset. */
  audit?: AuditRecorder;
  /** Bearer tokens a request must present; anyone may store when unset. */
  auth?: BearerTokens;
  /** A refused client, for its Security Alert (src/gateway/security-alerts.ts). */
  refused?: (r: Omit<Refusal, "service">) => void;
}

export interface StowServer {
  readonly port: number;
  close(): Promise<void>;
}

interface InstanceResult {
  ok: boolean;
  sopClassUID?: string;
  sopInstanceUID?: string;
  studyInstanceUID?: string;
  failureReason?: number;
}

type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

/** The Store Instances Response Module (PS3.18 Table 10.5.3-2) and its HTTP status. */
export function stowResponse(results: readonly InstanceResult[]): { status: number; body: DicomJson } {
  const stored = results.filter((r) => r.ok);
  const failed = results.filter((r) => !r.ok);
  const ref = (r: InstanceResult): DicomJson => ({
    ...(r.sopClassUID ? { "00081150": { vr: "UI", Value: [r.sopClassUID] } } : {}),
    ...(r.sopInstanceUID ? { "00081155": { vr: "UI", Value: [r.sopInstanceUID] } } : {}),
  });
  const body: DicomJson = {};
  if (failed.length) {
    body["00081198"] = {
      vr: "SQ",
      Value: failed.map((r) => ({
        ...ref(r),
        "00081197": { vr: "US", Value: [r.failureReason ?? STATUS.processingFailure] },
      })),
    };
  }
  if (stored.length) body["00081199"] = { vr: "SQ", Value: stored.map(ref) };
  const status = results.length === 0 ? 400 : failed.length === 0 ? 200 : stored.length === 0 ? 409 : 202;
  return { status, body };
}

const MAX_INFLIGHT_COMMITS = 4;
const STUDIES = /^(?:\/[^/?]+)*\/studies(?:\/([0-9.]{1,64}))?\/?$/;

export async function startStow(o: StowOptions): Promise<StowServer> {
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = (req.url ?? "/").split("?")[0] ?? "/";
    const m = STUDIES.exec(url);
    const send = (status: number, body: unknown, type = "application/dicom+json") =>
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" }).end(JSON.stringify(body));
    const problem = (status: number, detail: string) => {
      // the rest of the body is not read: close the connection instead of draining it
      res.setHeader("connection", "close");
      send(status, { detail }, "application/json");
    };
    if (o.auth) {
      const a = await o.auth.check(req.headers.authorization);
      if (!a.ok) {
        stowUnauthorized.inc();
        const address = peerAddress(req.socket.remoteAddress);
        o.refused?.({ reason: "stow-token", ...(address ? { address } : {}) });
        res.setHeader("www-authenticate", a.challenge);
        return problem(a.status, a.detail);
      }
    }
    if (!m) return problem(404, "not found: STOW-RS is POST /studies or /studies/{StudyInstanceUID}");
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return problem(405, "STOW-RS takes POST");
    }
    const ct = parseContentType(req.headers["content-type"]);
    if (ct.type !== "multipart/related") return problem(415, "Content-Type must be multipart/related");
    const partType = (ct.params.get("type") ?? "application/dicom").toLowerCase();
    if (partType !== "application/dicom") {
      return problem(415, `multipart/related type ${partType} is not supported; send application/dicom`);
    }
    const boundary = ct.params.get("boundary");
    if (!boundary) return problem(400, "multipart/related without a boundary");
    const studyUID = m[1];

    const transfer = o.audit
      ? new TransferAudit(o.audit, { protocol: "stow", address: peerAddress(req.socket.remoteAddress) })
      : undefined;
    const results: InstanceResult[] = [];
    const pending: Promise<void>[] = [];
    let inflight = 0;
    try {
      await readMultipart(
        req,
        boundary,
        (headers) => {
          const t = parseContentType(headers.get("content-type") ?? "application/dicom").type;
          if (t !== "application/dicom") {
            results.push({ ok: false, failureReason: STATUS.cannotUnderstand });
            instances.inc({ protocol: "stow", outcome: "invalid" });
            return { write() {}, end() {}, abort() {} };
          }
          const f = o.storage.begin();
          const slot = results.push({ ok: false }) - 1;
          return {
            write: (b) =>
              new Promise<void>((resolve) => {
                if (f.write(b)) resolve();
                else f.once("drain", () => resolve());
              }),
            end: async () => {
              // committing (fsync, checks, journal) runs while the next part is read, a few at
              // a time: a fast client must not pile up thousands of open files and buffers
              inflight++;
              const p = storeOne(o, f, studyUID, transfer).then((r) => {
                results[slot] = r;
                inflight--;
              });
              pending.push(p);
              if (inflight >= MAX_INFLIGHT_COMMITS) await p;
            },
            abort: () => f.discard(),
          };
        },
        { maxParts: o.maxParts ?? 10_000 },
      );
    } catch (e) {
      await Promise.allSettled(pending);
      transfer?.end("request body malformed or cut");
      if (e instanceof MultipartError) {
        // instances stored before the break stay stored (they are journaled); say which
        const { body } = stowResponse(results);
        res.setHeader("connection", "close");
        return send(400, { ...body, detail: e.message });
      }
      throw e;
    }
    await Promise.all(pending);
    transfer?.end();
    const { status, body } = stowResponse(results);
    send(status, body);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: Error) => {
      log.error({ err: e.message }, "STOW-RS request failed");
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ detail: "internal error" }));
    });
  });
  server.requestTimeout = 0; // a study upload may take long; the socket timeout catches stalled ones
  server.timeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`STOW-RS server on port ${o.port}: ${e.message}`)));
    server.listen(o.port, o.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

async function storeOne(
  o: StowOptions,
  f: ReturnType<StudyStorage["begin"]>,
  studyUID: string | undefined,
  transfer: TransferAudit | undefined,
): Promise<InstanceResult> {
  const r = await o.storage.commit(f, studyUID ? { studyInstanceUID: studyUID } : {});
  if (!r.ok) {
    transfer?.refused(r.subject, r.outcome);
    instances.inc({ protocol: "stow", outcome: r.outcome });
    if (r.outcome === "out-of-resources") storageErrors.inc();
    log.warn({ outcome: r.outcome, reason: r.reason }, "STOW-RS instance refused");
    return { ok: false, failureReason: r.status, sopClassUID: r.sopClassUID, sopInstanceUID: r.sop };
  }
  try {
    await o.assembler.add(r.instance);
  } catch (e) {
    storageErrors.inc();
    instances.inc({ protocol: "stow", outcome: "out-of-resources" });
    log.warn({ err: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, "journal write failed");
    transfer?.refused(r.subject, "out-of-resources");
    return {
      ok: false,
      failureReason: STATUS.outOfResources,
      sopClassUID: r.instance.sopClassUID,
      sopInstanceUID: r.instance.sop,
    };
  }
  transfer?.stored(r.subject, r.instance.sopClassUID);
  instances.inc({ protocol: "stow", outcome: "stored" });
  bytesReceived.inc({ protocol: "stow" }, r.instance.bytes);
  return {
    ok: true,
    sopClassUID: r.instance.sopClassUID,
    sopInstanceUID: r.instance.sop,
    studyInstanceUID: r.instance.study,
  };
}
