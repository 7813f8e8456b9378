// DICOM PS3.15 A.5.3 per-event rules, beyond what the schema can say, checked on the rendered
// XML with xmllint's XPath (an independent reader), for every fact kind, with and without AE
// titles; plus the record size bound that keeps a record whole in rsyslog's default 8 KiB.
import { beforeAll, describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { MAX_AUDIT_MESSAGE_BYTES, renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { syslogMessage } from "../../../src/audit/syslog.ts";
import { withoutShared } from "../../support/shared.ts";
import { ALL_KINDS, SOURCE, STUDY, sampleFact } from "./sample.ts";
import { convertedSchema, validate } from "./tools.ts";
import { failedRules, role, STUDY_OBJECT } from "./xpath-rules.ts";

const codes = defaultAuditCodes();
const noShared = withoutShared(import.meta.filename);

const PATIENT_OBJECT =
  "ParticipantObjectIdentification[@ParticipantObjectTypeCode='1' and @ParticipantObjectTypeCodeRole='1' and ParticipantObjectIDTypeCode/@csd-code='2' and ParticipantObjectIDTypeCode/@codeSystemName='RFC-3881']";
const action = (...codes: string[]) =>
  `(${codes.map((c) => `/AuditMessage/EventIdentification/@EventActionCode='${c}'`).join(" or ")})`;
const eventType = (...codes: string[]) =>
  `(${codes.map((c) => `/AuditMessage/EventIdentification/EventTypeCode/@csd-code='${c}'`).join(" or ")})`;

/** The A.5.3 rules by EventID: XPath conditions every message with that EventID must meet. */
const RULES: Record<string, Record<string, string>> = {
  // A.5.3.1 Application Activity
  "110100": {
    "EventActionCode E": action("E"),
    "EventTypeCode Application Start/Stop (CID 401)": eventType("110120", "110121", "110122", "110123"),
    "the application (110150)": `/AuditMessage/${role("110150")}`,
  },
  // A.5.3.4 DICOM Instances Transferred
  "110104": {
    "EventActionCode C, R or U": action("C", "R", "U"),
    "a Source (110153)": `/AuditMessage/${role("110153")}`,
    "a Destination (110152)": `/AuditMessage/${role("110152")}`,
    "the study": `/AuditMessage/${STUDY_OBJECT}`,
  },
  // A.5.3.6 Export
  "110106": {
    "EventActionCode R": action("R"),
    "the exporting process as Source (110153)": `/AuditMessage/${role("110153")}`,
    "the Media (110154) with a media identifier and type": `/AuditMessage/${role("110154")}[MediaIdentifier/MediaType/@csd-code and @UserID != '']`,
    "the study": `/AuditMessage/${STUDY_OBJECT}`,
  },
  // A.5.3.11 Security Alert
  "110113": {
    "EventActionCode E": action("E"),
    "an EventTypeCode of CID 403": eventType("110126", "110127", "110128", "110129", "110130", "110131", "110132"),
    "the reporting process (UserIsRequestor)": "/AuditMessage/ActiveParticipant[@UserIsRequestor='true']",
    "the alert subject (a system object)":
      "/AuditMessage/ParticipantObjectIdentification[@ParticipantObjectTypeCode='2']",
  },
};

/** The rules `xml` breaks: "EventID: rule" for every XPath that is false. */
function broken(xml: string, extra: Record<string, string> = {}): string[] {
  return failedRules(xml, (id) =>
    Object.fromEntries(Object.entries({ ...(RULES[id] ?? {}), ...extra }).map(([what, x]) => [`${id}: ${what}`, x])),
  );
}

/** Every kind as the pipeline sees it: the full sample, and a study known only by its event's source. */
function variants(): Record<string, AuditFact> {
  const out: Record<string, AuditFact> = {};
  for (const kind of ALL_KINDS) {
    const f = sampleFact(kind);
    out[kind] = f;
    if (f.study) {
      const { callingAETitle: _c, calledAETitle: _d, ...study } = f.study;
      out[`${kind}-no-ae`] = { ...f, study, sender: "/gateways/dicomweb-1" };
      out[`${kind}-nothing-known`] = { ...f, study: { studyInstanceUID: f.study.studyInstanceUID } };
    }
  }
  return out;
}

describe("PS3.15 A.5.3 event rules", () => {
  it("holds for every fact kind, with and without AE titles", { timeout: 60_000 }, () => {
    const failures: string[] = [];
    for (const [name, fact] of Object.entries(variants())) {
      const xml = renderAuditMessage(fact, codes, SOURCE);
      // the Patient participant wherever the patient ID is known
      const patient: Record<string, string> = fact.study?.patientId
        ? { "the patient": `/AuditMessage/${PATIENT_OBJECT}` }
        : {};
      for (const b of broken(xml, patient)) failures.push(`${name}: ${b}`);
    }
    expect(failures).toEqual([]);
  });

  it("the rules can fail: a Security Alert with action C and an Export without its media are caught", () => {
    const alert = renderAuditMessage(sampleFact("WorkflowCreated"), codes, SOURCE).replace(
      'EventActionCode="E"',
      'EventActionCode="C"',
    );
    expect(broken(alert)).toEqual(["110113: EventActionCode E"]);
    const exported = renderAuditMessage(sampleFact("ResultsPublished"), codes, SOURCE).replace(
      /<MediaIdentifier>.*?<\/MediaIdentifier>/,
      "",
    );
    expect(broken(exported)).toEqual(["110106: the Media (110154) with a media identifier and type"]);
  });
});

describe.skipIf(noShared)("the schema, for every variant", () => {
  let rng: string;
  beforeAll(() => {
    rng = convertedSchema();
  });
  it("accepts every kind with and without AE titles", () => {
    const docs = Object.fromEntries(
      Object.entries(variants()).map(([name, f]) => [name, renderAuditMessage(f, codes, SOURCE)]),
    );
    expect(validate(rng, docs)).toEqual({});
  });

  it("accepts a record cut to size", () => {
    expect(validate(rng, { big: renderAuditMessage(bigFact(), codes, SOURCE) })).toEqual({});
  });
});

/** A study of 400 SOP classes and a long failure text: 40 KB rendered whole. */
function bigFact(): AuditFact {
  const sopClasses = Array.from({ length: 400 }, (_, i) => ({
    uid: `1.2.840.10008.5.1.4.1.1.${1000 + i}`,
    instances: i + 1,
  }));
  return {
    ...sampleFact("StudyReceived"),
    description: "x".repeat(3000),
    study: { ...STUDY, sopClasses, sopClassUIDs: sopClasses.map((c) => `${c.uid}.9`) },
  };
}

describe("record size", () => {
  it("keeps every record within rsyslog's default 8 KiB (8096 octets), cutting SOP classes and text, never identifiers", () => {
    const fact = bigFact();
    const xml = renderAuditMessage(fact, codes, SOURCE);
    expect(Buffer.byteLength(xml)).toBeLessThanOrEqual(MAX_AUDIT_MESSAGE_BYTES);
    const record = syslogMessage(
      { time: fact.time, hostname: "h".repeat(255), procId: "p".repeat(128), msgId: "110104" },
      xml,
    );
    // rsyslog's default maxMessageSize, as its imtcp reports it
    expect(record.length).toBeLessThanOrEqual(8096);
    expect(xml).toContain(STUDY.studyInstanceUID);
    expect(xml).toContain(`ParticipantObjectID="${STUDY.patientId}"`);
    expect(xml).toContain('type="SOPClassesOmitted"');
    expect(broken(xml, { "the patient": `/AuditMessage/${PATIENT_OBJECT}` })).toEqual([]);
  });

  it("leaves a record that fits as it is", () => {
    const fact = sampleFact("StudyReceived");
    expect(renderAuditMessage(fact, codes, SOURCE)).toBe(renderAuditMessage(fact, codes, SOURCE, 1_000_000));
  });
});
