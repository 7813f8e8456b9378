// CEL errors never carry study values (issue 12, item 8): not the values themselves and not values
// derived from them (lower-cased, split, used as a key), because the message is built from the
// expression's syntax tree and a fixed text per kind of error, never from the library's message.
import { describe, expect, it } from "vitest";
import { compileBool } from "../../../src/expr/cel.ts";

const study = {
  studyInstanceUID: "1.2.840.99.778899",
  accessionNumber: "ACC-778899",
  studyDescription: "Jane Doe CT head",
  callingAETitle: "CT01",
  series: [
    {
      seriesInstanceUID: "1.2.840.99.778899.1",
      modality: "CT",
      seriesDescription: "Doe^Jane head",
      numberOfInstances: 3,
    },
  ],
};

// every form of a study value an error might quote
const forms = (v: string) => [v, v.toLowerCase(), v.toUpperCase(), ...v.split(/[-^ .]/).filter((x) => x.length >= 3)];
const secrets = [study.accessionNumber, study.studyDescription, study.studyInstanceUID, "Doe^Jane head"].flatMap(forms);

describe("CEL error text", () => {
  it.each([
    ["int(study.accessionNumber.lowerAscii()) > 0", /^value cannot be converted in int\(\) \(column 1\)$/],
    [
      "int(study.accessionNumber.split('-')[1]) > 0 && int(study.studyDescription) > 0",
      /value cannot be converted in int\(\)/,
    ],
    ["uint(study.series[0].seriesDescription.upperAscii()) > 0u", /value cannot be converted in uint\(\)/],
    ["bool(study.studyDescription.lowerAscii())", /value cannot be converted in bool\(\)/],
    ["{'x': 1}[study.accessionNumber.lowerAscii()] == 1", /^no such field or key/],
    ["{'x': 1}[study.studyDescription.split(' ')[1]] == 1", /^no such field or key/],
    ["study.series[7].modality == 'CT'", /^index out of range/],
    ["study.nosuchfield == 'x'", /^no such field or key at \.nosuchfield \(column 6\)$/],
    ["study.accessionNumber.lowerAscii() + 1 == 2", /^no function for these argument types in operator \+/],
    [
      "timestamp(study.studyDescription) > timestamp('2020-01-01T00:00:00Z')",
      /value cannot be converted in timestamp\(\)/,
    ],
    ["study.accessionNumber.matches(study.studyDescription + '(')", /^invalid regular expression in matches\(\)/],
    ["duration(study.accessionNumber.lowerAscii()) > duration('1s')", /in duration\(\)/],
  ])("%s: %s, with no study value in it", (expr, want) => {
    const r = compileBool(expr)({ study });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toMatch(want);
    for (const s of secrets) expect(r.error.toLowerCase()).not.toContain(s.toLowerCase());
  });

  it("names the line and column in a multi-line expression", () => {
    const r = compileBool("study.series.size() > 0 &&\n  int(study.accessionNumber) > 0")({ study });
    expect(r).toEqual({ ok: false, error: "value cannot be converted in int() (line 2, column 3)" });
  });
});
