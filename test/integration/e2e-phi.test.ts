// PHI end to end (docs/ARCHITECTURE.md §7): synthetic studies full of identifiers — patient names,
// IDs, birth dates, accession numbers, UIDs, institution, physician and station names, and
// descriptions that name the patient — go through `radflow send` (real DICOM files written by
// dcmtk's dump2dcm) and as CloudEvents, through workflows that succeed, fail, and have rules
// that cannot be evaluated. Then none of those identifiers may show in the operator's logs, its
// /metrics, the namespace's Kubernetes Events, the tasks' Jobs and Pods, the tasks themselves
// outside spec.study, or any NATS subject used meanwhile. They must still be where they belong:
// InferenceTask.spec.study, the event payloads and the audit records.
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Subscription } from "@nats-io/transport-node";
import { beforeAll, describe, expect, it } from "vitest";
import { DeadLetter, SUBJECT, type TaskResultEvent } from "../../src/api/v1alpha1/events.ts";
import { AUDIT_STREAM } from "../../src/audit/pipeline.ts";
import { STREAM } from "../../src/ingest/streams.ts";
import { writeImage } from "../support/dump2dcm.ts";
import { freePort, listJobs, listPods, sleep, studyEvent, uniqueAE } from "../support/e2e.ts";
import { ingesting, useE2ERun } from "../support/e2e-run.ts";
import { core, natsUrl, waitFor } from "./helpers.ts";
import type { OperatorProcess } from "./operator-process.ts";

const exec = promisify(execFile);
const dir = mkdtempSync(path.join(tmpdir(), "radflow-e2e-phi-"));
let subjects: Subscription | undefined;
const run = useE2ERun("e2e-phi", {
  cleanup: async () => {
    rmSync(dir, { recursive: true, force: true });
    subjects?.unsubscribe();
  },
});
const { ns, id: RUN, subject: STUDY_SUBJECT, uidRoot: UID_ROOT } = run;
const R8 = RUN.slice(-8);
const AE = uniqueAE("E2EP-");
const AE_FAIL = uniqueAE("E2EPF-");

// Two synthetic patients. Every value below is an identifier that must stay inside the allowed places.
const JANE = {
  name: "DOE^JANE",
  id: `PID${R8}J`,
  birth: "19580214",
  accession: `AJ${R8}`,
  institution: "Saint Quillon Memorial Hospital",
  physician: "HOUSE^GREGORY",
  station: `QSTN${R8.slice(-4)}`,
  studyDescription: "CT head for Jane Doe after fall",
  seriesDescription: "Doe Jane axial 5mm",
};
const ERIKA = {
  name: "MUSTERMANN^ERIKA",
  id: `PID${R8}E`,
  birth: "19630730",
  accession: `AE${R8}`,
  institution: "Klinikum Quellenberg",
  physician: "BRINKMANN^KLAUS",
  station: `QSTE${R8.slice(-4)}`,
  studyDescription: "Thorax CT Erika Mustermann",
  seriesDescription: "Mustermann lung 1mm",
};
type Patient = typeof JANE;
const uids = {
  sendJane: `${UID_ROOT}.1`,
  sendErika: `${UID_ROOT}.2`,
  eventJane: `${UID_ROOT}.3`,
  eventErika: `${UID_ROOT}.4`,
};
const accessions = {
  sendJane: JANE.accession,
  sendErika: ERIKA.accession,
  eventJane: `${JANE.accession}X`,
  eventErika: `${ERIKA.accession}X`,
};

/** What must not leak, with how to find it: exact text, or a whole word in any case. */
const identifiers: { label: string; find: RegExp }[] = [];
const literal = (label: string, s: string) =>
  identifiers.push({ label, find: new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")) });
const word = (label: string, s: string) => identifiers.push({ label, find: new RegExp(`\\b${s}\\b`, "i") });
for (const [who, p] of [
  ["Jane", JANE],
  ["Erika", ERIKA],
] as const) {
  literal(`${who}'s name`, p.name);
  for (const part of p.name.split("^")) word(`${who}'s name part`, part);
  literal(`${who}'s patient ID`, p.id);
  literal(`${who}'s birth date`, p.birth);
  literal(`${who}'s accession`, p.accession);
  literal(`${who}'s institution`, p.institution);
  literal(`${who}'s referring physician`, p.physician);
  for (const part of p.physician.split("^")) word(`${who}'s physician name part`, part);
  literal(`${who}'s station`, p.station);
  literal(`${who}'s study description`, p.studyDescription);
  literal(`${who}'s series description`, p.seriesDescription);
}
for (const [k, uid] of Object.entries(uids)) {
  literal(`study UID (${k})`, uid);
  literal(`series UID (${k})`, `${uid}.1`);
}
for (const [k, a] of Object.entries(accessions)) literal(`accession (${k})`, a);

interface Finding {
  where: string;
  identifier: string;
  context: string;
}
function scan(where: string, text: string): Finding[] {
  const out: Finding[] = [];
  for (const { label, find } of identifiers) {
    const m = find.exec(text);
    if (m) out.push({ where, identifier: label, context: text.slice(Math.max(0, m.index - 80), m.index + 80) });
  }
  return out;
}

let op: OperatorProcess | undefined;
const badSubjects: Finding[] = [];
let subjectsSeen = 0;

beforeAll(async () => {
  // every subject published on this server while the test runs (ours, the operator's, anyone's)
  subjects = run.nats.nc.subscribe(">", {
    callback: (_err, m) => {
      subjectsSeen++;
      for (const f of scan("NATS subject", m.subject)) badSubjects.push(f);
      if (m.reply) for (const f of scan("NATS reply subject", m.reply)) badSubjects.push(f);
    },
  });
});

/** A Part-10 CT file with the patient's identifiers, written by dcmtk's dump2dcm. */
function dicomFile(file: string, p: Patient, study: string, instance: number, bodyPart: string) {
  writeImage(file, [
    "(0008,0016) UI =CTImageStorage",
    `(0008,0018) UI [${study}.1.${instance}]`,
    "(0008,0020) DA [20250301]",
    `(0008,0050) SH [${accessionsOf(study)}]`,
    "(0008,0060) CS [CT]",
    `(0008,0080) LO [${p.institution}]`,
    `(0008,0090) PN [${p.physician}]`,
    `(0008,1010) SH [${p.station}]`,
    `(0008,1030) LO [${p.studyDescription}]`,
    `(0008,103e) LO [${p.seriesDescription}]`,
    `(0010,0010) PN [${p.name}]`,
    `(0010,0020) LO [${p.id}]`,
    `(0010,0030) DA [${p.birth}]`,
    "(0010,0040) CS [F]",
    `(0018,0015) CS [${bodyPart}]`,
    `(0020,000d) UI [${study}]`,
    `(0020,000e) UI [${study}.1]`,
    `(0020,0010) SH [${p.id.slice(-6)}]`,
  ]);
}
const accessionsOf = (study: string) => (study === uids.sendJane ? accessions.sendJane : accessions.sendErika);

function phiEvent(key: "eventJane" | "eventErika", p: Patient, ae: string) {
  return studyEvent({
    id: `e2e-phi-${RUN}-${key}`,
    studyInstanceUID: uids[key],
    accessionNumber: accessions[key],
    studyDescription: p.studyDescription,
    seriesDescription: p.seriesDescription,
    calledAETitle: ae,
    callingAETitle: "CT-PHI",
    bodyPart: "HEAD",
    attributes: {
      "00100010": { vr: "PN", Value: [{ Alphabetic: p.name }] },
      "00100020": { vr: "LO", Value: [p.id] },
      "00100030": { vr: "DA", Value: [p.birth] },
      "00080080": { vr: "LO", Value: [p.institution] },
      "00080090": { vr: "PN", Value: [{ Alphabetic: p.physician }] },
      "00081010": { vr: "SH", Value: [p.station] },
    },
  });
}

describe("PHI stays where it belongs", () => {
  it("keeps every identifier out of logs, metrics, Events, object metadata and NATS subjects", async () => {
    try {
      execFileSync("dump2dcm", ["--version"], { stdio: "ignore" });
    } catch {
      throw new Error("dump2dcm not found: install Debian's dcmtk (hack/deps.sh does)");
    }
    const metricsPort = await freePort();
    run.logsOnFailure();
    op = run.startOperator({ metricsPort });
    await ingesting(op);

    // a two-step reader whose second model runs on the first one's output
    await run.createWorkflow("phi-read", AE, [
      { name: "detect", env: { KWOK_RESULT: '{"finding":"none","score":0.1}' } },
      { name: "report", dependsOn: ["detect"], when: "steps.detect.outputs.finding == 'none'", resources: { gpu: 0 } },
    ]);
    // a model that fails
    await run.createWorkflow("phi-fail", AE_FAIL, [{ name: "classify", env: { KWOK_EXIT_CODE: "1" } }]);
    // rules that cannot be evaluated on these studies: CEL's error names the value it choked on
    await run.createWorkflow("phi-rule", AE, [{ name: "never" }], {
      trigger: { sources: { calledAETitles: [AE] }, expression: "int(study.accessionNumber) > 0" },
    });
    await run.createWorkflow("phi-when", AE, [
      { name: "triage", when: "int(study.accessionNumber) > 0 || study.studyDescription.startsWith('x')" },
    ]);
    await sleep(1000);
    const since = {
      results: await run.lastSeq(STREAM.results),
      dlq: await run.lastSeq(STREAM.dlq),
      audit: await run.lastSeq(AUDIT_STREAM),
    };

    // real DICOM files through `radflow send`
    const files = path.join(dir, "dicom");
    mkdirSync(files, { recursive: true });
    dicomFile(path.join(files, "jane-1.dcm"), JANE, uids.sendJane, 1, "HEAD");
    dicomFile(path.join(files, "jane-2.dcm"), JANE, uids.sendJane, 2, "HEAD");
    dicomFile(path.join(files, "erika-1.dcm"), ERIKA, uids.sendErika, 1, "CHEST");
    const sent = await exec(
      process.execPath,
      [
        "src/cmd/radflow.ts",
        "send",
        files,
        "--nats",
        natsUrl(),
        "--subject",
        STUDY_SUBJECT,
        "--calling-ae",
        "CT-PHI",
        "--called-ae",
        AE,
      ],
      { env: { ...process.env, RADFLOW_NATS_URL: "" } },
    );
    expect(sent.stderr).toMatch(/3 DICOM instances.* 2 studies; 2 events published/);

    // CloudEvents straight onto the stream, one of them invalid (its study UID is a name)
    const janeEvent = phiEvent("eventJane", JANE, AE);
    const erikaEvent = phiEvent("eventErika", ERIKA, AE_FAIL);
    for (const ev of [janeEvent, erikaEvent]) await run.publish(ev);
    const invalid = { ...phiEvent("eventJane", JANE, AE), id: `e2e-phi-${RUN}-invalid` };
    invalid.data = { ...invalid.data, studyInstanceUID: JANE.name };
    await run.publish(invalid);

    // 3 studies × (phi-read, phi-when) and 1 × phi-fail; phi-rule starts nothing
    const read = await run.tasksFinished("phi-read", 3, 180_000);
    const when = await run.tasksFinished("phi-when", 3, 60_000);
    const fail = await run.tasksFinished("phi-fail", 1, 180_000);
    const tasks = [...read, ...when, ...fail];
    expect(read.map((t) => t.status?.phase)).toEqual(["Succeeded", "Succeeded", "Succeeded"]);
    expect(fail[0]?.status?.phase).toBe("Failed");
    expect(await run.tasks("phi-rule")).toEqual([]);
    await waitFor("results of every task published", 60_000, async () => {
      const ts = await run.tasks();
      return { done: ts.length === 7 && ts.every((t) => t.status?.resultsPublished) };
    });
    await sleep(3000); // let Events, logs and audit records settle

    // Where the identifiers belong: spec.study (the scanner finds them there: it works) …
    const studyJson = JSON.stringify(tasks.map((t) => t.spec.study));
    const found = new Set(scan("spec.study", studyJson).map((f) => f.identifier));
    for (const must of ["study UID (sendJane)", "accession (sendErika)", "Jane's study description", "Erika's name"]) {
      expect(found, must).toContain(must);
    }
    // … the results events …
    const resultsJson = JSON.stringify(
      (await run.read(STREAM.results, ["radflow.task.>"], since.results))
        .map((m) => m.json<TaskResultEvent>())
        .filter((e) => e.data.task.namespace === ns.name),
    );
    for (const uid of Object.values(uids)) {
      expect(resultsJson).toContain(uid);
    }
    // … the DLQ record's payload (the event as it came), with a reason that holds none of it …
    const dead = (await run.read(STREAM.dlq, [SUBJECT.dlqStudy], since.dlq))
      .map((m) => DeadLetter.parse(m.json()))
      .filter((d) => d.subject === STUDY_SUBJECT);
    // the invalid event, and one trigger-error per valid study for phi-rule, whose rule cannot be evaluated
    const invalidDead = dead.filter((d) => d.reason !== "trigger-error");
    expect(invalidDead).toHaveLength(1);
    expect(dead.filter((d) => d.reason === "trigger-error")).toHaveLength(3);
    expect(Buffer.from(invalidDead[0]?.payload ?? "", "base64").toString()).toContain(JANE.name);
    const deadMeta = dead.map(({ payload: _raw, ...meta }) => meta);
    // … and the audit records
    const auditJson = (await run.read(AUDIT_STREAM, ["radflow.audit.>"], since.audit))
      .map((m) => m.string())
      .filter((s) => s.includes(`${ns.name}/`))
      .join("\n");
    expect(auditJson).toContain(uids.sendErika);
    expect(auditJson).toContain(accessions.eventJane);

    // Where they must not be
    const findings: Finding[] = [...badSubjects];
    findings.push(...scan("operator logs", op.logs()));
    findings.push(...scan("radflow send output", sent.stdout + sent.stderr));
    findings.push(...scan("/metrics", await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()));
    findings.push(...scan("DLQ record (outside its payload)", JSON.stringify(deadMeta)));
    const events = (await core().listNamespacedEvent({ namespace: ns.name })).items;
    for (const e of events) {
      findings.push(
        ...scan(`Event ${e.reason} on ${e.involvedObject.kind}/${e.involvedObject.name}`, JSON.stringify(e)),
      );
    }
    const meta = (kind: string, o: { metadata?: { name?: string; labels?: object; annotations?: object } }) =>
      scan(
        `${kind} ${o.metadata?.name} metadata`,
        JSON.stringify([o.metadata?.name, o.metadata?.labels, o.metadata?.annotations]),
      );
    for (const t of await run.tasks()) {
      findings.push(...meta("InferenceTask", t));
      const { study: _study, ...rest } = t.spec;
      findings.push(...scan(`InferenceTask ${t.metadata.name} spec (outside spec.study)`, JSON.stringify(rest)));
      findings.push(...scan(`InferenceTask ${t.metadata.name} status`, JSON.stringify(t.status)));
    }
    for (const j of await listJobs(ns.name, "")) {
      findings.push(...meta("Job", j));
      findings.push(...scan(`Job ${j.metadata?.name} spec and status`, JSON.stringify([j.spec, j.status])));
    }
    for (const p of await listPods(ns.name, "")) {
      findings.push(...meta("Pod", p));
      findings.push(...scan(`Pod ${p.metadata?.name} spec and status`, JSON.stringify([p.spec, p.status])));
    }
    expect(subjectsSeen).toBeGreaterThan(50); // the subscription did see the traffic
    console.info(
      `scanned ${op.logs().length} bytes of operator logs, ${events.length} Events, ${tasks.length} tasks with their Jobs and Pods, ` +
        `the subjects of ${subjectsSeen} NATS messages, for ${identifiers.length} identifiers`,
    );
    expect(findings).toEqual([]);
    expect(op.proc.exitCode).toBeNull();
    await op.stop();
  }, 420_000);
});
