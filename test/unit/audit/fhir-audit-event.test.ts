import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import { withoutShared } from "../../support/shared.ts";
import { ALL_KINDS, SOURCE, STUDY, sampleFact } from "./sample.ts";
import { FIXTURES } from "./tools.ts";

const codes = defaultAuditCodes();
const DCM = "http://dicom.nema.org/resources/ontology/DCM";
// without ../shared the fixture comparison skips and the other checks still run
const noShared = withoutShared(import.meta.filename);
const example = (): object => JSON.parse(readFileSync(path.join(FIXTURES, "fhir-auditevent.example.json"), "utf8"));

describe("FHIR AuditEvent", () => {
  it.skipIf(noShared)("has the BALP shape of the fixture example for every fact kind", () => {
    for (const kind of ALL_KINDS) {
      const e = renderFhirAuditEvent(sampleFact(kind), codes, SOURCE);
      // the same top-level elements as the IHE example, nothing FHIR R4 does not define
      for (const key of ["resourceType", "type", "action", "recorded", "outcome", "agent", "source"]) {
        expect(e, `${kind}.${key}`).toHaveProperty(key);
      }
      const allowed = new Set([...Object.keys(example()), "outcomeDesc", "entity", "subtype"]);
      expect(
        Object.keys(e).filter((k) => !allowed.has(k)),
        kind,
      ).toEqual([]);
      expect(e.resourceType).toBe("AuditEvent");
      expect(["C", "R", "U", "D", "E"]).toContain(e.action);
      expect(["0", "4", "8", "12"]).toContain(e.outcome);
      expect(e.recorded).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
      expect(e.type.code).toBe(codes.events[kind].eventId.code);
      for (const a of e.agent) {
        expect(a.type.coding.length).toBeGreaterThan(0);
        expect(typeof a.requestor).toBe("boolean");
      }
      expect(e.source.type[0]).toMatchObject({ code: "4" });
      // valid JSON round trip (what goes on NATS)
      expect(JSON.parse(JSON.stringify(e))).toEqual(e);
    }
  });

  it("describes a received study: DICOM type, source and destination AEs, study and patient entities", () => {
    const e = renderFhirAuditEvent(sampleFact("StudyReceived"), codes, SOURCE);
    expect(e.type).toEqual({ system: DCM, code: "110104", display: "DICOM Instances Transferred" });
    expect(e.subtype).toEqual([
      { system: "urn:radflow:audit", code: "StudyReceived", display: "Study received and matched" },
    ]);
    expect(e.action).toBe("R");
    expect(e.recorded).toBe("2025-03-14T09:26:53.589+01:00");
    const roles = e.agent.map((a) => [a.type.coding[0]?.code, a.who.display, a.requestor]);
    expect(roles).toEqual([
      ["110150", "radflow-operator", false],
      ["110153", "CT_SCANNER_1", true],
      ["110152", "RADFLOW_GW", false],
    ]);
    const [study, patient] = e.entity ?? [];
    expect(study?.what.identifier).toMatchObject({
      system: "urn:dicom:uid",
      value: `urn:oid:${STUDY.studyInstanceUID}`,
    });
    expect(study?.what.identifier?.type?.coding[0]?.code).toBe("110180");
    expect(study?.extension?.[0]?.valueIdentifier?.value).toBe(STUDY.accessionNumber);
    expect(study?.role.code).toBe("3");
    expect(patient?.what.identifier?.value).toBe(STUDY.patientId);
    expect(patient?.role).toMatchObject({ code: "1", display: "Patient" });
    expect(e.source).toMatchObject({ site: "Hôpital Süd", observer: { display: "radflow@test-cluster" } });
  });

  it("describes a failed task with its outcome, reason and the task entity", () => {
    const e = renderFhirAuditEvent(sampleFact("TaskFailed"), codes, SOURCE);
    expect(e.type).toMatchObject({ system: "urn:radflow:audit", code: "TaskFailed" });
    expect(e.outcome).toBe("8");
    expect(e.outcomeDesc).toMatch(/^StepFailed: step 'detect'/);
    const task = e.entity?.find((x) => x.role.code === "20");
    expect(task).toMatchObject({
      what: { identifier: { value: "radiology/head-ct-hemorrhage-5f2a9c1e" } },
      name: "head-ct-hemorrhage-5f2a9c1e",
      detail: [{ type: "Workflow", valueString: "head-ct-hemorrhage" }],
    });
  });

  it("marks a workflow change with the Master File role and its life-cycle stage", () => {
    const e = renderFhirAuditEvent(sampleFact("WorkflowDeleted"), codes, SOURCE);
    // PS3.15 A.5.3.11: a Security Alert is action E; the deletion is the entity's life cycle
    expect(e.action).toBe("E");
    expect(e.subtype?.map((c) => c.code)).toEqual(["110131", "WorkflowDeleted"]);
    expect(e.entity).toEqual([
      expect.objectContaining({
        role: expect.objectContaining({ code: "5" }),
        lifecycle: expect.objectContaining({ code: "14" }),
      }),
    ]);
  });

  it("leaves out an id FHIR would not accept", () => {
    expect(
      renderFhirAuditEvent({ ...sampleFact("TaskCreated"), id: "uid/with slash" }, codes, SOURCE),
    ).not.toHaveProperty("id");
    expect(renderFhirAuditEvent(sampleFact("TaskCreated"), codes, SOURCE).id).toBe("fact-TaskCreated-0");
  });
});
