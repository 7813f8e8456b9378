// The PS3.15 Export record of each export outcome (src/export/audit.ts): what it says, that its id
// makes a redelivered send one record, that the worker audits Sent and Failed and nothing else —
// and that the records pass the same judges as every other record: the DICOM audit schema
// (xmllint), the A.5.3.6 Export rules as XPath, and HL7's R4 checker (hack/tools/fhir-validator).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DICOMDestination } from "../../../src/api/v1alpha1/dicomdestination.ts";
import { InferenceTask } from "../../../src/api/v1alpha1/inferencetask.ts";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import { localAuditSource } from "../../../src/audit/source.ts";
import { destinationMediaId, exportAuditFact, exportSubject } from "../../../src/export/audit.ts";
import { instancesFor } from "../../../src/export/instances.ts";
import { planExports } from "../../../src/export/plan.ts";
import type { ExportRequestData } from "../../../src/export/request.ts";
import { describeAuditJudges } from "../audit/judges.ts";
import { failedRules, PATIENT_OBJECT, role, STUDY_OBJECT } from "../audit/xpath-rules.ts";
import { makeInstance } from "../gateway/dicom-fixture.ts";

const codes = defaultAuditCodes();
const SOURCE = localAuditSource({ application: "radflow-gateway", hostname: "radflow-gateway-0", processId: "7" });
const STUDY = "1.2.826.0.1.3680043.10.1099.88";
const T0 = new Date("2026-12-03T10:00:00.000Z");
const root = mkdtempSync(path.join(tmpdir(), "rf-export-audit-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function request(exp: Record<string, unknown>, outputs: Record<string, unknown> = {}): ExportRequestData {
  const t = InferenceTask.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: { name: "head-ct-1", namespace: "radiology", uid: "uid-7" },
    spec: {
      workflowRef: { name: "head-ct", uid: "w", generation: 1 },
      priority: "stat",
      steps: [{ name: "detect", image: "registry.example.org/ich:1", export: [exp] }],
      study: {
        studyInstanceUID: STUDY,
        accessionNumber: "ACC-EX-1",
        location: "studies/ex1",
        series: [{ seriesInstanceUID: `${STUDY}.1`, modality: "CT", numberOfInstances: 2 }],
      },
      eventId: "e",
    },
    status: { phase: "Succeeded", steps: [{ name: "detect", phase: "Succeeded", outputs }] },
  });
  const [m] = planExports(t);
  if (!m) throw new Error("no export planned");
  return m.event.data;
}

const dimse: DICOMDestination = {
  apiVersion: "radflow.io/v1alpha1",
  kind: "DICOMDestination",
  metadata: { name: "pacs", namespace: "radiology" },
  spec: {
    dimse: { host: "10.20.30.40", port: 104, calledAETitle: "PACS_MAIN", callingAETitle: "RADFLOW" },
    timeoutSeconds: 60,
    checkIntervalSeconds: 300,
  },
};
const web: DICOMDestination = {
  ...dimse,
  metadata: { name: "pacs-web", namespace: "radiology" },
  spec: { dicomweb: { url: "https://pacs.example.org/dicom-web" }, timeoutSeconds: 60, checkIntervalSeconds: 300 },
};

/** Sent by C-STORE (the study, forwarded), Sent with warnings, Failed by STOW-RS, Failed with no destination. */
async function facts(): Promise<Record<"sent" | "warned" | "failed" | "nowhere", AuditFact>> {
  const dir = path.join(root, "studies/ex1/s1");
  mkdirSync(dir, { recursive: true });
  for (const i of [1, 2])
    writeFileSync(
      path.join(dir, `${i}.dcm`),
      makeInstance({ study: STUDY, series: `${STUDY}.1`, sop: `${STUDY}.1.${i}` }),
    );
  const fwd = request({ destination: "pacs", content: "study" });
  const subject = await exportSubject(await instancesFor(root, fwd));
  const sent = { phase: "Sent" as const, reason: "Study", instances: 2 };
  const sr = request({ destination: "pacs" }, { bleed: true });
  const srSubject = await exportSubject(await instancesFor(root, sr));
  const failed = { phase: "Failed" as const, reason: "SendFailed", message: "after 5 attempts: HTTP 503" };
  const out = {
    sent: exportAuditFact(fwd, sent, { destination: dimse, subject, time: T0 }),
    warned: exportAuditFact(
      sr,
      { ...sent, reason: "StructuredReport", instances: 1 },
      {
        destination: dimse,
        subject: srSubject,
        warnings: 1,
        time: T0,
      },
    ),
    failed: exportAuditFact(request({ destination: "pacs-web" }), failed, { destination: web, time: T0 }),
    nowhere: exportAuditFact(
      request({ destination: "gone" }),
      { phase: "Failed", reason: "DestinationNotFound", message: "no DICOMDestination gone in namespace radiology" },
      { time: T0 },
    ),
  };
  for (const [k, v] of Object.entries(out)) if (!v) throw new Error(`no fact for ${k}`);
  return out as Record<keyof typeof out, AuditFact>;
}

describe("export audit facts", () => {
  it("Sent is a success, a warning status a minor failure, Failed a serious one; Skipped and Pending are not audited", async () => {
    const f = await facts();
    expect(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v.outcome]))).toEqual({
      sent: "success",
      warned: "minorFailure",
      failed: "seriousFailure",
      nowhere: "seriousFailure",
    });
    const r = request({ destination: "pacs" });
    expect(exportAuditFact(r, { phase: "Skipped", reason: "WhenFalse" }, { time: T0 })).toBeUndefined();
    expect(exportAuditFact(r, { phase: "Pending", reason: "Retrying" }, { time: T0 })).toBeUndefined();
  });

  it("names the gateway's destination node, the media, the study and the patient from the sent headers", async () => {
    const { sent, failed } = await facts();
    expect(sent).toMatchObject({
      kind: "InstancesExported",
      exportNode: { userId: "PACS_MAIN", aeTitle: "PACS_MAIN", address: "10.20.30.40" },
      destination: destinationMediaId("radiology", "pacs"),
      study: {
        studyInstanceUID: STUDY,
        accessionNumber: "ACC-EX-1",
        patientId: "PID-GW-1",
        sopClasses: [{ uid: "1.2.840.10008.5.1.4.1.1.2", instances: 2 }],
      },
      task: "head-ct-1",
      step: "detect",
    });
    expect(failed.exportNode).toEqual({ userId: "pacs.example.org", address: "pacs.example.org" });
    // the id holds no study data: the task's uid, the step, the destination and the outcome
    expect(sent.id).toBe("uid-7:export:detect:pacs:Sent");
    for (const v of Object.values(await facts())) {
      expect(v.id).not.toContain(STUDY);
      expect(v.description ?? "").not.toMatch(/PID|ACC|1\.2\.826/);
    }
  });

  it("a re-send after a crash gives the same id (the pipeline keeps one record)", async () => {
    const a = (await facts()).sent;
    const fwd = request({ destination: "pacs", content: "study" });
    const again = exportAuditFact(
      fwd,
      { phase: "Sent", reason: "Study", instances: 2 },
      { destination: dimse, time: new Date(T0.getTime() + 60_000) },
    );
    expect(again?.id).toBe(a.id);
  });
});

// ---- the judges ------------------------------------------------------------------------------

/** PS3.15 A.5.3.6 Export (Table A.5.3.4-1's media), plus what radflow promises about its participants. */
const EXPORT_RULES: Record<string, string> = {
  "EventID Export (110106)": "/AuditMessage/EventIdentification/EventID/@csd-code='110106'",
  "EventActionCode R": "/AuditMessage/EventIdentification/@EventActionCode='R'",
  "the gateway as Source (110153)": `/AuditMessage/${role("110153")}[@UserID='radflow-gateway' and @UserIsRequestor='true']`,
  "the Media (110154) with a media identifier and type": `/AuditMessage/${role("110154")}[MediaIdentifier/MediaType/@csd-code='110037' and starts-with(@UserID, '/apis/radflow.io/')]`,
  "the study": `/AuditMessage/${STUDY_OBJECT}`,
};
const DESTINATION = `/AuditMessage/${role("110152")}[@UserIsRequestor='false' and @NetworkAccessPointID!='']`;

describe("export records against PS3.15 A.5.3.6", () => {
  it("every record keeps the Export rules, names the destination node where known and the patient where known", async () => {
    const failures: string[] = [];
    for (const [name, f] of Object.entries(await facts())) {
      const xml = renderAuditMessage(f, codes, SOURCE);
      const extra: Record<string, string> = {};
      if (f.exportNode) extra["the destination node (110152) at its address"] = DESTINATION;
      if (f.study?.patientId) extra["the patient"] = `/AuditMessage/${PATIENT_OBJECT}`;
      for (const b of failedRules(xml, { ...EXPORT_RULES, ...extra })) failures.push(`${name}: ${b}`);
    }
    expect(failures).toEqual([]);
    const xml = renderAuditMessage((await facts()).sent, codes, SOURCE);
    expect(xml).toContain('AlternativeUserID="AETITLES=PACS_MAIN"');
    expect(xml).toContain('NetworkAccessPointID="10.20.30.40" NetworkAccessPointTypeCode="2"');
  });

  it("the rules can fail: an export without its media is caught", async () => {
    const xml = renderAuditMessage((await facts()).sent, codes, SOURCE).replace(
      /<MediaIdentifier>.*?<\/MediaIdentifier>/,
      "",
    );
    expect(failedRules(xml, EXPORT_RULES)).toEqual(["the Media (110154) with a media identifier and type"]);
  });
});

describeAuditJudges(import.meta.filename, "export records", SOURCE, facts);

describe("export records as FHIR AuditEvents", () => {
  it("an Export (110106) naming the destination node at its address and the media", async () => {
    const ev = renderFhirAuditEvent((await facts()).sent, codes, SOURCE);
    expect(ev.type.code).toBe("110106");
    expect(ev.agent.find((a) => a.altId === "AETITLES=PACS_MAIN")?.network).toEqual({
      address: "10.20.30.40",
      type: "2",
    });
    expect(ev.agent.find((a) => a.media)?.who.display).toBe(destinationMediaId("radiology", "pacs"));
  });
});
