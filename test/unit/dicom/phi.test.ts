import { describe, expect, it } from "vitest";
import type { Study } from "../../../src/api/v1alpha1/study.ts";
import { classify, classifyKeyword, isLoggable, MASK, maskStudy } from "../../../src/dicom/phi.ts";
import { SUMMARY_ATTRIBUTES } from "../../../src/dicom/summary.ts";

describe("PHI classification", () => {
  it.each([
    ["00080060", "CS", "safe"], // Modality
    ["00080016", "UI", "safe"], // SOP Class UID
    ["00180015", "CS", "safe"], // Body Part Examined
    ["00100010", "PN", "identifier"], // Patient Name
    ["00100020", "LO", "identifier"], // Patient ID
    ["00100030", "DA", "identifier"], // Patient Birth Date: the patient group is all identifying
    ["00080050", "SH", "identifier"], // Accession Number
    ["0020000D", "UI", "identifier"], // Study Instance UID
    ["00080080", "LO", "identifier"], // Institution Name
    ["00081010", "SH", "identifier"], // Station Name
    ["0008103E", "LO", "free-text"], // Series Description
    ["00080020", "DA", "date"], // Study Date (unlisted, by VR)
    ["00091001", "PN", "identifier"], // a private person name
    ["00091002", "UI", "identifier"], // any other UID
    ["00091003", "US", "unknown"],
  ])("%s (%s) is %s", (tag, vr, cls) => expect(classify(tag, vr)).toBe(cls));

  it("only safe attributes are loggable, and every summary attribute is safe", () => {
    expect(isLoggable("00080060", "CS")).toBe(true);
    expect(isLoggable("00091003", "US")).toBe(false);
    for (const tag of SUMMARY_ATTRIBUTES) expect(isLoggable(tag), tag).toBe(true);
    expect(classifyKeyword("PatientName")).toBe("identifier");
    expect(classifyKeyword("NoSuchKeyword")).toBe("unknown");
  });

  it("maskStudy hides identifiers and free text and keeps what routing shows", () => {
    const s: Study = {
      studyInstanceUID: "1.2.3.4",
      accessionNumber: "ACC1",
      studyDescription: "CT HEAD for John Doe",
      callingAETitle: "CT01",
      series: [
        {
          seriesInstanceUID: "1.2.3.4.1",
          modality: "CT",
          bodyPartExamined: "HEAD",
          seriesDescription: "John's head",
          sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
          numberOfInstances: 3,
          attributes: {
            "00080060": { vr: "CS", Value: ["CT"] },
            "00080080": { vr: "LO", Value: ["General Hospital"] },
          },
        },
      ],
    };
    const m = maskStudy(s);
    const text = JSON.stringify(m);
    expect(text).not.toMatch(/1\.2\.3\.4|ACC1|John|General Hospital/);
    expect(m.accessionNumber).toBe(MASK);
    expect(m.studyInstanceUID).toMatch(/^s-[0-9a-f]{16}$/);
    expect(m.series[0]).toMatchObject({
      modality: "CT",
      bodyPartExamined: "HEAD",
      numberOfInstances: 3,
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
    });
    expect(m.callingAETitle).toBe("CT01");
  });
});
