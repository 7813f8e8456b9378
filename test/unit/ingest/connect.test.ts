import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Authenticator, nkeys } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { connectionOptions, natsSettingsFromEnv, reconnectDelay } from "../../../src/ingest/connect.ts";

const dir = mkdtempSync(path.join(tmpdir(), "radflow-nats-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
};
const auth = (o: ReturnType<typeof connectionOptions>) => o.authenticator as Authenticator;

describe("NATS connection options", () => {
  it("reconnects forever and waits for the first server by default", () => {
    const o = connectionOptions({ servers: ["nats://a:4222", "nats://b:4222"] }, () => 5);
    expect(o).toMatchObject({
      servers: ["nats://a:4222", "nats://b:4222"],
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    expect(o.reconnectDelayHandler?.()).toBe(5);
    expect(o.authenticator).toBeUndefined();
    expect(o.tls).toBeUndefined();
  });

  it("backs off from 250 ms to at most 30 s, with jitter", () => {
    expect(reconnectDelay(0)).toBeGreaterThanOrEqual(200);
    expect(reconnectDelay(0)).toBeLessThanOrEqual(300);
    for (const n of [8, 20, 1000]) expect(reconnectDelay(n)).toBeLessThanOrEqual(36_000);
    expect(reconnectDelay(20)).toBeGreaterThanOrEqual(24_000);
  });

  it("reads user and password, re-reading a password file on every connect (rotation)", () => {
    const pf = file("password", "s3cret\n");
    const a = auth(connectionOptions({ servers: "nats://x", user: "radflow", passwordFile: pf }, () => 0));
    expect(a()).toEqual({ user: "radflow", pass: "s3cret" });
    writeFileSync(pf, "rotated");
    expect(a()).toEqual({ user: "radflow", pass: "rotated" });
  });

  it("takes a token from a file", () => {
    const a = auth(connectionOptions({ servers: "nats://x", tokenFile: file("token", "tok\n") }, () => 0));
    expect(a()).toEqual({ auth_token: "tok" });
  });

  it("signs the server's nonce with an nkey seed from a file", () => {
    const user = nkeys.createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    const a = auth(connectionOptions({ servers: "nats://x", nkeySeedFile: file("seed", `${seed}\n`) }, () => 0));
    const r = a("nonce-1") as { nkey: string; sig: string };
    expect(r.nkey).toBe(user.getPublicKey());
    expect(user.verify(new TextEncoder().encode("nonce-1"), Buffer.from(r.sig, "base64url"))).toBe(true);
  });

  it("passes TLS files through", () => {
    const o = connectionOptions(
      { servers: "tls://x", tlsCaFile: "/ca.crt", tlsCertFile: "/c.crt", tlsKeyFile: "/c.key" },
      () => 0,
    );
    expect(o.tls).toEqual({ caFile: "/ca.crt", certFile: "/c.crt", keyFile: "/c.key" });
  });

  it("reads RADFLOW_NATS_* variables", () => {
    const s = natsSettingsFromEnv({
      RADFLOW_NATS_URL: "nats://a:1, nats://b:2",
      RADFLOW_NATS_USER: "u",
      RADFLOW_NATS_PASSWORD_FILE: "/p",
      RADFLOW_NATS_CREDS: "/c.creds",
      RADFLOW_NATS_TLS_CA: "/ca",
      RADFLOW_NATS_TOKEN: "",
    });
    expect(s).toMatchObject({
      servers: ["nats://a:1", "nats://b:2"],
      user: "u",
      passwordFile: "/p",
      credsFile: "/c.creds",
      tlsCaFile: "/ca",
    });
    expect(s.token).toBeUndefined();
    expect(natsSettingsFromEnv({}).servers).toEqual(["nats://127.0.0.1:4222"]);
  });
});
