// Results back to PACS, against peers nobody here wrote: Orthanc (Debian's, with its DICOMweb
// plugin) is the PACS, dcmtk's storescu sends the study to the gateway and to Orthanc (the PACS
// already holds the study, as in a hospital), dcmtk's dsrdump and dcmdump read what arrived. The
// InferenceTasks live in the test cluster's API server; their results go out through the real
// results path (publishResults → radflow.task.export) to `radflow gateway --export`, which sends
// and records each outcome in the task's status.exports and in the audit trail (PS3.15 Export
// records on radflow.audit.InstancesExported). dcmtk's storescp with TLS is the destination that
// speaks DICOM TLS; a forwarding step sends a study to Orthanc unchanged.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import dcmjs from "dcmjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InferenceTask } from "../../src/api/v1alpha1/inferencetask.ts";
import { AUDIT_STREAM } from "../../src/audit/pipeline.ts";
import { derivedUID } from "../../src/export/sr.ts";
import { studyLocation } from "../../src/gateway/storage.ts";
import { buildResultEvents, publishResults } from "../../src/ingest/results.ts";
import { ensureStreams } from "../../src/ingest/streams.ts";
import { mergePatch } from "../../src/kube/client.ts";
import { createDestination } from "../support/e2e.ts";
import { GatewayProcess, storescu, writeFiles, writeSeg } from "../support/gateway-process.ts";
import { dumpHeld, type Orthanc, orthancAvailable, pacsInstances, startOrthanc } from "../support/orthanc.ts";
import { TestPki } from "../support/test-pki.ts";
import { makeStudy } from "../unit/gateway/dicom-fixture.ts";
import { batch, core as coreApi, custom, kubeconfigPath, natsUrl, useNamespace, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const BASE = Number(process.env.RADFLOW_EXPORT_TEST_PORT_BASE ?? 24100);
const PORTS = {
  orthancDicom: BASE + 10,
  orthancHttp: BASE + 11,
  down: BASE + 19,
  gwDicom: BASE + 20,
  gwMetrics: BASE + 22,
  tls: BASE + 23,
};
const RUN = `1.2.826.0.1.3680043.10.1099.7${Date.now() % 1e9}`;
const G = { group: "radflow.io", version: "v1alpha1" };
const hasDcmtk = spawnSync("storescu", ["--version"], { stdio: "ignore" }).status === 0;
const ready = orthancAvailable() && hasDcmtk;
if (!ready)
  process.stderr.write("export.test.ts: needs orthanc, orthanc-dicomweb and dcmtk (hack/deps.sh installs them)\n");

/** dcmtk's storescu to 127.0.0.1:port (as CT_EAST to RADFLOW unless told), failing with its stderr when it fails. */
function send(port: number, files: string[], o: { calling?: string; called?: string } = {}): void {
  const r = storescu(port, files, o);
  if (r.status !== 0) throw new Error(`storescu to ${port} failed (${r.status}):\n${r.stderr}`);
}

describe.skipIf(!ready)("exports to a PACS (Orthanc)", () => {
  const ns = useNamespace("export");
  // the forwarding workflow's own namespace: the operator watches only it
  const fwdNs = useNamespace("export-fwd");
  const work = mkdtempSync(path.join(tmpdir(), "rf-export-it-"));
  const study = `${RUN}.1`;
  const forwarded = `${RUN}.2`; // a study only the gateway received: forwarded to the PACS
  const forwardedFiles: Buffer[] = makeStudy(forwarded, 2, 2, { patientName: "ROE^RICHARD" });
  const tlsDir = path.join(work, "storescp");
  let storescp: ChildProcess | undefined;
  let operator: OperatorProcess | undefined;
  let storescpLog = "";
  let orthanc: Orthanc;
  const gw = new GatewayProcess({
    storage: path.join(work, "store"),
    ports: { dicom: PORTS.gwDicom, http: 0, metrics: PORTS.gwMetrics },
    natsUrl: natsUrl(),
    args: [
      ...["--ae-title", "RADFLOW", "--quiet-seconds", "1", "--audit", "fhir"],
      ...["--export", "--kubeconfig", kubeconfigPath(), "--export-attempts", "3", "--export-backoff-seconds", "1"],
    ],
    env: { RADFLOW_PHI_HMAC_KEY: "export-test-key-0123456789" },
  });
  const pki = new TestPki(path.join(work, "pki"));
  let nc: NatsConnection;

  beforeAll(async () => {
    mkdirSync(gw.storage, { recursive: true });
    nc = await connect({ servers: natsUrl() });
    await ensureStreams(await jetstreamManager(nc));
    orthanc = await startOrthanc({ httpPort: PORTS.orthancHttp, dicomPort: PORTS.orthancDicom });
    await gw.start();

    // the study: two CT series, sent by storescu to the gateway (which stores it where steps
    // read it) and to the PACS (which holds it before any result arrives)
    const files = writeFiles(path.join(work, "study"), makeStudy(study, 2, 2, { patientName: "DOE^JANE" }));
    send(PORTS.gwDicom, files);
    send(PORTS.orthancDicom, files, { called: "ORTHANC" });

    const dest = (name: string, spec: Record<string, unknown>) => createDestination(ns.name, name, spec);
    await dest("pacs", {
      dimse: { host: "127.0.0.1", port: PORTS.orthancDicom, calledAETitle: "ORTHANC", callingAETitle: "RADFLOW" },
      timeoutSeconds: 20,
      checkIntervalSeconds: 5,
    });
    await dest("pacs-web", { dicomweb: { url: orthanc.dicomweb }, timeoutSeconds: 20, checkIntervalSeconds: 5 });
    await dest("pacs-down", {
      dimse: { host: "127.0.0.1", port: PORTS.down, calledAETitle: "NOBODY" },
      timeoutSeconds: 5,
      checkIntervalSeconds: 5,
    });

    // the forwarded study reaches the gateway only
    send(PORTS.gwDicom, writeFiles(path.join(work, "forwarded"), forwardedFiles));

    // DICOM TLS: a test CA signs storescp's certificate (127.0.0.1) and radflow's client
    // certificate (storescp requires one); another CA signs nothing the peer holds
    mkdirSync(tlsDir);
    pki.ca("ca");
    pki.ca("other-ca");
    pki.cert("pacs", "pacs", "subjectAltName=IP:127.0.0.1");
    pki.cert("radflow", "radflow", "extendedKeyUsage=clientAuth");
    storescp = spawn(
      "storescp",
      [
        "+tls",
        pki.file("pacs.key"),
        pki.file("pacs.crt"),
        "+cf",
        pki.file("ca.crt"),
        "-rc",
        "-od",
        tlsDir,
        "-aet",
        "TLS_PACS",
        String(PORTS.tls),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    storescp.stdout?.on("data", (d) => {
      storescpLog = (storescpLog + d).slice(-20_000);
    });
    storescp.stderr?.on("data", (d) => {
      storescpLog = (storescpLog + d).slice(-20_000);
    });
    const core = coreApi();
    await core.createNamespacedConfigMap({
      namespace: ns.name,
      body: { metadata: { name: "pacs-ca" }, data: { "ca.crt": pki.pem("ca.crt") } },
    });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: { metadata: { name: "other-ca" }, stringData: { "ca.crt": pki.pem("other-ca.crt") } },
    });
    await core.createNamespacedSecret({
      namespace: ns.name,
      body: {
        metadata: { name: "radflow-client" },
        type: "kubernetes.io/tls",
        stringData: { "tls.crt": pki.pem("radflow.crt"), "tls.key": pki.pem("radflow.key") },
      },
    });
    const tlsDimse = { host: "127.0.0.1", port: PORTS.tls, calledAETitle: "TLS_PACS", callingAETitle: "RADFLOW" };
    await dest("pacs-tls", {
      dimse: {
        ...tlsDimse,
        tls: { caConfigMapKeyRef: { name: "pacs-ca" }, clientCertificateSecretName: "radflow-client" },
      },
      timeoutSeconds: 20,
      checkIntervalSeconds: 5,
    });
    await dest("pacs-tls-wrong-ca", {
      dimse: {
        ...tlsDimse,
        tls: { caSecretKeyRef: { name: "other-ca", key: "ca.crt" }, clientCertificateSecretName: "radflow-client" },
      },
      timeoutSeconds: 20,
      checkIntervalSeconds: 5,
    });
  }, 300_000);

  afterAll(async () => {
    await gw.stop();
    await operator?.stop();
    await orthanc?.stop();
    if (storescp && storescp.exitCode === null) {
      const p = storescp;
      const done = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await done;
    }
    await nc?.drain().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  });

  /** Creates a task in the API server, marks it Succeeded with the step's outputs, publishes its results. */
  async function finishedTask(
    name: string,
    step: Record<string, unknown>,
    outputs: Record<string, unknown>,
    stepPhase = "Succeeded",
    o: { forward?: boolean; study?: string } = {},
  ): Promise<InferenceTask> {
    const uid = o.study ?? study;
    // a forwarding step has no image and runs no Job: the operator marks it Succeeded (Forwarding)
    const first = o.forward
      ? { name: "detect", ...step }
      : { name: "detect", image: "registry.example.org/ich-triage:1.4", ...step };
    const created = (await custom().createNamespacedCustomObject({
      ...G,
      namespace: ns.name,
      plural: "inferencetasks",
      body: {
        apiVersion: "radflow.io/v1alpha1",
        kind: "InferenceTask",
        metadata: { name },
        spec: {
          workflowRef: { name: "head-ct", uid: "wf-uid", generation: 1 },
          priority: "stat",
          steps: [first],
          storage: { pvc: { claimName: "studies" } },
          study: {
            studyInstanceUID: uid,
            location: studyLocation(uid),
            series: [{ seriesInstanceUID: `${uid}.1`, modality: "CT", numberOfInstances: 2 }],
          },
          eventId: `ev-${name}`,
        },
      },
    })) as InferenceTask;
    const now = new Date().toISOString();
    const patched = (await custom().patchNamespacedCustomObjectStatus(
      {
        ...G,
        namespace: ns.name,
        plural: "inferencetasks",
        name,
        body: {
          status: {
            phase: "Succeeded",
            completionTime: now,
            steps: [{ name: "detect", phase: stepPhase, outputs, ...(o.forward ? { reason: "Forwarding" } : {}) }],
          },
        },
      },
      mergePatch,
    )) as InferenceTask;
    const task = InferenceTask.parse({ ...created, status: patched.status });
    await publishResults(jetstream(nc), task, { monaiExport: false });
    return task;
  }

  const exportsOf = async (name: string) =>
    (
      (await custom().getNamespacedCustomObject({
        ...G,
        namespace: ns.name,
        plural: "inferencetasks",
        name,
      })) as InferenceTask
    ).status?.exports ?? [];

  async function settled(name: string, n = 1) {
    return waitFor(`${n} finished export(s) on ${name}`, 90_000, async () => {
      const e = await exportsOf(name);
      return { done: e.length >= n && e.every((x) => x.phase !== "Pending"), value: e, seen: e };
    });
  }

  /** Orthanc's instances of the study, with their SOP Instance UID and modality. */
  const pacsStudy = (which = study) => pacsInstances(orthanc, which);

  type ExportAudit = {
    id: string;
    body: {
      type: { code: string };
      action: string;
      outcome: string;
      outcomeDesc?: string;
      agent: {
        type: { coding: { code: string }[] };
        who: { display?: string };
        altId?: string;
        network?: { address: string };
      }[];
      entity?: { what: { identifier?: { value: string } }; role: { code: string } }[];
    };
  };
  /** Every InstancesExported record in RADFLOW_AUDIT for a task uid, by Nats-Msg-Id (one per stored message). */
  async function exportAudits(taskUid: string): Promise<ExportAudit[]> {
    const c = await jetstream(nc).consumers.get(AUDIT_STREAM, {
      filter_subjects: ["radflow.audit.InstancesExported"],
      deliver_policy: DeliverPolicy.All,
    });
    const out: ExportAudit[] = [];
    for (;;) {
      const m = await c.next({ expires: 1500 });
      if (!m) break;
      const id = m.headers?.get("Nats-Msg-Id") ?? "";
      if (id.startsWith(`${taskUid}:`)) out.push({ id, body: m.json() });
      if (m.info.pending === 0) break;
    }
    return out;
  }

  it("a positive finding without model files becomes an SR in the study, sent by C-STORE and readable by dsrdump", async () => {
    const t = await finishedTask(
      "bleed-yes",
      { export: [{ destination: "pacs", when: "outputs.bleed == true" }] },
      { bleed: true, score: 0.93, finding: "intraparenchymal hemorrhage" },
    );
    const [e] = await settled("bleed-yes");
    expect(e, gw.log.slice(-3000)).toMatchObject({
      step: "detect",
      destination: "pacs",
      phase: "Sent",
      reason: "StructuredReport",
      instances: 1,
    });
    const sop = derivedUID("radflow-sr", t.metadata.uid as string, "detect");
    const held = await pacsStudy();
    expect(held.filter((i) => i.sop.startsWith(`${study}.`))).toHaveLength(4); // the source study, as sent
    const sr = held.find((i) => i.sop === sop);
    expect(sr?.modality).toBe("SR");
    const { file, text: dump } = await dumpHeld(orthanc, sr, work);
    expect(dump).toContain("Comprehensive SR Document");
    expect(dump).toContain("DOE^JANE"); // the patient, copied from the received headers
    expect(dump).toMatch(/"bleed"\)=\(373066001,SCT,"Yes"\)/);
    expect(dump).toMatch(/"score"\)="0.93"/);
    expect(dump).toContain('"Device Observer Model Name")="registry.example.org/ich-triage:1.4"');
    // the SR names every source instance as its evidence
    expect(
      execFileSync("dcmdump", [file])
        .toString()
        .match(/ReferencedSOPInstanceUID/g),
    ).toHaveLength(4);

    // a crash between send and record redelivers the request: it is sent again, and the PACS
    // still holds one SR (same SOP Instance UID, same bytes)
    const [request] = buildResultEvents(t).filter((m) => m.kind === "export");
    await jetstream(nc).publish(request?.subject as string, JSON.stringify(request?.event), {
      msgID: `redelivery-${RUN}`,
    });
    await waitFor("the redelivered export recorded", 60_000, async () => {
      const [again] = await exportsOf("bleed-yes");
      return { done: again?.lastAttemptTime !== e?.lastAttemptTime && again?.phase === "Sent", seen: again };
    });
    const after = await pacsStudy();
    expect(after.filter((i) => i.sop === sop)).toHaveLength(1);
    expect(after).toHaveLength(held.length);

    // audited as a PS3.15 Export once, though sent twice: the record's id is the outcome's
    const uid = t.metadata.uid as string;
    const audits = await waitFor("the export's audit record", 30_000, async () => {
      const a = await exportAudits(uid);
      return { done: a.length >= 1, value: a, seen: a.map((x) => x.id) };
    });
    expect(audits.map((a) => a.id)).toEqual([`${uid}:export:detect:pacs:Sent`]);
    const [rec] = audits;
    expect(rec?.body).toMatchObject({ type: { code: "110106" }, action: "R", outcome: "0" });
    const role = (code: string) => rec?.body.agent.find((a) => a.type.coding.some((c) => c.code === code));
    expect(role("110152")).toMatchObject({ altId: "AETITLES=ORTHANC", network: { address: "127.0.0.1" } });
    expect(role("110154")?.who.display).toBe(`/apis/radflow.io/v1alpha1/namespaces/${ns.name}/dicomdestinations/pacs`);
    expect(role("110153")?.who.display).toBe("radflow-gateway");
    // the study and the patient (PID-GW-1, from the SR's header) as participant objects
    expect(rec?.body.entity?.map((e) => [e.role.code, e.what.identifier?.value])).toEqual([
      ["3", `urn:oid:${study}`],
      ["1", "PID-GW-1"],
      ["20", `${ns.name}/bleed-yes`],
    ]);
    // and no identifier of the study in the gateway's log
    expect(gw.log).not.toContain(study);
    expect(gw.log).not.toContain("PID-GW-1");
  });

  it("the model's own DICOM file (a SEG) goes to the study by STOW-RS", async () => {
    const name = "seg-web";
    const out = path.join(gw.storage, "results", name, "detect");
    const segUID = `${RUN}.9.1`;
    writeSeg(out, { study, series: `${RUN}.9`, sop: segUID });
    writeFileSync(path.join(out, "volumes.json"), "{}"); // not DICOM: not sent
    await finishedTask(name, { export: [{ destination: "pacs-web" }] }, { volumeMl: 12.5 });
    const [e] = await settled(name);
    expect(e, gw.log.slice(-3000)).toMatchObject({ phase: "Sent", reason: "ModelFiles", instances: 1 });
    const seg = (await pacsStudy()).find((i) => i.sop === segUID);
    expect(seg?.modality).toBe("SEG");
    expect((await dumpHeld(orthanc, seg, work)).text).toContain("SegmentationStorage");
  });

  it("a false `when` sends nothing and the task says Skipped", async () => {
    const t = await finishedTask(
      "bleed-no",
      { export: [{ destination: "pacs", when: "outputs.bleed == true" }] },
      { bleed: false, score: 0.02 },
    );
    const [e] = await settled("bleed-no");
    expect(e).toMatchObject({ destination: "pacs", phase: "Skipped", reason: "WhenFalse" });
    const sop = derivedUID("radflow-sr", t.metadata.uid as string, "detect");
    expect((await pacsStudy()).some((i) => i.sop === sop)).toBe(false);
  });

  it("a destination that is down is retried, then the export is Failed (never Sent), and the destination not Reachable", async () => {
    await finishedTask("pacs-down", { export: [{ destination: "pacs-down" }] }, { bleed: true });
    const retrying = await waitFor("a Pending retry", 60_000, async () => {
      const [e] = await exportsOf("pacs-down");
      return { done: e?.phase === "Pending" || e?.phase === "Failed", value: e, seen: e };
    });
    expect(["Pending", "Failed"]).toContain(retrying?.phase);
    const [e] = await settled("pacs-down");
    expect(e).toMatchObject({ phase: "Failed", reason: "SendFailed", attempts: 3 });
    expect(e?.message).toMatch(/after 3 attempts/);
    const reach = async (name: string) =>
      (
        (await custom().getNamespacedCustomObject({ ...G, namespace: ns.name, plural: "dicomdestinations", name })) as {
          status?: { conditions?: { type: string; status: string }[] };
        }
      ).status?.conditions?.find((c) => c.type === "Reachable")?.status;
    await waitFor("destination checks", 60_000, async () => {
      const r = [await reach("pacs"), await reach("pacs-web"), await reach("pacs-down")];
      return { done: r.join() === "True,True,False", seen: r };
    });
  });

  it("an unknown destination is a clear Failed export", async () => {
    await finishedTask("nowhere", { export: [{ destination: "no-such-pacs" }] }, { bleed: true });
    const [e] = await settled("nowhere");
    expect(e).toMatchObject({ phase: "Failed", reason: "DestinationNotFound" });
  });
  it("a forwarding step (no model, no Job) sends the received study to the PACS unchanged: same SOP Instance UIDs, byte-identical pixel data", async () => {
    const t = await finishedTask("forward", { export: [{ destination: "pacs", content: "study" }] }, {}, "Succeeded", {
      forward: true,
      study: forwarded,
    });
    const [e] = await settled("forward");
    expect(e, gw.log.slice(-3000)).toMatchObject({ phase: "Sent", reason: "Study", instances: forwardedFiles.length });
    const held = await pacsStudy(forwarded);
    const pixels = (b: Buffer) => {
      const d = dcmjs.data.DicomMessage.readFile(
        b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer,
      );
      const px = d.dict["7FE00010"]?.Value?.[0] as ArrayBuffer;
      return { sop: d.dict["00080018"]?.Value?.[0] as string, pixels: Buffer.from(px) };
    };
    const sent = forwardedFiles.map(pixels);
    expect(held.map((h) => h.sop).sort()).toEqual(sent.map((x) => x.sop).sort());
    for (const h of held) {
      const got = pixels(await orthanc.file(h.id));
      const want = sent.find((x) => x.sop === got.sop);
      expect(want && Buffer.compare(got.pixels, want.pixels)).toBe(0);
    }
    const [rec] = await exportAudits(t.metadata.uid as string);
    expect(rec?.body.outcomeDesc).toMatch(/4 instance\(s\) sent \(content study\)/);
  });

  it("DICOM TLS: with the right CA (and radflow's client certificate) the export reaches storescp; with another CA it fails with a clear reason", async () => {
    await finishedTask("tls-ok", { export: [{ destination: "pacs-tls", content: "sr" }] }, { bleed: true });
    await finishedTask(
      "tls-wrong-ca",
      { export: [{ destination: "pacs-tls-wrong-ca", content: "sr" }] },
      { bleed: true },
    );
    const [ok] = await settled("tls-ok");
    expect(ok, `${gw.log.slice(-3000)}\n${storescpLog.slice(-2000)}`).toMatchObject({ phase: "Sent", instances: 1 });
    expect(readdirSync(tlsDir)).toHaveLength(1); // storescp wrote the SR it received over TLS
    const [bad] = await settled("tls-wrong-ca");
    expect(bad).toMatchObject({ phase: "Failed", reason: "TLSHandshakeFailed", attempts: 3 });
    expect(bad?.message).toMatch(/TLS_PACS@127\.0\.0\.1:\d+: TLS handshake failed: .*certificate/i);
    // the periodic C-ECHO says the same on the destinations
    const reach = async (name: string) =>
      (
        (await custom().getNamespacedCustomObject({ ...G, namespace: ns.name, plural: "dicomdestinations", name })) as {
          status?: { conditions?: { type: string; status: string; message?: string }[] };
        }
      ).status?.conditions?.find((c) => c.type === "Reachable");
    await waitFor("TLS destination checks", 60_000, async () => {
      const r = [await reach("pacs-tls"), await reach("pacs-tls-wrong-ca")];
      return { done: r.map((c) => c?.status).join() === "True,False", value: r, seen: r };
    });
    expect((await reach("pacs-tls-wrong-ca"))?.message).toMatch(/certificate/i);
  });
  // the operator starts a Node process and reads the stream's backlog: minutes on a loaded machine
  it("a forwarding workflow end to end: storescu → gateway → operator (the step runs no Job) → export → Orthanc holds the study", {
    timeout: 600_000,
  }, async () => {
    const third = `${RUN}.3`;
    await createDestination(fwdNs.name, "archive", {
      dimse: { host: "127.0.0.1", port: PORTS.orthancDicom, calledAETitle: "ORTHANC", callingAETitle: "RADFLOW" },
      timeoutSeconds: 20,
      checkIntervalSeconds: 300,
    });
    await custom().createNamespacedCustomObject({
      ...G,
      namespace: fwdNs.name,
      plural: "aiworkflows",
      body: {
        apiVersion: "radflow.io/v1alpha1",
        kind: "AIWorkflow",
        metadata: { name: "forward-mr" },
        spec: {
          trigger: { sources: { callingAETitles: ["MR_WEST"] } },
          steps: [{ name: "forward", export: [{ destination: "archive", content: "study" }] }],
        },
      },
    });
    operator = startOperator({ namespace: fwdNs.name, nats: true, args: ["--leader-elect=false"] });
    const op = operator;
    await waitFor("the workflow Ready", 240_000, async () => {
      const wf = (await custom().getNamespacedCustomObject({
        ...G,
        namespace: fwdNs.name,
        plural: "aiworkflows",
        name: "forward-mr",
      })) as { status?: { conditions?: { type: string; status: string }[] } };
      const ready = wf.status?.conditions?.find((c) => c.type === "Ready")?.status;
      return { done: ready === "True", seen: `${ready} ${op.logs().slice(-400)}` };
    });
    const files = writeFiles(path.join(work, "third"), makeStudy(third, 2, 1, { patientName: "POE^EDGAR" }));
    send(PORTS.gwDicom, files, { calling: "MR_WEST" });
    type Task = InferenceTask & { status?: { exports?: { phase: string; reason?: string; instances?: number }[] } };
    const task = await waitFor("the forwarding task's export", 240_000, async () => {
      const list = (await custom().listNamespacedCustomObject({
        ...G,
        namespace: fwdNs.name,
        plural: "inferencetasks",
      })) as {
        items: Task[];
      };
      const t = list.items.find((i) => i.spec.study.studyInstanceUID === third);
      const e = t?.status?.exports?.[0];
      return {
        done: !!e && e.phase !== "Pending",
        value: t,
        seen: `${t?.status?.phase} ${JSON.stringify(e)} ${op.logs().slice(-300)}`,
      };
    });
    expect(task?.status?.phase).toBe("Succeeded");
    expect(task?.status?.steps).toMatchObject([{ name: "forward", phase: "Succeeded", reason: "Forwarding" }]);
    expect(task?.status?.steps?.[0]?.jobName).toBeUndefined();
    expect(task?.status?.exports, gw.log.slice(-2000)).toMatchObject([
      { step: "forward", destination: "archive", phase: "Sent", reason: "Study", instances: 2 },
    ]);
    // no Job was ever made for the task
    expect((await batch().listNamespacedJob({ namespace: fwdNs.name })).items).toEqual([]);
    const held = await pacsStudy(third);
    expect(held.map((h) => h.sop).sort()).toEqual([`${third}.1.1`, `${third}.2.1`]);
  });
});
