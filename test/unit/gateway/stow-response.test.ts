import { describe, expect, it } from "vitest";
import { stowResponse } from "../../../src/gateway/stow.ts";

describe("STOW-RS response (PS3.18 10.5.3)", () => {
  const ok = { ok: true, sopClassUID: "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: "1.2.3.1" };
  const bad = { ok: false, failureReason: 0xc000 };
  it.each([
    [[ok, ok], 200],
    [[ok, bad], 202],
    [[bad, bad], 409],
    [[], 400],
  ])("%j → HTTP %i", (results, status) => {
    expect(stowResponse(results).status).toBe(status);
  });
  it("lists stored instances and failures with their reasons", () => {
    const { body } = stowResponse([ok, bad]);
    expect(body["00081199"]).toEqual({
      vr: "SQ",
      Value: [
        { "00081150": { vr: "UI", Value: [ok.sopClassUID] }, "00081155": { vr: "UI", Value: [ok.sopInstanceUID] } },
      ],
    });
    expect(body["00081198"]).toEqual({ vr: "SQ", Value: [{ "00081197": { vr: "US", Value: [0xc000] } }] });
  });
});
