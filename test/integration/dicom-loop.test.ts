// The whole DICOM loop in one file, each part the real thing: dcmtk's storescu (or a STOW-RS
// client) sends a multi-series study — files dcmtk made (dump2dcm) and the real ones pydicom ships,
// moved into the study with dcmtk's dcmodify — to `radflow gateway`; its study event reaches
// `radflow operator` (a child process) through JetStream; the task's step runs as a Job on a KWOK
// node (KWOK plays the model: its termination message is KWOK_RESULT, and the harness writes a
// SEG into the step's output folder, or nothing, as a model would); the results go out through
// `radflow gateway --export` to Orthanc (Debian's, as the PACS), which then holds the result in
// the same study — read back through Orthanc's REST API, the SR by dsrdump, the SEG by dcmdump.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import type { InferenceTask } from "../../src/api/v1alpha1/inferencetask.ts";
import { derivedUID } from "../../src/export/sr.ts";
import { ensureStreams, STREAM } from "../../src/ingest/streams.ts";
import {
  createDestination,
  createWorkflow,
  freePort,
  listTasks,
  type Nats,
  natsConnect,
  numericRunId,
  releaseTasks,
  uniqueAE,
} from "../support/e2e.ts";
import { ingesting } from "../support/e2e-run.ts";
import { GatewayProcess, pydicomFiles, storescu, writeSeg } from "../support/gateway-process.ts";
import { dumpHeld, type Orthanc, orthancAvailable, pacsInstances, startOrthanc } from "../support/orthanc.ts";
import { custom, kubeconfigPath, natsUrl, useNamespace, waitFor } from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const BASE = Number(process.env.RADFLOW_DICOM_LOOP_PORT_BASE ?? 24400);
const PORTS = { orthancDicom: BASE, orthancHttp: BASE + 1, dicom: BASE + 2, http: BASE + 3, metrics: BASE + 4 };
const RUN = numericRunId();
const ROOT_UID = `1.2.826.0.1.3680043.10.1099.8${RUN.slice(-8)}`;
const SUBJECT = `radflow.study.dicom-loop.${RUN}`;
const G = { group: "radflow.io", version: "v1alpha1" };
const PATIENT = { name: "DOE^JANE", id: "PID-LOOP-1" };

const missing = ["storescu", "dump2dcm", "dcmodify", "dcmdump", "dsrdump"].filter(
  (t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0,
);
const ready = missing.length === 0 && orthancAvailable();
if (!ready) process.stderr.write("dicom-loop.test.ts: needs dcmtk, orthanc and orthanc-dicomweb (hack/deps.sh)\n");

/** A small CT image made by dcmtk's dump2dcm (Explicit VR Little Endian, with File Meta). */
function dcmtkInstance(file: string, o: { study: string; series: string; sop: string; description: string }) {
  const dump = [
    "(0008,0016) UI [1.2.840.10008.5.1.4.1.1.2]",
    `(0008,0018) UI [${o.sop}]`,
    "(0008,0020) DA [20260301]",
    "(0008,0050) SH [ACC-LOOP-1]",
    "(0008,0060) CS [CT]",
    `(0008,103e) LO [${o.description}]`,
    `(0010,0010) PN [${PATIENT.name}]`,
    `(0010,0020) LO [${PATIENT.id}]`,
    "(0018,0015) CS [HEAD]",
    `(0020,000d) UI [${o.study}]`,
    `(0020,000e) UI [${o.series}]`,
    "(0020,0013) IS [1]",
    "(0028,0002) US 1",
    "(0028,0004) CS [MONOCHROME2]",
    "(0028,0010) US 2",
    "(0028,0011) US 2",
    "(0028,0100) US 16",
    "(0028,0101) US 12",
    "(0028,0102) US 11",
    "(0028,0103) US 0",
    "(7fe0,0010) OW 0000\\0400\\0800\\0c00",
  ].join("\n");
  writeFileSync(`${file}.txt`, dump);
  execFileSync("dump2dcm", ["+te", `${file}.txt`, file]);
  rmSync(`${file}.txt`);
  return file;
}

/** A copy of one of pydicom's files moved into the study (dcmtk's dcmodify rewrites the UIDs and the patient). */
function pydicomInto(
  file: string,
  from: string,
  o: { study: string; series: string; sop: string; description: string },
) {
  writeFileSync(file, readFileSync(from));
  execFileSync("dcmodify", [
    "-nb",
    ...["-m", `(0020,000d)=${o.study}`, "-m", `(0020,000e)=${o.series}`, "-m", `(0008,0018)=${o.sop}`],
    ...["-m", `(0010,0010)=${PATIENT.name}`, "-m", `(0010,0020)=${PATIENT.id}`],
    ...["-i", `(0008,103e)=${o.description}`],
    file,
  ]);
  return file;
}

/** A STOW-RS request body of Part-10 files. */
function multipart(files: string[], boundary: string): Buffer {
  return Buffer.concat([
    ...files.map((f) =>
      Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`),
        readFileSync(f),
        Buffer.from("\r\n"),
      ]),
    ),
    Buffer.from(`--${boundary}--\r\n`),
  ]);
}

describe.skipIf(!ready)("the DICOM loop: modality → gateway → operator → step on KWOK → export → PACS", () => {
  const ns = useNamespace("dicom-loop");
  const work = mkdtempSync(path.join(tmpdir(), "rf-dicom-loop-"));
  const ae = uniqueAE("LOOP");
  let nats: Nats;
  let orthanc: Orthanc;
  let op: OperatorProcess;
  const gw = new GatewayProcess({
    storage: path.join(work, "volume"),
    ports: { dicom: PORTS.dicom, http: PORTS.http, metrics: PORTS.metrics },
    natsUrl: natsUrl(),
    args: [
      ...["--ae-title", ae, "--subject", SUBJECT, "--quiet-seconds", "1", "--audit", "off"],
      ...["--export", "--kubeconfig", kubeconfigPath(), "--export-attempts", "3", "--export-backoff-seconds", "1"],
      ...["--monai-export", "monaiscu", "--monai-export-namespace", ns.name],
    ],
    env: { RADFLOW_NAMESPACES: "" },
  });
  let py: string[] = [];

  beforeAll(async () => {
    const found = pydicomFiles();
    if ("files" in found) py = found.files;
    mkdirSync(gw.storage, { recursive: true });
    nats = await natsConnect("dicom-loop");
    // md.export.request.> in RADFLOW_RESULTS, as the operator's --monai keeps it
    await ensureStreams(nats.jsm, { monai: true });
    orthanc = await startOrthanc({ httpPort: PORTS.orthancHttp, dicomPort: PORTS.orthancDicom });
    await gw.start();
    op = startOperator({
      namespace: ns.name,
      nats: true,
      args: ["--leader-elect=false", "--monai", "--metrics-port", String(await freePort())],
    });
    await ingesting(op, 120_000);
    const dest = (name: string, spec: Record<string, unknown>) => createDestination(ns.name, name, spec);
    await dest("pacs", {
      dimse: { host: "127.0.0.1", port: PORTS.orthancDicom, calledAETitle: "ORTHANC", callingAETitle: "RADFLOW" },
      timeoutSeconds: 20,
    });
    await dest("pacs-web", { dicomweb: { url: orthanc.dicomweb }, timeoutSeconds: 20 });
    await dest("pacs-monai", {
      dimse: { host: "127.0.0.1", port: PORTS.orthancDicom, calledAETitle: "ORTHANC" },
      timeoutSeconds: 20,
    });
  }, 360_000);

  afterAll(async () => {
    await op?.kill().catch(() => undefined);
    await releaseTasks(ns.name);
    await gw.stop();
    await orthanc?.stop();
    if (nats) {
      await nats.jsm.consumers.delete(STREAM.studies, `op-${ns.name}`).catch(() => undefined);
      // the MONAI consumer's filter would keep an operator without --monai from updating the stream;
      // this run's requests go with it (a new consumer delivers the stream's history)
      await nats.jsm.consumers.delete(STREAM.results, "radflow-monai-export").catch(() => undefined);
      await nats.jsm.streams.purge(STREAM.results, { filter: "md.export.request.monaiscu" }).catch(() => undefined);
      await nats.jsm.streams.purge(STREAM.studies, { filter: SUBJECT }).catch(() => undefined);
      await nats.nc.drain();
    }
    rmSync(work, { recursive: true, force: true });
  });

  function logsOnFailure() {
    onTestFailed(() => {
      console.error(`--- gateway ---\n${gw.log.slice(-4000)}\n--- operator ---\n${op?.logs().slice(-4000)}`);
    });
  }

  /** The one task of a workflow, once it exists. */
  const taskOf = (workflow: string) =>
    waitFor(`the task of ${workflow}`, 180_000, async () => {
      const ts = await listTasks(ns.name, workflow);
      return { done: ts.length === 1, value: ts[0] as InferenceTask, seen: ts.length };
    });

  /** The task once every export of it is settled (not Pending). */
  const exported = (name: string) =>
    waitFor(`the exports of ${name}`, 240_000, async () => {
      const t = (await custom().getNamespacedCustomObject({
        ...G,
        namespace: ns.name,
        plural: "inferencetasks",
        name,
      })) as InferenceTask;
      const e = t.status?.exports ?? [];
      return {
        done: e.length > 0 && e.every((x) => x.phase !== "Pending"),
        value: t,
        seen: { phase: t.status?.phase, steps: t.status?.steps?.map((s) => s.phase), exports: e },
      };
    });

  /** Orthanc's instances of a study: SOP Instance UID and modality. */
  const pacsStudy = (study: string) => pacsInstances(orthanc, study);

  it("C-STORE in, C-STORE out: a three-series study from storescu comes back to the PACS as an SR in the same study", {
    timeout: 600_000,
  }, async (ctx) => {
    if (!py.length) return ctx.skip("pydicom's test files are not available (offline?)");
    logsOnFailure();
    const study = `${ROOT_UID}.1`;
    const dir = path.join(work, "dimse");
    mkdirSync(dir);
    const pyFile = (name: string) => py.find((f) => path.basename(f) === name) as string;
    const description = `loop dimse ${RUN}`;
    const files = [
      dcmtkInstance(path.join(dir, "a1.dcm"), { study, series: `${study}.1`, sop: `${study}.1.1`, description }),
      dcmtkInstance(path.join(dir, "a2.dcm"), { study, series: `${study}.1`, sop: `${study}.1.2`, description }),
      pydicomInto(path.join(dir, "ct.dcm"), pyFile("CT_small.dcm"), {
        study,
        series: `${study}.2`,
        sop: `${study}.2.1`,
        description,
      }),
      pydicomInto(path.join(dir, "mr.dcm"), pyFile("MR_small.dcm"), {
        study,
        series: `${study}.3`,
        sop: `${study}.3.1`,
        description,
      }),
    ];
    await createWorkflow(
      ns.name,
      "head-ct",
      ae,
      [
        {
          name: "detect",
          resources: { gpu: 0 },
          env: { KWOK_RESULT: '{"bleed":true,"score":0.91}', KWOK_RUN: "1s" },
          export: [{ destination: "pacs", when: "outputs.bleed == true" }],
        },
      ],
      { priority: "stat" },
    );
    await new Promise((r) => setTimeout(r, 1000)); // the operator's informer has the workflow, not only the API server
    // the PACS already holds the study (the modality sent it there too), as in a hospital
    const toPacs = storescu(PORTS.orthancDicom, files, { called: "ORTHANC" });
    expect(toPacs.status, toPacs.stderr).toBe(0);
    const sent = storescu(PORTS.dicom, files, { called: ae, extra: ["-v"] });
    expect(sent.status, sent.stderr).toBe(0);
    expect(sent.stderr.match(/Received Store Response \(Success\)/g)).toHaveLength(4);

    const task = await taskOf("head-ct");
    expect(task.spec.study.studyInstanceUID).toBe(study);
    expect(task.spec.study.series.map((s) => [s.modality, s.numberOfInstances])).toEqual([
      ["CT", 2],
      ["CT", 1],
      ["MR", 1],
    ]);
    const done = await exported(task.metadata.name as string);
    expect(done.status?.phase).toBe("Succeeded");
    expect(done.status?.exports).toMatchObject([
      { step: "detect", destination: "pacs", phase: "Sent", reason: "StructuredReport", instances: 1 },
    ]);

    const held = await pacsStudy(study);
    const sop = derivedUID("radflow-sr", task.metadata.uid as string, "detect");
    expect(held.map((i) => i.sop).sort()).toEqual(
      [`${study}.1.1`, `${study}.1.2`, `${study}.2.1`, `${study}.3.1`, sop].sort(),
    );
    const sr = held.find((i) => i.sop === sop);
    expect(sr?.modality).toBe("SR");
    const { file, text: dump } = await dumpHeld(orthanc, sr, work);
    expect(dump).toContain("Comprehensive SR Document");
    expect(dump).toContain(PATIENT.name); // copied from the received headers
    expect(dump).toMatch(/"bleed"\)=\(373066001,SCT,"Yes"\)/);
    expect(dump).toMatch(/"score"\)="0.91"/);
    // the SR names every received instance as its evidence
    expect(
      execFileSync("dcmdump", [file])
        .toString()
        .match(/ReferencedSOPInstanceUID/g),
    ).toHaveLength(4);
  });

  it("STOW-RS in, STOW-RS out: the model's SEG reaches the PACS in the same study", {
    timeout: 600_000,
  }, async (ctx) => {
    if (!py.length) return ctx.skip("pydicom's test files are not available (offline?)");
    logsOnFailure();
    const study = `${ROOT_UID}.2`;
    const dir = path.join(work, "stow");
    mkdirSync(dir);
    const description = `loop web ${RUN}`;
    const files = [
      dcmtkInstance(path.join(dir, "a1.dcm"), { study, series: `${study}.1`, sop: `${study}.1.1`, description }),
      pydicomInto(path.join(dir, "mr.dcm"), py.find((f) => path.basename(f) === "MR_small.dcm") as string, {
        study,
        series: `${study}.2`,
        sop: `${study}.2.1`,
        description,
      }),
    ];
    // a STOW-RS study has no AE titles: this workflow is routed by its series description
    await createWorkflow(ns.name, "lesion-seg", "NO-SUCH-AE", [], {
      trigger: { seriesDescriptionPattern: `^loop web ${RUN}$` },
      steps: [
        {
          name: "segment",
          image: "registry.example.org/models/segment:1.0",
          resources: { gpu: 0 },
          env: [
            { name: "KWOK_RESULT", value: '{"volumeMl":12.5}' },
            { name: "KWOK_RUN", value: "5s" },
          ],
          export: [{ destination: "pacs-web", content: "files" }],
        },
      ],
    });
    await new Promise((r) => setTimeout(r, 1000));
    const boundary = `loop-${RUN}`;
    const headers = { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` };
    const toPacs = await fetch(`${orthanc.dicomweb}/studies`, {
      method: "POST",
      headers,
      body: multipart(files, boundary),
    });
    expect(toPacs.status).toBe(200);
    const res = await fetch(`http://127.0.0.1:${PORTS.http}/studies`, {
      method: "POST",
      headers,
      body: multipart(files, boundary),
    });
    expect(res.status, await res.clone().text()).toBe(200);

    const task = await taskOf("lesion-seg");
    // the model writes its SEG where RADFLOW_OUTPUT_DIR points on the study volume
    const out = path.join(gw.storage, "results", task.metadata.name as string, "segment");
    const segUID = `${study}.9.1`;
    const written = writeSeg(out, { study, series: `${study}.9`, sop: segUID, patientName: PATIENT.name });
    execFileSync("dcmodify", ["-nb", "-m", `(0010,0020)=${PATIENT.id}`, written]);
    const done = await exported(task.metadata.name as string);
    expect(done.status?.exports).toMatchObject([
      { step: "segment", destination: "pacs-web", phase: "Sent", reason: "ModelFiles", instances: 1 },
    ]);
    const held = await pacsStudy(study);
    expect(held.map((i) => i.modality).sort()).toEqual(["CT", "MR", "SEG"]);
    const seg = held.find((i) => i.sop === segUID);
    expect((await dumpHeld(orthanc, seg, work)).text).toContain("SegmentationStorage");
  });

  it("a MONAI ExportRequestEvent (md.export.request.monaiscu) is sent to the destination of its MONAI name and answered with an ExportCompleteEvent", {
    timeout: 300_000,
  }, async () => {
    logsOnFailure();
    const study = `${ROOT_UID}.3`;
    // what a MONAI application wrote, relative to the volume (MONAI's paths are relative to its bucket)
    const rel = `monai/${RUN}`;
    const sop = `${study}.9.1`;
    writeSeg(path.join(gw.storage, rel), { study, series: `${study}.9`, sop });
    writeFileSync(path.join(gw.storage, rel, "notes.txt"), "not DICOM");
    const answers: Record<string, unknown>[] = [];
    const sub = nats.nc.subscribe("md.export.complete", {
      callback: (_e, m) => {
        answers.push(m.json<Record<string, unknown>>());
      },
    });
    const request = (id: string, files: string[], destinations: string[]) =>
      nats.js.publish(
        "md.export.request.monaiscu",
        JSON.stringify({
          workflow_instance_id: `wf-${RUN}`,
          export_task_id: id,
          files,
          destinations,
          correlation_id: `corr-${RUN}`,
          message_id: `${id}-${RUN}`,
          error_messages: [],
          plug_in_assemblies: [],
        }),
        { msgID: `${id}-${RUN}` },
      );
    try {
      const [one, two] = [`export-1-${RUN}`, `export-2-${RUN}`];
      await request(one, [`${rel}/seg.dcm`, `${rel}/notes.txt`, `${rel}/missing.dcm`], ["PACS-MONAI"]);
      await request(two, [rel], ["NO-SUCH-PACS"]);
      // (answers to another run's requests may come too: this run's are told by their ids)
      const byTask = await waitFor("two ExportCompleteEvents", 120_000, async () => {
        const mine = Object.fromEntries(answers.map((a) => [a.export_task_id, a]));
        return { done: !!mine[one] && !!mine[two], value: mine, seen: answers };
      });
      expect(byTask[one]).toMatchObject({
        workflow_instance_id: `wf-${RUN}`,
        status: "PartialFailure",
        export_request: "None",
        file_statuses: {
          [`${rel}/seg.dcm`]: "Success",
          [`${rel}/notes.txt`]: "UnsupportedDataType",
          [`${rel}/missing.dcm`]: "DownloadError",
        },
      });
      expect(byTask[two]).toMatchObject({ status: "Failure", file_statuses: { [rel]: "ConfigurationError" } });
      expect(String(byTask[two]?.message)).toContain("destination NO-SUCH-PACS");
      // the PACS holds the SEG, sent by C-STORE to the DICOMDestination pacs-monai
      const held = await pacsStudy(study);
      expect(held.map((i) => [i.sop, i.modality])).toEqual([[sop, "SEG"]]);
    } finally {
      sub.unsubscribe();
    }
  });
});
