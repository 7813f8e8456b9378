// Every AuditEvent kind through an offline FHIR R4 checker built from HL7's own R4 definitions
// (hack/tools/fhir-validator: HAPI FHIR's R4 model and strict parser, HL7's R4 XML schema, code
// systems and bindings, from Maven Central into ~/.cache/radflow). 0 errors for every kind and
// variant; the broken events below show each check can fail.
import { beforeAll, describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { type FhirAuditEvent, renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import { ALL_KINDS, SOURCE, STUDY, sampleFact } from "./sample.ts";
import { checkFhir, fhirErrors, fhirValidatorClasspath } from "./tools.ts";

const codes = defaultAuditCodes();

let classpath: string;
beforeAll(() => {
  classpath = fhirValidatorClasspath();
}, 900_000);

/** Every kind as rendered, plus study variants: no AE titles, and a known patient. */
function events(): Record<string, FhirAuditEvent> {
  const out: Record<string, FhirAuditEvent> = {};
  for (const kind of ALL_KINDS) {
    const f = sampleFact(kind);
    out[kind] = renderFhirAuditEvent(f, codes, SOURCE);
    if (f.study) {
      const { callingAETitle: _c, calledAETitle: _d, ...study } = f.study;
      const bare: AuditFact = { ...f, study: { ...study, patientId: STUDY.patientId }, sender: "/gateways/dicomweb-1" };
      out[`${kind}-no-ae`] = renderFhirAuditEvent(bare, codes, SOURCE);
    }
  }
  return out;
}

describe("FHIR AuditEvents against HL7's R4 definitions", () => {
  it("every kind and variant has 0 errors; the broken ones are caught", { timeout: 300_000 }, () => {
    const good = events();
    const received = good.StudyReceived!;
    const broken: Record<string, unknown> = {
      // what radflow sent before: DCM 110119 is not in R4's DICOM code system
      "bad-ae-type": {
        ...received,
        agent: received.agent.map((a) =>
          a.altId?.startsWith("AETITLES=")
            ? {
                ...a,
                who: {
                  ...a.who,
                  identifier: {
                    ...a.who.identifier,
                    type: {
                      coding: [
                        {
                          system: "http://dicom.nema.org/resources/ontology/DCM",
                          code: "110119",
                          display: "Station AE Title",
                        },
                      ],
                    },
                  },
                },
              }
            : a,
        ),
      },
      // the DICOM message's patient ID type system, which FHIR does not know
      "bad-rfc3881": {
        ...received,
        entity: [
          ...(received.entity ?? []),
          {
            what: { identifier: { type: { coding: [{ system: "urn:ietf:rfc:3881", code: "2" }] }, value: "P1" } },
            type: { system: "http://terminology.hl7.org/CodeSystem/audit-entity-type", code: "1" },
          },
        ],
      },
      "bad-action": { ...received, action: "X" },
      "bad-no-recorded": { ...received, recorded: undefined },
      "bad-element": { ...received, surprise: true },
    };
    const errs = fhirErrors(checkFhir(classpath, { ...good, ...broken }));
    const goodErrors = Object.fromEntries(Object.entries(errs).filter(([n]) => !n.startsWith("bad-")));
    expect(goodErrors).toEqual({});
    expect(Object.keys(good).length).toBeGreaterThanOrEqual(ALL_KINDS.length);
    expect(errs["bad-ae-type"]?.join()).toMatch(/unknown code '110119'/);
    expect(errs["bad-rfc3881"]?.join()).toMatch(/'urn:ietf:rfc:3881' is not a known code system URI/);
    expect(errs["bad-action"]?.length).toBeGreaterThan(0);
    expect(errs["bad-no-recorded"]?.join()).toMatch(/recorded/);
    expect(errs["bad-element"]?.join()).toMatch(/surprise/);
  });
});
