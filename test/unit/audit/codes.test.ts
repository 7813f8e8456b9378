import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AUDIT_EVENT_KINDS, defaultAuditCodes, loadAuditCodes, mergeAuditCodes } from "../../../src/audit/codes.ts";

const dir = mkdtempSync(path.join(tmpdir(), "radflow-codes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const f = path.join(mkdtempSync(path.join(dir, "t-")), name);
  writeFileSync(f, text);
  return f;
}

describe("audit code table", () => {
  it("codes every fact kind, with a FHIR system for every code", () => {
    const t = defaultAuditCodes();
    expect(Object.keys(t.events).sort()).toEqual([...AUDIT_EVENT_KINDS].sort());
    for (const [kind, e] of Object.entries(t.events)) {
      for (const c of [e.eventId, ...e.eventTypes]) {
        expect(c.system, kind).toMatch(/^(http|urn):/);
        expect(c.code, kind).not.toBe("");
      }
      // the RADFLOW code of the kind is always present, as EventID or EventTypeCode
      const own = [e.eventId, ...e.eventTypes].filter((c) => c.codeSystemName === "RADFLOW").map((c) => c.code);
      if (!kind.startsWith("Operator")) expect(own, kind).toContain(kind);
    }
  });

  it("uses DICOM codes for DICOM-defined events and roles", () => {
    const t = defaultAuditCodes();
    expect(t.events.OperatorStarted.eventId).toMatchObject({ code: "110100", codeSystemName: "DCM" });
    expect(t.events.OperatorStarted.eventTypes[0]).toMatchObject({ code: "110120", display: "Application Start" });
    expect(t.events.OperatorStopped.eventTypes[0]).toMatchObject({ code: "110121", display: "Application Stop" });
    expect(t.events.StudyReceived.eventId.code).toBe("110104");
    expect(t.objects.study.code).toBe("110180");
    expect([t.roles.application.code, t.roles.source.code, t.roles.destination.code]).toEqual([
      "110150",
      "110153",
      "110152",
    ]);
    expect(t.events.GPUWait.eventId).toMatchObject({
      code: "GPUWait",
      codeSystemName: "RADFLOW",
      system: "urn:radflow:audit",
    });
  });

  it("merges a site's YAML file over the defaults, kind by kind", () => {
    const f = file(
      "site.yaml",
      `events:
  StepStarted:
    eventId: { code: "AI-1", codeSystemName: "99SITE", system: "urn:oid:1.2.3.4", display: "AI model run" }
  TaskSucceeded:
    eventTypes: []
    action: R
roles:
  application: { code: "110150", codeSystemName: DCM, display: "Application" }
`,
    );
    const t = loadAuditCodes(f);
    expect(t.events.StepStarted.eventId).toEqual({
      code: "AI-1",
      codeSystemName: "99SITE",
      system: "urn:oid:1.2.3.4",
      display: "AI model run",
    });
    expect(t.events.StepStarted.action).toBe("E"); // not overridden: default kept
    expect(t.events.TaskSucceeded.action).toBe("R");
    expect(t.events.StudyReceived).toEqual(defaultAuditCodes().events.StudyReceived);
    // a known code system's URI is filled in
    expect(t.roles.application.system).toBe("http://dicom.nema.org/resources/ontology/DCM");
  });

  it("reads JSON too", () => {
    const f = file("site.json", JSON.stringify({ events: { GPUWait: { action: "R" } } }));
    expect(loadAuditCodes(f).events.GPUWait.action).toBe("R");
  });

  it("refuses what it cannot honour, saying where", () => {
    expect(() => mergeAuditCodes({ events: { StepBegun: { action: "E" } } })).toThrow(/StepBegun|events/);
    expect(() =>
      mergeAuditCodes({ events: { GPUWait: { eventId: { code: "1", codeSystemName: "99X", display: "x" } } } }),
    ).toThrow(/events\.GPUWait\.eventId: codeSystemName "99X".*system/);
    expect(() => mergeAuditCodes({ events: { GPUWait: { action: "X" } } })).toThrow(/action/);
    expect(() => loadAuditCodes(file("bad.yaml", "events: [unclosed"))).toThrow(/bad\.yaml/);
  });
});
