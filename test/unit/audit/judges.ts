// The two outside judges every audit record must pass, declared once for the test files that make
// records of their own (the gateway's transfers, the exports): the DICOM audit schema (xmllint,
// skipped with a reason when the shared fixtures are absent) and HL7's R4 checker
// (hack/tools/fhir-validator). What a file checks beyond these stays in that file.
import { beforeAll, describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import type { AuditSource } from "../../../src/audit/source.ts";
import { withoutShared } from "../../support/shared.ts";
import { checkFhir, convertedSchema, fhirErrors, fhirValidatorClasspath, validate } from "./tools.ts";

/**
 * Declares "<what> against the DICOM audit schema" and "<what> against HL7's R4 definitions":
 * every fact of `facts()`, rendered with the default codes as `source`, validates with 0 errors.
 * `file` is the calling test file (import.meta.filename), named in the skip reason.
 */
export function describeAuditJudges(
  file: string,
  what: string,
  source: AuditSource,
  facts: () => Promise<Record<string, AuditFact>>,
): void {
  const codes = defaultAuditCodes();

  describe.skipIf(withoutShared(file))(`${what} against the DICOM audit schema`, () => {
    let rng: string;
    beforeAll(() => {
      rng = convertedSchema();
    });
    it("validates every record", async () => {
      const docs = Object.fromEntries(
        Object.entries(await facts()).map(([n, f]) => [n, renderAuditMessage(f, codes, source)]),
      );
      expect(validate(rng, docs)).toEqual({});
    });
  });

  describe(`${what} against HL7's R4 definitions`, () => {
    let classpath: string;
    beforeAll(() => {
      classpath = fhirValidatorClasspath();
    }, 900_000);
    it("0 errors for every record", { timeout: 900_000 }, async () => {
      const events = Object.fromEntries(
        Object.entries(await facts()).map(([n, f]) => [n, renderFhirAuditEvent(f, codes, source)]),
      );
      expect(fhirErrors(checkFhir(classpath, events))).toEqual({});
    });
  });
}
