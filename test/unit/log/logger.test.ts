import { describe, expect, it } from "vitest";
import {
  CENSOR,
  createRootLogger,
  logger,
  PHI_PATHS,
  parseModuleLevels,
  scrubText,
  setStudyRefKey,
  studyRef,
  studyRefWith,
} from "../../../src/log/logger.ts";

const UID = "1.2.826.0.1.3680043.8.498.12345678901234567890";
const ACC = "ACC-987654";
const NAME = "DOE^JANE";

/** A logger writing into an array of parsed JSON lines. */
function capture(level = "trace") {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const root = createRootLogger(level, {
    write(s: string) {
      raw.push(s);
      lines.push(JSON.parse(s));
    },
  });
  return { root, lines, raw };
}

/** An object with `value` at the dotted path, '*' standing for an arbitrary key. */
function at(path: string, value: unknown): Record<string, unknown> {
  return path
    .split(".")
    .reverse()
    .reduce<unknown>((v, k) => ({ [k === "*" ? "anything" : k]: v }), value) as Record<string, unknown>;
}

describe("PHI redaction", () => {
  it("redacts every configured PHI path", () => {
    const { root, raw } = capture();
    for (const p of PHI_PATHS) root.info(at(p, UID), "x");
    expect(raw).toHaveLength(PHI_PATHS.length);
    for (const [i, line] of raw.entries()) {
      expect(line, PHI_PATHS[i]).not.toContain(UID);
      expect(line, PHI_PATHS[i]).toContain(CENSOR);
    }
  });

  it("redacts PHI keys at any depth, in any spelling, and DICOM JSON tags", () => {
    const { root, raw } = capture();
    root.info(
      {
        task: { status: { steps: [{ outputs: { report: { patient_name: NAME, AccessionNumber: ACC } } }] } },
        a: { b: { c: { d: { PatientID: "MRN-1", "study-instance-uid": UID } } } },
        dicom: { "00100010": { vr: "PN", Value: [{ Alphabetic: NAME }] }, "0020000D": { vr: "UI", Value: [UID] } },
      },
      "deep",
    );
    const out = raw.join("");
    for (const phi of [NAME, ACC, "MRN-1", UID]) expect(out).not.toContain(phi);
  });

  it("keeps what is safe to log", () => {
    const { root, lines } = capture();
    root.info(
      {
        workflow: "head-ct",
        modality: "CT",
        sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
        node: "10.0.12.7",
        version: "1.2.3",
      },
      "kept",
    );
    expect(lines[0]).toMatchObject({
      workflow: "head-ct",
      modality: "CT",
      sopClassUID: "1.2.840.10008.5.1.4.1.1.2",
      node: "10.0.12.7",
      version: "1.2.3",
      msg: "kept",
    });
  });

  it("scrubs UIDs from messages, format arguments, errors and child bindings", () => {
    const { root, raw } = capture();
    root.info(`study ${UID} arrived`);
    root.warn({ detail: "x" }, "retrying %s %o", UID, { studyInstanceUID: UID });
    const err = new TypeError(`cannot read ${UID}`);
    root.error({ err }, "failed");
    root.child({ study: { studyInstanceUID: UID }, note: `uid=${UID}` }).info("child");
    logger("ingest", root)
      .child({ task: "t" })
      .child({ deeper: { accessionNumber: ACC, note: UID } })
      .info("grandchild");
    const out = raw.join("");
    expect(raw).toHaveLength(5);
    expect(out).not.toContain(UID);
    expect(out).not.toContain(ACC);
    expect(out).not.toContain(UID.slice(0, 20)); // not even partly
    expect(JSON.parse(raw[2]!).err).toMatchObject({ type: "TypeError", message: "cannot read [UID]" });
    expect(JSON.parse(raw[2]!).err.stack).toContain("TypeError: cannot read [UID]");
    // the caller's objects are not changed
    expect(err.message).toBe(`cannot read ${UID}`);
  });

  it("recognises 2.25 UUID-derived UIDs and leaves IPs and standard UIDs alone", () => {
    expect(scrubText("2.25.329800735698586629295641978511506172918 x")).toBe("[UID] x");
    expect(scrubText("from 192.168.1.20 via 1.2.840.10008.1.2.1")).toBe("from 192.168.1.20 via 1.2.840.10008.1.2.1");
  });

  it("survives cycles", () => {
    const { root, lines } = capture();
    const o: Record<string, unknown> = { a: 1 };
    o.self = o;
    root.info(o, "cyclic");
    expect(lines[0]).toMatchObject({ a: 1, self: "[Circular]" });
  });
});

describe("module levels", () => {
  it("parses module=level pairs and reports what it cannot use", () => {
    const { levels, errors } = parseModuleLevels("ingest=debug, kube=warn,audit=loud,broken");
    expect([...levels]).toEqual([
      ["ingest", "debug"],
      ["kube", "warn"],
    ]);
    expect(errors).toHaveLength(2);
    expect(errors.join()).toMatch(/loud/);
  });

  it("gives a module its own level", () => {
    const { root, lines } = capture("info");
    const levels = new Map([["ingest", "debug"]]);
    logger("ingest", root, levels).debug("shown");
    logger("kube", root, levels).debug("hidden");
    expect(lines.map((l) => [l.module, l.msg])).toEqual([["ingest", "shown"]]);
  });
});

describe("studyRef", () => {
  const K1 = "site-one-secret-key-0123456789";
  const K2 = "site-two-secret-key-0123456789";

  it("is stable for a key, different under another key, and does not reveal the UID", () => {
    const r = studyRefWith(K1, UID);
    expect(r).toMatch(/^s-[0-9a-f]{16}$/);
    expect(studyRefWith(K1, UID)).toBe(r);
    expect(studyRefWith(K2, UID)).not.toBe(r);
    expect(studyRefWith(K1, `${UID}1`)).not.toBe(r);
    expect(r).not.toContain(UID.slice(-6));
  });

  it("ignores DICOM padding so the same study always gets the same reference", () => {
    expect(studyRefWith(K1, `${UID}\0`)).toBe(studyRefWith(K1, UID));
    expect(studyRefWith(K1, ` ${UID} `)).toBe(studyRefWith(K1, UID));
  });

  it("uses the configured key, and refuses a key too short to be secret", () => {
    setStudyRefKey(K1);
    expect(studyRef(UID)).toBe(studyRefWith(K1, UID));
    setStudyRefKey(K2);
    expect(studyRef(UID)).toBe(studyRefWith(K2, UID));
    expect(() => setStudyRefKey("short")).toThrow(/at least 16 bytes/);
  });
});
