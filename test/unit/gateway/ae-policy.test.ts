import { describe, expect, it } from "vitest";
import { checkAssociation, parseAETitles, parseSources } from "../../../src/gateway/ae-policy.ts";

describe("AE allow-lists", () => {
  const policy = {
    calledAETitles: ["RADFLOW", "RADFLOW_STAT"],
    sources: parseSources("CT_EAST=RADFLOW|RADFLOW_STAT; MR1=RADFLOW\nPACS"),
  };
  it.each([
    ["CT_EAST", "RADFLOW", { ok: true }],
    ["CT_EAST", "RADFLOW_STAT", { ok: true }],
    ["MR1", "RADFLOW", { ok: true }],
    ["MR1", "RADFLOW_STAT", { ok: false, reason: "called-ae" }],
    ["PACS", "RADFLOW_STAT", { ok: true }],
    ["PACS", "OTHER", { ok: false, reason: "called-ae" }],
    ["UNKNOWN", "RADFLOW", { ok: false, reason: "calling-ae" }],
    ["ct_east", "RADFLOW", { ok: false, reason: "calling-ae" }],
    ["CT_EAST   ", "RADFLOW  ", { ok: true }],
  ])("%s → %s", (calling, called, want) => {
    expect(checkAssociation(policy, calling, called)).toEqual(want);
  });

  it("without sources any caller may use the gateway's titles", () => {
    const open = { calledAETitles: ["RADFLOW"], sources: new Map() };
    expect(checkAssociation(open, "ANYONE", "RADFLOW")).toEqual({ ok: true });
    expect(checkAssociation(open, "ANYONE", "OTHER")).toEqual({ ok: false, reason: "called-ae" });
  });

  it("refuses titles that are not AE titles", () => {
    expect(() => parseSources("THIS_IS_LONGER_THAN_16=X")).toThrow(/1-16/);
    expect(() => parseSources("A=B\\C")).toThrow(/not valid/);
    expect(() => parseAETitles("OK,")).not.toThrow();
    expect(() => parseAETitles("BACK\\SLASH")).toThrow(/not valid/);
  });
});
