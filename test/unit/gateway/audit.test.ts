// The gateway's PS3.15 transfer records (src/gateway/audit.ts): which facts a C-STORE association
// and a STOW-RS request produce, and that they pass the same judges as the operator's records —
// the DICOM audit schema (xmllint), the A.5.3.2 / A.5.3.4 rules as XPath, and HL7's R4 checker
// (hack/tools/fhir-validator).
import { describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import type { AuditFact, AuditSink } from "../../../src/audit/facts.ts";
import { renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import { localAuditSource } from "../../../src/audit/source.ts";
import { AuditRecorder, peerAddress, TransferAudit } from "../../../src/gateway/audit.ts";
import { encodeFileMeta } from "../../../src/gateway/part10.ts";
import { SecurityAlerts } from "../../../src/gateway/security-alerts.ts";
import { peekSubject } from "../../../src/gateway/storage.ts";
import { describeAuditJudges } from "../audit/judges.ts";
import { failedRules, PATIENT_OBJECT, role, STUDY_OBJECT } from "../audit/xpath-rules.ts";
import { makeInstance } from "./dicom-fixture.ts";

const codes = defaultAuditCodes();
const SOURCE = localAuditSource({ application: "radflow-gateway", hostname: "radflow-gateway-0", processId: "7" });
const STUDY = "1.2.826.0.1.3680043.10.1099.77";
const CT = "1.2.840.10008.5.1.4.1.1.2";
const SR = "1.2.840.10008.5.1.4.1.1.88.33";
const T0 = new Date("2026-12-03T10:00:00.000Z");

function capture() {
  const facts: AuditFact[] = [];
  const sink: AuditSink = { record: async (f) => void facts.push(f) };
  return { facts, recorder: new AuditRecorder(sink) };
}

/** One association: CT_EAST sends 3 CT + 1 SR of a study; one more instance is refused for lack of space. */
async function association(): Promise<AuditFact[]> {
  const { facts, recorder } = capture();
  const t = new TransferAudit(
    recorder,
    { protocol: "dimse", callingAETitle: "CT_EAST", calledAETitle: "RADFLOW", address: peerAddress("::ffff:10.1.2.3") },
    () => T0,
  );
  const subject = { study: STUDY, patientId: "PID-GW-1", accessionNumber: "ACC-GW-1" };
  for (let i = 0; i < 3; i++) t.stored(subject, CT);
  t.stored(subject, SR);
  t.refused(subject, "out-of-resources");
  t.refused(undefined, "invalid"); // no study known: no record can name it
  t.end();
  await recorder.settled();
  return facts;
}

async function stowRequest(): Promise<AuditFact[]> {
  const { facts, recorder } = capture();
  const t = new TransferAudit(recorder, { protocol: "stow", address: "192.0.2.9" }, () => T0);
  t.stored({ study: STUDY }, CT);
  t.end();
  // a request whose only instance was refused: a failure with its reason
  const u = new TransferAudit(recorder, { protocol: "stow", address: "192.0.2.9" }, () => T0);
  u.refused({ study: `${STUDY}.2`, patientId: "PID-GW-2" }, "mismatch");
  u.end();
  await recorder.settled();
  return facts;
}

describe("transfer audit facts", () => {
  it("an association: Begin Transferring at the first instance, Instances Transferred at its end, with counts and refusals", async () => {
    const facts = await association();
    expect(facts.map((f) => [f.kind, f.outcome])).toEqual([
      ["BeginTransferring", "success"],
      ["InstancesTransferred", "minorFailure"],
    ]);
    const [begin, done] = facts as [AuditFact, AuditFact];
    expect(begin.study).toEqual({
      studyInstanceUID: STUDY,
      patientId: "PID-GW-1",
      accessionNumber: "ACC-GW-1",
      callingAETitle: "CT_EAST",
      calledAETitle: "RADFLOW",
    });
    expect(done.senderAddress).toBe("10.1.2.3");
    expect(done.study?.sopClasses).toEqual([
      { uid: CT, instances: 3 },
      { uid: SR, instances: 1 },
    ]);
    expect(done.reason).toBe("instances refused (1 out-of-resources)");
    expect(done.description).toBe("4 stored, 1 refused");
    // ids are stable per fact and carry no UID
    expect(new Set(facts.map((f) => f.id)).size).toBe(2);
    for (const f of facts) expect(f.id).not.toContain(STUDY);
  });

  it("an aborted association is a minor failure; an instance after the end is not recorded twice", async () => {
    const { facts, recorder } = capture();
    const t = new TransferAudit(recorder, { protocol: "dimse", callingAETitle: "CT_EAST" }, () => T0);
    t.stored({ study: STUDY }, CT);
    t.end("association aborted");
    t.stored({ study: STUDY }, CT);
    t.end();
    await recorder.settled();
    expect(facts.map((f) => [f.kind, f.outcome, f.reason])).toEqual([
      ["BeginTransferring", "success", undefined],
      ["InstancesTransferred", "minorFailure", "association aborted"],
    ]);
  });

  it("STOW-RS: the client by its address; a request with nothing stored is a serious failure with its reason", async () => {
    const facts = await stowRequest();
    expect(facts.map((f) => [f.kind, f.outcome, f.sender])).toEqual([
      ["BeginTransferring", "success", "DICOMweb STOW-RS client"],
      ["InstancesTransferred", "success", "DICOMweb STOW-RS client"],
      ["BeginTransferring", "success", "DICOMweb STOW-RS client"],
      ["InstancesTransferred", "seriousFailure", "DICOMweb STOW-RS client"],
    ]);
    expect(facts[3]?.reason).toBe("instances refused (1 mismatch)");
  });

  it("a record the pipeline refuses is retried, then given up with a count (never blocks storing)", async () => {
    let calls = 0;
    const recorder = new AuditRecorder(
      {
        record: async () => {
          calls++;
          if (calls < 3) throw new Error("JetStream not answering");
        },
      },
      { initialMs: 1, attempts: 5 },
    );
    const t = new TransferAudit(recorder, { protocol: "dimse" }, () => T0);
    t.stored({ study: STUDY }, CT);
    await recorder.settled();
    expect(calls).toBe(3);
  });

  it("the study and patient of a refused instance are read from its first bytes, even cut short", () => {
    const whole = makeInstance({ study: STUDY, series: `${STUDY}.1`, sop: `${STUDY}.1.1`, pixelBytes: 40_000 });
    expect(peekSubject(whole.subarray(0, 2000))).toEqual({
      study: STUDY,
      patientId: "PID-GW-1",
      accessionNumber: "ACC-GW-1",
    });
    expect(peekSubject(Buffer.from("not DICOM at all"))).toBeUndefined();
    // only the meta group arrived: no study to name
    const meta = encodeFileMeta({ sopClassUID: CT, sopInstanceUID: "1.2.3", transferSyntaxUID: "1.2.840.10008.1.2.1" });
    expect(peekSubject(meta)).toBeUndefined();
  });
});

/** Refused nodes, as the gateway meets them: each kind once, then a scanner hammering the port. */
function alertFacts(): AuditFact[] {
  const facts: AuditFact[] = [];
  let now = T0;
  const alerts = new SecurityAlerts({ record: (f) => void facts.push(f) }, { windowMs: 3_600_000, now: () => now });
  const dicom = "dicom://radflow-gateway-0:11112";
  alerts.refused({ reason: "tls-handshake", address: "192.0.2.7", service: dicom });
  alerts.refused({ reason: "calling-ae", address: "192.0.2.8", callingAETitle: "INTRUDER", service: dicom });
  alerts.refused({ reason: "called-ae", address: "192.0.2.8", callingAETitle: "CT_EAST", service: dicom });
  alerts.refused({ reason: "stow-token", address: "192.0.2.9", service: "http://radflow-gateway-0:8080/studies" });
  for (let i = 0; i < 500; i++)
    alerts.refused({ reason: "calling-ae", address: "192.0.2.8", callingAETitle: "INTRUDER", service: dicom });
  now = new Date(T0.getTime() + 60_000);
  alerts.stop(); // the window's end: one summary for the node refused again
  return facts;
}

describe("security alerts for refused nodes", () => {
  it("a TLS handshake, an unknown calling or called AE title and a STOW-RS 401 are each a Node Authentication alert, minor failure", () => {
    const facts = alertFacts();
    expect(facts.map((f) => [f.kind, f.outcome, f.sender, f.senderAddress, f.reason])).toEqual([
      [
        "NodeAuthenticationFailed",
        "minorFailure",
        "DICOM TLS client",
        "192.0.2.7",
        "DICOM TLS handshake refused: no certificate the gateway's CA signed",
      ],
      [
        "NodeAuthenticationFailed",
        "minorFailure",
        "INTRUDER",
        "192.0.2.8",
        "association rejected: calling AE title not recognized",
      ],
      [
        "NodeAuthenticationFailed",
        "minorFailure",
        "CT_EAST",
        "192.0.2.8",
        "association rejected: called AE title not recognized",
      ],
      [
        "NodeAuthenticationFailed",
        "minorFailure",
        "DICOMweb STOW-RS client",
        "192.0.2.9",
        "STOW-RS request refused: missing or invalid bearer token",
      ],
      // 500 more from the scanner: one summary when the window ends, not 500 records
      [
        "NodeAuthenticationFailed",
        "minorFailure",
        "INTRUDER",
        "192.0.2.8",
        "association rejected: calling AE title not recognized",
      ],
    ]);
    expect(facts[4]?.description).toBe("500 more refusal(s) of this node since 2026-12-03T10:00:00.000Z");
    expect(facts.map((f) => f.alertSubject)).toEqual([
      "dicom://radflow-gateway-0:11112",
      "dicom://radflow-gateway-0:11112",
      "dicom://radflow-gateway-0:11112",
      "http://radflow-gateway-0:8080/studies",
      "dicom://radflow-gateway-0:11112",
    ]);
    const xml = renderAuditMessage(facts[1] as AuditFact, codes, SOURCE);
    expect(xml).toContain('<EventIdentification EventActionCode="E"');
    expect(xml).toContain('EventOutcomeIndicator="4"');
    expect(xml).toMatch(/<EventID csd-code="110113"/);
    expect(xml).toMatch(/<EventTypeCode csd-code="110126" codeSystemName="DCM" originalText="Node Authentication"/);
  });

  it("many nodes at once: at most maxPerWindow records a window, the rest counted; a new window records again", () => {
    const facts: AuditFact[] = [];
    const alerts = new SecurityAlerts({ record: (f) => void facts.push(f) }, { windowMs: 3_600_000, maxPerWindow: 5 });
    for (let i = 1; i <= 200; i++)
      alerts.refused({ reason: "tls-handshake", address: `198.51.100.${i}`, service: "dicom://gw:11112" });
    expect(facts).toHaveLength(5);
    alerts.flush();
    alerts.refused({ reason: "tls-handshake", address: "198.51.100.1", service: "dicom://gw:11112" });
    expect(facts).toHaveLength(6);
    alerts.stop();
  });
});

// ---- the judges ------------------------------------------------------------------------------

const ACTION = (c: string) => `/AuditMessage/EventIdentification/@EventActionCode='${c}'`;

/** PS3.15 A.5.3.2 and A.5.3.4, plus what the gateway promises about its participants. */
const RULES: Record<string, Record<string, string>> = {
  "110102": {
    "EventActionCode E": ACTION("E"),
    "a Source (110153)": `/AuditMessage/${role("110153")}`,
    "a Destination (110152)": `/AuditMessage/${role("110152")}`,
    "the study": `/AuditMessage/${STUDY_OBJECT}`,
  },
  "110104": {
    "EventActionCode C (the gateway creates the copies)": ACTION("C"),
    "a Source (110153)": `/AuditMessage/${role("110153")}`,
    "a Destination (110152)": `/AuditMessage/${role("110152")}`,
    "the study": `/AuditMessage/${STUDY_OBJECT}`,
  },
  // A.5.3.11 Security Alert
  "110113": {
    "EventActionCode E": ACTION("E"),
    "EventTypeCode Node Authentication (CID 403)": "/AuditMessage/EventIdentification/EventTypeCode/@csd-code='110126'",
    "outcome minor failure": "/AuditMessage/EventIdentification/@EventOutcomeIndicator='4'",
    "the reporting process (the gateway, requestor)":
      "/AuditMessage/ActiveParticipant[@UserIsRequestor='true' and RoleIDCode/@csd-code='110150']",
    "the refused node at its address, not the requestor": `/AuditMessage/${role("110153")}[@UserIsRequestor='false' and @NetworkAccessPointTypeCode='2' and @NetworkAccessPointID!='']`,
    "the alert subject (a system object, Security Resource, by URI)":
      "/AuditMessage/ParticipantObjectIdentification[@ParticipantObjectTypeCode='2' and @ParticipantObjectTypeCodeRole='13' and ParticipantObjectIDTypeCode/@csd-code='12']",
  },
};
const SENDER_ADDRESS = `/AuditMessage/${role("110153")}[@UserIsRequestor='true' and @NetworkAccessPointTypeCode='2' and @NetworkAccessPointID!='']`;

function broken(xml: string, extra: Record<string, string>): string[] {
  return failedRules(xml, (id) => ({ ...(RULES[id] ?? { "a known EventID": "false()" }), ...extra }));
}

async function allFacts(): Promise<Record<string, AuditFact>> {
  const out: Record<string, AuditFact> = {};
  for (const [i, f] of (await association()).entries()) out[`dimse-${i}`] = f;
  for (const [i, f] of (await stowRequest()).entries()) out[`stow-${i}`] = f;
  for (const [i, f] of alertFacts().entries()) out[`alert-${i}`] = f;
  return out;
}

describe("transfer records against PS3.15 A.5.3", () => {
  it("every record keeps the event's rules, names the patient where known and the sender's address", async () => {
    const failures: string[] = [];
    for (const [name, f] of Object.entries(await allFacts())) {
      const xml = renderAuditMessage(f, codes, SOURCE);
      const alert = f.kind === "NodeAuthenticationFailed";
      const extra: Record<string, string> = alert ? {} : { "the sender's address": SENDER_ADDRESS };
      if (f.study?.patientId) extra["the patient"] = `/AuditMessage/${PATIENT_OBJECT}`;
      for (const b of broken(xml, extra)) failures.push(`${name}: ${b}`);
    }
    expect(failures).toEqual([]);
  });

  it("the rules can fail: a transfer without its destination is caught", async () => {
    const f = (await association())[1] as AuditFact;
    const xml = renderAuditMessage(f, codes, SOURCE).replace(
      /<ActiveParticipant UserID="RADFLOW".*?<\/ActiveParticipant>/,
      "",
    );
    expect(broken(xml, {})).toEqual(["a Destination (110152)"]);
  });
});

describeAuditJudges(import.meta.filename, "transfer records", SOURCE, allFacts);

describe("transfer records as FHIR AuditEvents", () => {
  it("the sender's address is the agent's network access point (type 2: IP address)", async () => {
    const ev = renderFhirAuditEvent((await association())[1] as AuditFact, codes, SOURCE);
    expect(ev.agent.find((a) => a.altId === "AETITLES=CT_EAST")?.network).toEqual({ address: "10.1.2.3", type: "2" });
  });
});
