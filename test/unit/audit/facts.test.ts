// The patient ID for the audit record's Patient participant, from a study event's DICOM JSON.
import { describe, expect, it } from "vitest";
import { patientIdOf } from "../../../src/audit/facts.ts";

describe("patientIdOf", () => {
  it("reads (0010,0020) from the first series that has it", () => {
    expect(
      patientIdOf([
        { attributes: { "00080060": { Value: ["CT"] } } },
        { attributes: { "00100020": { Value: ["PAT-7"] } } },
        { attributes: { "00100020": { Value: ["OTHER"] } } },
      ]),
    ).toBe("PAT-7");
  });

  it("is undefined when no series carries it, or it is empty", () => {
    expect(patientIdOf([{}, { attributes: { "00100020": { Value: [""] } } }, { attributes: { "00100020": {} } }])).toBe(
      undefined,
    );
  });
});
