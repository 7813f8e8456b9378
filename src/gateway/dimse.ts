// The DIMSE side of the gateway: a C-ECHO and C-STORE SCP on dcmjs-dimse. Associations are
// checked against the AE allow-lists; storage SOP classes are accepted with the transfer syntax
// the sender proposed first (no transcoding). Each C-STORE's data set is streamed to a temporary
// file as its fragments arrive (memory stays at a PDU or two, whatever the instance's size), and
// the response is sent only after the file is flushed, checked, in the study tree and in the
// journal.
import type { Socket } from "node:net";
import type { Writable } from "node:stream";
import dimse from "dcmjs-dimse";
import { logger } from "../log/logger.ts";
import { type AEPolicy, checkAssociation } from "./ae-policy.ts";
import type { Assembler } from "./assembler.ts";
import { type AuditRecorder, peerAddress, TransferAudit } from "./audit.ts";
import { activeAssociations, associations, bytesReceived, instances, storageErrors } from "./metrics.ts";
import { encodeFileMeta } from "./part10.ts";
import type { Refusal } from "./security-alerts.ts";
import { type IncomingFile, STATUS, type StudyStorage } from "./storage.ts";

const { Server, Scp, Dataset } = dimse;
const { CEchoResponse, CStoreResponse } = dimse.responses;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason, SopClass } = dimse.constants;

// dcmjs-dimse logs every PDU at info, with AE titles and, on errors, data-set details: radflow
// reports what matters itself
dimse.log.setLevel("silent");

const log = logger("gateway");

type Association = Parameters<InstanceType<typeof Scp>["associationRequested"]>[0];
type StoreRequest = Parameters<InstanceType<typeof Scp>["cStoreRequest"]>[0];
type PresentationContext = Parameters<InstanceType<typeof Scp>["createStoreWritableStream"]>[0];

/** Storage SOP classes live under this root (PS3.4 B.5); all of them are taken as sent. */
const STORAGE_ROOT = "1.2.840.10008.5.1.4.1.1.";
/** Standard transfer syntaxes (PS3.5 A, PS3.6 A): native, deflated, JPEG family, RLE, MPEG, HTJ2K… */
const STANDARD_TS = /^1\.2\.840\.10008\.1\.2(\.[0-9.]+)?$/;

/** The transfer syntax to accept for a context: the first standard one the sender proposed. */
export function chooseTransferSyntax(proposed: readonly string[]): string | undefined {
  return proposed.find((ts) => STANDARD_TS.test(ts));
}

export interface DimseOptions {
  port: number;
  host?: string;
  policy: AEPolicy;
  storage: StudyStorage;
  assembler: Assembler;
  /** Largest PDU we accept (bytes). */
  maxPduLength?: number;
  /** PS3.15 transfer records; none when unset. */
  audit?: AuditRecorder;
  /** DICOM TLS (PS3.15 B.1, BCP 195: TLS 1.2 or later) on the DIMSE port; plain TCP when unset. */
  tls?: DimseTls;
  /** A refused node, for its Security Alert (src/gateway/security-alerts.ts). */
  refused?: (r: Omit<Refusal, "service">) => void;
}

export interface DimseTls {
  cert: Buffer;
  key: Buffer;
  /** CA bundle for client certificates: when given, a sender must present one it signed. */
  ca?: Buffer;
}

export interface DimseServer {
  readonly port: number;
  /** Stops listening, waits up to graceMs for open associations, then closes them. */
  close(graceMs?: number): Promise<void>;
}

export async function startDimse(o: DimseOptions): Promise<DimseServer> {
  // one Scp per connection; the class closes over the gateway's parts
  class GatewayScp extends Scp {
    private association?: Association;
    private readonly incoming = new WeakMap<object, IncomingFile>();
    private counted = false;
    private readonly address?: string;
    private transfer?: TransferAudit;
    /** C-STOREs being committed: the transfer record waits for them. */
    private readonly storing = new Set<Promise<unknown>>();
    private released = false;

    constructor(socket: Socket, opts?: ConstructorParameters<typeof Scp>[1]) {
      super(socket, opts);
      this.address = peerAddress(socket.remoteAddress);
      this.on("close", () => {
        if (this.counted) activeAssociations.dec();
        this.counted = false;
        const t = this.transfer;
        if (t) {
          const interruption = this.released ? undefined : "association aborted";
          void Promise.allSettled([...this.storing]).then(() => t.end(interruption));
        }
      });
    }

    override associationRequested(a: Association): void {
      this.association = a;
      const d = checkAssociation(o.policy, a.getCallingAeTitle(), a.getCalledAeTitle());
      if (!d.ok) {
        associations.inc({ outcome: d.reason === "calling-ae" ? "rejected-calling-ae" : "rejected-called-ae" });
        log.warn({ reason: d.reason }, "association rejected: AE title not allowed");
        o.refused?.({
          reason: d.reason === "calling-ae" ? "calling-ae" : "called-ae",
          ...(this.address ? { address: this.address } : {}),
          callingAETitle: a.getCallingAeTitle().trim(),
        });
        this.sendAssociationReject(
          RejectResult.Permanent,
          RejectSource.ServiceUser,
          d.reason === "calling-ae" ? RejectReason.CallingAeNotRecognized : RejectReason.CalledAeNotRecognized,
        );
        return;
      }
      if (o.maxPduLength) a.setMaxPduLength(o.maxPduLength);
      for (const { context } of a.getPresentationContexts()) {
        const sop = context.getAbstractSyntaxUid();
        if (sop !== SopClass.Verification && !sop.startsWith(STORAGE_ROOT)) {
          context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
          continue;
        }
        const ts = chooseTransferSyntax(context.getTransferSyntaxUids());
        if (ts) context.setResult(PresentationContextResult.Accept, ts);
        else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
      }
      associations.inc({ outcome: "accepted" });
      if (o.audit) {
        this.transfer = new TransferAudit(o.audit, {
          protocol: "dimse",
          callingAETitle: a.getCallingAeTitle().trim(),
          calledAETitle: a.getCalledAeTitle().trim(),
          address: this.address,
        });
      }
      activeAssociations.inc();
      this.counted = true;
      this.sendAssociationAccept();
    }

    override associationReleaseRequested(): void {
      associations.inc({ outcome: "released" });
      this.released = true;
      this.sendAssociationReleaseResponse();
    }

    override abort(): void {
      associations.inc({ outcome: "aborted" });
    }

    override cEchoRequest(request: Parameters<InstanceType<typeof Scp>["cEchoRequest"]>[0], cb: (r: never) => void) {
      const r = CEchoResponse.fromRequest(request);
      r.setStatus(STATUS.success);
      cb(r as never);
    }

    // the data set goes to a file as it arrives, behind the Part-10 meta the C-STORE implies
    override createStoreWritableStream(ctx: PresentationContext, request: StoreRequest): Writable {
      const f = o.storage.begin(
        encodeFileMeta({
          sopClassUID: request.getAffectedSopClassUid(),
          sopInstanceUID: request.getAffectedSopInstanceUid(),
          transferSyntaxUID: ctx.getAcceptedTransferSyntaxUid() ?? "1.2.840.10008.1.2",
          sourceAETitle: this.association?.getCallingAeTitle().trim(),
        }),
      );
      this.incoming.set(request, f);
      return f;
    }

    // the library wants a Dataset for cStoreRequest; ours stays on disk, so hand it an empty one
    override createDatasetFromStoreWritableStream(
      _w: Writable,
      ctx: PresentationContext,
      cb: (d: InstanceType<typeof Dataset>) => void,
    ): void {
      cb(new Dataset({}, ctx.getAcceptedTransferSyntaxUid()));
    }

    override cStoreRequest(request: StoreRequest, cb: (r: never) => void): void {
      const respond = (status: number) => {
        const r = CStoreResponse.fromRequest(request);
        r.setStatus(status);
        cb(r as never);
      };
      const f = this.incoming.get(request);
      if (!f) {
        // the data set arrived without our stream (cannot happen with dcmjs-dimse 0.3): refuse, never guess
        instances.inc({ protocol: "dimse", outcome: "invalid" });
        respond(STATUS.processingFailure);
        return;
      }
      this.incoming.delete(request);
      const p = this.store(f, request).then(respond, (e: Error) => {
        log.error({ err: e.message }, "C-STORE failed");
        respond(STATUS.processingFailure);
      });
      this.storing.add(p);
      void p.finally(() => this.storing.delete(p));
    }

    private async store(f: IncomingFile, request: StoreRequest): Promise<number> {
      const r = await o.storage.commit(f, {
        sopInstanceUID: request.getAffectedSopInstanceUid(),
        sopClassUID: request.getAffectedSopClassUid(),
      });
      if (!r.ok) {
        this.transfer?.refused(r.subject, r.outcome);
        instances.inc({ protocol: "dimse", outcome: r.outcome });
        if (r.outcome === "out-of-resources") storageErrors.inc();
        log.warn({ outcome: r.outcome, reason: r.reason, status: r.status.toString(16) }, "C-STORE refused");
        return r.status;
      }
      try {
        await o.assembler.add({
          ...r.instance,
          callingAETitle: this.association?.getCallingAeTitle().trim(),
          calledAETitle: this.association?.getCalledAeTitle().trim(),
        });
      } catch (e) {
        // the file is in place but the journal could not take it: not acknowledged, the sender retries
        storageErrors.inc();
        instances.inc({ protocol: "dimse", outcome: "out-of-resources" });
        log.warn({ err: (e as NodeJS.ErrnoException).code ?? (e as Error).message }, "journal write failed");
        this.transfer?.refused(r.subject, "out-of-resources");
        return STATUS.outOfResources;
      }
      this.transfer?.stored(r.subject, r.instance.sopClassUID);
      instances.inc({ protocol: "dimse", outcome: "stored" });
      bytesReceived.inc({ protocol: "dimse" }, r.instance.bytes);
      return STATUS.success;
    }
  }

  const server = new Server(GatewayScp as unknown as typeof Scp);
  server.on("networkError", (e: Error) => log.debug({ err: e.message }, "DICOM network error"));
  // Server.listen has no callback: bind, then find the port from its net.Server
  server.listen(o.port, {
    associationTimeout: 30_000,
    pduTimeout: 60_000,
    ...(o.tls
      ? {
          securityOptions: {
            cert: o.tls.cert,
            key: o.tls.key,
            minVersion: "TLSv1.2",
            // with a CA, the node authentication of the DICOM TLS profiles: no certificate, no association
            ...(o.tls.ca ? { ca: o.tls.ca, requestCert: true, rejectUnauthorized: true } : {}),
          },
        }
      : {}),
  });
  const net = (server as unknown as { server?: import("node:net").Server }).server;
  if (net && !net.listening) {
    await new Promise<void>((resolve, reject) => {
      net.once("listening", resolve);
      net.once("error", reject);
    });
  }
  // a sender without an acceptable certificate never reaches associationRequested: count it here
  // a refused handshake's socket is closed by the time its error comes, and a closed socket no
  // longer knows its peer: read the address as the connection arrives (Node keeps it once read)
  if (o.tls) net?.on("connection", (raw: Socket) => void raw.remoteAddress);
  net?.on("tlsClientError", (e: Error, socket?: Socket & { _parent?: Socket }) => {
    associations.inc({ outcome: "rejected-tls" });
    log.warn({ err: e.message }, "DICOM TLS handshake refused");
    const address = peerAddress(socket?.remoteAddress ?? socket?._parent?.remoteAddress);
    o.refused?.({ reason: "tls-handshake", ...(address ? { address } : {}) });
  });
  const addr = net?.address();
  const port = addr && typeof addr === "object" ? addr.port : o.port;
  return {
    port,
    // stop taking associations, let open ones finish (a sender mid-study gets its responses),
    // then cut what is left: an instance not yet acknowledged is the sender's to resend
    close: async (graceMs = 10_000) => {
      net?.close();
      const open = () =>
        ((server as unknown as { clients?: { connected?: boolean }[] }).clients ?? []).filter((c) => c.connected)
          .length;
      const end = Date.now() + graceMs;
      while (open() > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      server.close();
    },
  };
}
