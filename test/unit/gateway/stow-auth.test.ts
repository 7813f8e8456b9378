// STOW-RS bearer tokens (src/gateway/stow-auth.ts) and the gateway's TLS / token flags.
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseGatewayArgs } from "../../../src/cmd/gateway.ts";
import { BearerTokens } from "../../../src/gateway/stow-auth.ts";

const dir = mkdtempSync(path.join(tmpdir(), "rf-gw-auth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("STOW-RS bearer tokens", () => {
  it("takes any token of the file, refuses others with the RFC 6750 challenge, and follows a rotated file", async () => {
    const file = path.join(dir, "tokens");
    writeFileSync(file, "# clients\nalpha-token\n\n  beta-token  \n");
    const t = new BearerTokens(file, 0);
    await t.load();
    expect(await t.check("Bearer alpha-token")).toEqual({ ok: true });
    expect(await t.check("bearer beta-token")).toEqual({ ok: true });
    expect(await t.check(undefined)).toMatchObject({
      ok: false,
      status: 401,
      challenge: 'Bearer realm="radflow-stow"',
    });
    expect(await t.check("Bearer gamma")).toMatchObject({
      ok: false,
      challenge: expect.stringContaining("invalid_token"),
    });
    expect(await t.check("Basic YWxwaGEtdG9rZW4=")).toMatchObject({ ok: false });
    expect(await t.check("Bearer # clients")).toMatchObject({ ok: false });
    writeFileSync(file, "gamma\n");
    utimesSync(file, new Date(), new Date(Date.now() + 5000)); // a new mtime, whatever the clock's grain
    expect(await t.check("Bearer gamma")).toEqual({ ok: true });
    expect(await t.check("Bearer alpha-token")).toMatchObject({ ok: false });
  });

  it("a file without a token is a start-up error, not an open endpoint", async () => {
    const file = path.join(dir, "empty");
    writeFileSync(file, "# nothing yet\n");
    await expect(new BearerTokens(file).load()).rejects.toThrow(/no token/);
  });
});

describe("gateway flags: TLS and STOW-RS tokens", () => {
  it("reads them from flags and the environment, and refuses half a TLS configuration", () => {
    const c = parseGatewayArgs(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem"], {});
    expect(c !== "help" && c.dicomTls).toEqual({ certFile: "c.pem", keyFile: "k.pem", caFile: "ca.pem" });
    const e = parseGatewayArgs([], { RADFLOW_STOW_TOKEN_FILE: "/run/secrets/stow", RADFLOW_GATEWAY_AUDIT: "syslog" });
    expect(e !== "help" && [e.stowTokenFile, e.audit?.mode]).toEqual(["/run/secrets/stow", "syslog"]);
    expect(() => parseGatewayArgs(["--tls-cert", "c.pem"], {})).toThrow(/both or neither/);
    expect(() => parseGatewayArgs(["--tls-ca", "ca.pem"], {})).toThrow(/needs --tls-cert/);
    expect(() => parseGatewayArgs(["--audit", "loud"], {})).toThrow(/fhir, syslog or off/);
  });
});
