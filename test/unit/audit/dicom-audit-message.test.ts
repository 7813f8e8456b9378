import { beforeAll, describe, expect, it } from "vitest";
import { defaultAuditCodes, mergeAuditCodes } from "../../../src/audit/codes.ts";
import { renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { withoutShared } from "../../support/shared.ts";
import { ALL_KINDS, SOURCE, STUDY, sampleFact } from "./sample.ts";
import { convertedSchema, run, validate } from "./tools.ts";

const codes = defaultAuditCodes();
// the schema is a ../shared fixture: without it the schema checks skip and the rest still run
const noShared = withoutShared(import.meta.filename);
let rng: string;
beforeAll(() => {
  if (!noShared) rng = convertedSchema();
});

/** The value of attribute `attr` on the first `<tag ...>` in xml. */
function attr(xml: string, tag: string, a: string): string | undefined {
  const m = new RegExp(`<${tag}\\b[^>]*\\s${a}="([^"]*)"`).exec(xml);
  return m?.[1];
}

describe("DICOM AuditMessage", () => {
  it.skipIf(noShared)("renders every fact kind to XML the fixture schema accepts", () => {
    const docs: Record<string, string> = {};
    for (const kind of ALL_KINDS) {
      docs[kind] = renderAuditMessage(sampleFact(kind), codes, SOURCE);
      // the barest fact of each kind too: no study, no task, no description
      docs[`${kind}-bare`] = renderAuditMessage(
        { id: "x", kind, time: "2025-01-01T00:00:00Z", outcome: "success" },
        codes,
        { sourceId: "radflow", application: "radflow-operator", hostname: "h", processId: "1" },
      );
    }
    expect(validate(rng, docs)).toEqual({});
  });

  it.skipIf(noShared)("is rejected by the schema when it is broken (the check can fail)", () => {
    const good = renderAuditMessage(sampleFact("TaskSucceeded"), codes, SOURCE);
    const noEventId = good.replace(/<EventID [^>]*\/>/, "");
    const badOutcome = good.replace('EventOutcomeIndicator="0"', 'EventOutcomeIndicator="1"');
    expect(Object.keys(validate(rng, { noEventId, badOutcome })).sort()).toEqual(["badOutcome", "noEventId"]);
  });

  it("identifies the study by its UID with accession and SOP classes, and the patient", () => {
    const xml = renderAuditMessage(sampleFact("StudyReceived"), codes, SOURCE);
    expect(xml).toContain(
      `<ParticipantObjectIdentification ParticipantObjectID="${STUDY.studyInstanceUID}" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>`,
    );
    expect(xml).toContain(`<Accession Number="${STUDY.accessionNumber}"/>`);
    expect(xml).toContain('<SOPClass UID="1.2.840.10008.5.1.4.1.1.2" NumberOfInstances="312"/>');
    // a SOP class without a count is kept as a detail (base64 of the UID)
    expect(xml).toContain(
      `<ParticipantObjectDetail type="SOPClassUID" value="${Buffer.from("1.2.840.10008.5.1.4.1.1.88.22").toString("base64")}"/>`,
    );
    expect(xml).toMatch(
      /<ParticipantObjectIdentification ParticipantObjectID="PAT\^123" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/,
    );
  });

  it("names source, destination and application participants with their role codes", () => {
    const xml = renderAuditMessage(sampleFact("StudyReceived"), codes, SOURCE);
    expect(xml).toContain(
      '<ActiveParticipant UserID="CT_SCANNER_1" AlternativeUserID="AETITLES=CT_SCANNER_1" UserIsRequestor="true"><RoleIDCode csd-code="110153"',
    );
    expect(xml).toContain(
      '<ActiveParticipant UserID="RADFLOW_GW" AlternativeUserID="AETITLES=RADFLOW_GW" UserIsRequestor="false"><RoleIDCode csd-code="110152"',
    );
    expect(xml).toMatch(
      /<ActiveParticipant UserID="radflow-operator" AlternativeUserID="4242" UserIsRequestor="false"[^>]*><RoleIDCode csd-code="110150"/,
    );
    // without a modality behind it, radflow itself is the requestor
    const own = renderAuditMessage(sampleFact("StepStarted"), codes, SOURCE);
    expect(attr(own, "ActiveParticipant", "UserIsRequestor")).toBe("true");
    expect(own).toContain('<EventID csd-code="StepStarted" codeSystemName="RADFLOW"');
  });

  it("uses DICOM event codes where DICOM has them", () => {
    const id = (k: AuditFact["kind"]) => attr(renderAuditMessage(sampleFact(k), codes, SOURCE), "EventID", "csd-code");
    expect(id("StudyReceived")).toBe("110104");
    expect(id("ResultsPublished")).toBe("110106");
    expect(id("WorkflowChanged")).toBe("110113");
    const start = renderAuditMessage(sampleFact("OperatorStarted"), codes, SOURCE);
    expect(attr(start, "EventID", "csd-code")).toBe("110100");
    expect(attr(start, "EventTypeCode", "csd-code")).toBe("110120");
    expect(attr(renderAuditMessage(sampleFact("OperatorStopped"), codes, SOURCE), "EventTypeCode", "csd-code")).toBe(
      "110121",
    );
  });

  it("keeps the event time's zone and maps outcomes to 0/4/8/12", () => {
    const f = sampleFact("TaskFailed");
    const xml = renderAuditMessage(f, codes, SOURCE);
    expect(attr(xml, "EventIdentification", "EventDateTime")).toBe("2025-03-14T09:26:53.589+01:00");
    expect(attr(xml, "EventIdentification", "EventOutcomeIndicator")).toBe("8");
    for (const [outcome, ind] of [
      ["success", "0"],
      ["minorFailure", "4"],
      ["seriousFailure", "8"],
      ["majorFailure", "12"],
    ] as const) {
      const x = renderAuditMessage({ ...f, outcome }, codes, SOURCE);
      expect(attr(x, "EventIdentification", "EventOutcomeIndicator")).toBe(ind);
    }
    expect(() => renderAuditMessage({ ...f, time: "2025-03-14T09:26:53" }, codes, SOURCE)).toThrow(/with a zone/);
  });

  it("escapes markup and keeps non-ASCII text well-formed", () => {
    const f = { ...sampleFact("TaskFailed"), description: 'a <b> & "c" \u0007 Ünïcødé' };
    const xml = renderAuditMessage(f, codes, SOURCE);
    expect(xml).toContain(
      '<EventOutcomeDescription>StepFailed: a &lt;b&gt; &amp; "c" \uFFFD Ünïcødé</EventOutcomeDescription>',
    );
    const r = run("xmllint", ["--noout", "-"], { input: xml });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it.skipIf(noShared)("follows a site's code table", () => {
    const site = mergeAuditCodes({
      events: {
        StepStarted: { eventId: { code: "SOLE-77", codeSystemName: "99SITE", system: "urn:site", display: "AI run" } },
      },
    });
    const xml = renderAuditMessage(sampleFact("StepStarted"), site, SOURCE);
    expect(xml).toContain('<EventID csd-code="SOLE-77" codeSystemName="99SITE" originalText="AI run"/>');
    expect(Object.keys(validate(rng, { site: xml }))).toEqual([]);
  });
});
