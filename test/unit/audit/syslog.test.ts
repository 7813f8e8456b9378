import { afterEach, describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import { renderAuditMessage } from "../../../src/audit/dicom-audit-message.ts";
import { OctetFrameDecoder, octetFrame, syslogMessage, TlsSyslogClient } from "../../../src/audit/syslog.ts";
import { SyslogReceiver, selfSigned } from "../../support/tls-syslog-receiver.ts";
import { SOURCE, sampleFact } from "./sample.ts";
import { requireTool } from "./tools.ts";

const XML = '<?xml version="1.0" encoding="UTF-8"?><AuditMessage><X d="Ünïcødé 北京 🩻"/></AuditMessage>';
const header = { time: "2025-03-14T09:26:53.589+01:00", hostname: "radflow-0", procId: "4242", msgId: "110104" };

describe("RFC 5424 message", () => {
  it("has PRI 85, version 1, UTC timestamp, host, IHE+SOLE, PROCID, MSGID, no SD, then BOM and UTF-8 XML", () => {
    const m = syslogMessage(header, XML);
    const prefix = "<85>1 2025-03-14T08:26:53.589Z radflow-0 IHE+SOLE 4242 110104 - ";
    expect(m.subarray(0, prefix.length).toString("ascii")).toBe(prefix);
    expect([...m.subarray(prefix.length, prefix.length + 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(m.subarray(prefix.length + 3).toString("utf8")).toBe(XML);
  });

  it("keeps header fields to printable ASCII and their RFC lengths", () => {
    const m = syslogMessage(
      { ...header, hostname: "host with spaces", procId: "", msgId: "X".repeat(40) },
      "<a/>",
    ).toString("utf8");
    expect(m).toMatch(/^<85>1 \S+ host_with_spaces IHE\+SOLE - X{32} - /);
  });

  it("refuses a time it cannot read", () => {
    expect(() => syslogMessage({ ...header, time: "yesterday" }, XML)).toThrow(/timestamp/);
  });
});

describe("RFC 5425 framing", () => {
  it("counts octets, not characters, for an audit message with a non-ASCII description", () => {
    const fact = { ...sampleFact("TaskFailed"), description: "Befund: Blutung großflächig — 出血 🩻" };
    const m = syslogMessage(header, renderAuditMessage(fact, defaultAuditCodes(), SOURCE));
    const text = m.toString("utf8");
    expect(m.length).toBeGreaterThan(text.length); // the multi-byte characters make the difference
    const f = octetFrame(m);
    expect(f.toString("ascii", 0, f.indexOf(0x20))).toBe(String(m.length));
    expect(f.length).toBe(String(m.length).length + 1 + m.length);
    expect(new OctetFrameDecoder().push(f)).toEqual([m]);
    expect(text).toContain("Blutung großflächig — 出血 🩻");
  });

  it("decodes a stream split anywhere back into the same messages", () => {
    const msgs = [syslogMessage(header, XML), syslogMessage({ ...header, msgId: "TaskFailed" }, "<b>é</b>")];
    const stream = Buffer.concat(msgs.map(octetFrame));
    for (let cut = 1; cut < stream.length; cut += 7) {
      const d = new OctetFrameDecoder();
      const out = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(out).toEqual(msgs);
    }
    expect(() => new OctetFrameDecoder().push(Buffer.from("12x <85>"))).toThrow(/MSG-LEN/);
  });
});

describe("TLS client", () => {
  requireTool("openssl");
  const server = selfSigned();
  const receivers: SyslogReceiver[] = [];
  const clients: TlsSyslogClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
  });
  const receiver = async (clientCA?: string) => {
    const r = new SyslogReceiver(server, clientCA);
    receivers.push(r);
    await r.start();
    return r;
  };
  const client = (o: Partial<ConstructorParameters<typeof TlsSyslogClient>[0]> & { port: number }) => {
    const c = new TlsSyslogClient({ host: "127.0.0.1", ca: server.cert, connectTimeoutMs: 2000, ...o });
    clients.push(c);
    return c;
  };
  const until = async (cond: () => boolean) => {
    for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
  };

  it("delivers frames in order over one verified connection", async () => {
    const r = await receiver();
    const c = client({ port: r.port });
    const msgs = [1, 2, 3].map((i) => syslogMessage({ ...header, procId: String(i) }, XML));
    for (const m of msgs) await c.send(octetFrame(m));
    await until(() => r.messages.length === 3);
    expect(r.messages).toEqual(msgs);
    expect(r.errors).toEqual([]);
  });

  it("fails while the repository is down and reconnects when it is back", async () => {
    const r = await receiver();
    const c = client({ port: r.port });
    await c.send(octetFrame(syslogMessage(header, "<one/>")));
    await until(() => r.messages.length === 1);
    await r.stop();
    await new Promise((res) => setTimeout(res, 50)); // let the client see the close
    await expect(c.send(octetFrame(syslogMessage(header, "<two/>")))).rejects.toThrow(/syslog TLS/);
    await r.start(); // same port
    await c.send(octetFrame(syslogMessage(header, "<three/>")));
    await until(() => r.messages.length === 2);
    expect(r.texts().map((t) => t.slice(t.indexOf("<", 5)))).toEqual(["<one/>", "<three/>"]);
  });

  it("refuses a server its CA did not sign", async () => {
    const r = await receiver();
    const c = client({ port: r.port, ca: selfSigned().cert });
    await expect(c.send(octetFrame(syslogMessage(header, XML)))).rejects.toThrow(/certificate/i);
    expect(r.messages).toEqual([]);
  });

  it("presents a client certificate to a repository that requires one", async () => {
    const id = selfSigned("radflow-operator");
    const r = await receiver(id.cert);
    await expect(client({ port: r.port }).send(octetFrame(syslogMessage(header, XML)))).rejects.toThrow();
    await client({ port: r.port, cert: id.cert, key: id.key }).send(octetFrame(syslogMessage(header, XML)));
    await until(() => r.messages.length === 1);
    expect(r.messages.length).toBe(1);
  });
});
