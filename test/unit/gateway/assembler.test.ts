// Study assembly over a real journal in a temporary folder; JetStream is a recording function
// here (the integration test uses the real one).
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Assembler, type Publish } from "../../../src/gateway/assembler.ts";
import { Journal } from "../../../src/gateway/journal.ts";
import { StudyStorage, uidKey } from "../../../src/gateway/storage.ts";
import { makeInstance } from "./dicom-fixture.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Sent {
  id: string;
  event: {
    id: string;
    radflowrevision: number;
    data: {
      series: { seriesInstanceUID: string; numberOfInstances: number; modality: string }[];
      location: string;
      callingAETitle?: string;
    };
  };
}

function recorder(fail = 0) {
  const sent: Sent[] = [];
  const seen = new Set<string>();
  let failures = fail;
  const publish: Publish = async (_s, payload, id) => {
    if (failures-- > 0) throw new Error("no responders");
    const duplicate = seen.has(id);
    seen.add(id);
    if (!duplicate) sent.push({ id, event: JSON.parse(payload) });
    return { duplicate };
  };
  return { sent, publish };
}

async function setup(root?: string) {
  const dir = root ?? mkdtempSync(path.join(tmpdir(), "rf-asm-"));
  if (!root) dirs.push(dir);
  const storage = new StudyStorage(dir);
  await storage.init();
  const journal = new Journal(dir);
  await journal.init();
  return { dir, storage, journal };
}

async function store(storage: StudyStorage, study: string, series: number, i: number) {
  const f = storage.begin();
  f.write(
    makeInstance({
      study,
      series: `${study}.${series}`,
      sop: `${study}.${series}.${i}`,
      modality: series === 1 ? "CT" : "MR",
    }),
  );
  const r = await storage.commit(f);
  if (!r.ok) throw new Error(r.reason);
  return r.instance;
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(f: () => boolean, ms = 3000) {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error("timed out");
    await wait(10);
  }
}

describe("study assembly", { timeout: 60_000 }, () => {
  it("publishes one event per study after the quiet window, with its series summary", async () => {
    const { storage, journal } = await setup();
    const { sent, publish } = recorder();
    const a = new Assembler(journal, publish, { quietMs: 150, maxWaitMs: 5000 });
    for (let i = 1; i <= 3; i++) await a.add({ ...(await store(storage, "1.2.9", 1, i)), callingAETitle: "CT1" });
    await a.add(await store(storage, "1.2.9", 2, 1));
    await a.add(await store(storage, "1.2.8", 1, 1));
    await wait(60);
    expect(sent).toEqual([]); // still inside the window
    await until(() => sent.length === 2);
    await wait(300);
    expect(sent).toHaveLength(2);
    const ev = sent.find((s) => s.id === `${uidKey("study", "1.2.9")}-0`)?.event;
    expect(ev?.radflowrevision).toBe(0);
    expect(ev?.data.location).toBe(`studies/${uidKey("study", "1.2.9")}`);
    expect(ev?.data.callingAETitle).toBe("CT1");
    expect(ev?.data.series.map((s) => [s.seriesInstanceUID, s.modality, s.numberOfInstances])).toEqual([
      ["1.2.9.1", "CT", 3],
      ["1.2.9.2", "MR", 1],
    ]);
    await a.stop();
  });

  it("publishes at the maximum wait even while instances keep coming", async () => {
    const { storage, journal } = await setup();
    const { sent, publish } = recorder();
    const a = new Assembler(journal, publish, { quietMs: 200, maxWaitMs: 400 });
    const t0 = Date.now();
    for (let i = 1; i <= 8; i++) {
      await a.add(await store(storage, "1.2.7", 1, i));
      await wait(100);
    }
    await until(() => sent.length >= 1);
    expect(sent[0]?.event.data.series[0]?.numberOfInstances).toBeLessThan(8);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    // the rest follows once the senders pause (on a loaded machine the maximum wait may cut twice)
    await until(() => sent.at(-1)?.event.data.series[0]?.numberOfInstances === 8);
    expect(sent.map((s) => s.event.radflowrevision)).toEqual(sent.map((_, i) => i));
    await a.stop();
  });

  it("a late instance makes a follow-up event; a resent one does not", async () => {
    const { storage, journal } = await setup();
    const { sent, publish } = recorder();
    const a = new Assembler(journal, publish, { quietMs: 80, maxWaitMs: 1000 });
    await a.add(await store(storage, "1.2.6", 1, 1));
    await until(() => sent.length === 1);
    await a.add(await store(storage, "1.2.6", 1, 1)); // the same SOP instance again
    await wait(250);
    expect(sent).toHaveLength(1);
    await a.add(await store(storage, "1.2.6", 1, 2));
    await until(() => sent.length === 2);
    expect(sent.map((s) => s.id)).toEqual([`${uidKey("study", "1.2.6")}-0`, `${uidKey("study", "1.2.6")}-1`]);
    expect(sent[1]?.event.data.series[0]?.numberOfInstances).toBe(2);
    await a.stop();
  });

  it("keeps retrying while JetStream is away, and publishes once", async () => {
    const { storage, journal } = await setup();
    const { sent, publish } = recorder(2);
    const a = new Assembler(journal, publish, { quietMs: 50, maxWaitMs: 1000 });
    await a.add(await store(storage, "1.2.5", 1, 1));
    await until(() => sent.length === 1, 5000);
    expect(a.pending()).toBe(0);
    await a.stop();
  });

  it("after a crash: acknowledged instances are published, an unacknowledged publication goes again with the same id and content", async () => {
    const { dir, storage, journal } = await setup();
    // the first life: 2 instances acknowledged, the quiet window never ends (crash)
    const first = recorder();
    const a = new Assembler(journal, first.publish, { quietMs: 60_000, maxWaitMs: 60_000 });
    await a.add(await store(storage, "1.2.4", 1, 1));
    await a.add(await store(storage, "1.2.4", 1, 2));
    expect(first.sent).toEqual([]);
    // a second study whose publication was under way: intent journaled, no acknowledgement
    await a.add(await store(storage, "1.2.3", 1, 1));
    await journal.append(uidKey("study", "1.2.3"), [{ t: "p", rev: 0, n: 1, at: Date.parse("2026-01-01T00:00:00Z") }]);
    await a.add(await store(storage, "1.2.3", 1, 2)); // came after the snapshot
    // a torn last line, as a crash mid-write leaves it
    appendFileSync(path.join(journal.dir, `${uidKey("study", "1.2.4")}.jsonl`), '{"t":"i","at":1,"stu');

    // the second life
    const again = await setup(dir);
    const second = recorder();
    const b = new Assembler(again.journal, second.publish, { quietMs: 100, maxWaitMs: 1000 });
    const rec = await b.recover();
    expect(rec).toEqual({ studies: 2, pending: 2, republished: 1 });
    await until(() => second.sent.length === 3);
    await wait(300);
    const ids = second.sent.map((s) => s.id).sort();
    expect(ids).toEqual(
      [`${uidKey("study", "1.2.4")}-0`, `${uidKey("study", "1.2.3")}-0`, `${uidKey("study", "1.2.3")}-1`].sort(),
    );
    const republished = second.sent.find((s) => s.id === `${uidKey("study", "1.2.3")}-0`);
    expect(republished?.event.data.series[0]?.numberOfInstances).toBe(1); // exactly what the intent covered
    expect((republished?.event as unknown as { time?: string } | undefined)?.time).toBe("2026-01-01T00:00:00.000Z");
    await b.stop();

    // a third life publishes nothing more
    const third = await setup(dir);
    const none = recorder();
    const c = new Assembler(third.journal, none.publish, { quietMs: 50, maxWaitMs: 1000 });
    expect(await c.recover()).toEqual({ studies: 2, pending: 0, republished: 0 });
    await wait(200);
    expect(none.sent).toEqual([]);
    await c.stop();
    await a.stop();
    expect(
      readFileSync(path.join(dir, ".radflow-gateway/journal", `${uidKey("study", "1.2.3")}.jsonl`), "utf8"),
    ).toContain('"t":"d","rev":1');
  });
});

describe("study storage", () => {
  it("keeps only whole, checked instances, under hashed names", async () => {
    const { dir, storage } = await setup();
    const inst = await store(storage, "1.2.840.99", 1, 1);
    expect(inst.file).toMatch(/^studies\/[0-9a-f]{32}\/[0-9a-f]{16}\/[0-9a-f]{32}\.dcm$/);
    expect(inst.file).not.toContain("1.2.840");
    const whole = makeInstance({ study: "1.2.840.99", series: "1.2.840.99.1", sop: "1.2.840.99.1.2" });
    for (const [bytes, status] of [
      [whole.subarray(0, whole.length - 2), 0xc000],
      [Buffer.from("not dicom"), 0xc000],
    ] as const) {
      const f = storage.begin();
      f.write(bytes);
      const r = await storage.commit(f);
      expect(r).toMatchObject({ ok: false, status });
    }
    const f = storage.begin();
    f.write(whole);
    expect(await storage.commit(f, { sopInstanceUID: "1.2.3.4.5" })).toMatchObject({ ok: false, status: 0xa900 });
    // nothing half-written is left anywhere
    const { readdirSync } = await import("node:fs");
    expect(readdirSync(storage.incoming)).toEqual([]);
    expect(readdirSync(path.join(dir, path.dirname(inst.file)))).toEqual([path.basename(inst.file)]);
  });
});

describe("two replicas on one volume (two assemblers, one journal folder)", { timeout: 60_000 }, () => {
  it("instances at both: one event with all of them, the revision taken once", async () => {
    const { dir, storage, journal } = await setup();
    const other = await setup(dir);
    const { sent, publish } = recorder(); // one JetStream: a repeated id would be dropped as a duplicate
    const ids: string[] = [];
    const counting: Publish = async (s, p, id) => {
      ids.push(id);
      return publish(s, p, id);
    };
    // a window long enough that a loaded machine stores every instance inside it
    const a = new Assembler(journal, counting, { quietMs: 1500, maxWaitMs: 30_000 });
    const b = new Assembler(other.journal, counting, { quietMs: 1500, maxWaitMs: 30_000 });
    for (let i = 1; i <= 4; i++) {
      await a.add(await store(storage, "1.2.50", 1, i));
      await b.add(await store(other.storage, "1.2.50", 2, i));
    }
    await b.add(await store(other.storage, "1.2.50", 2, 5)); // b's last instance comes later
    await until(
      () =>
        sent
          .at(-1)
          ?.event.data.series.map((s) => s.numberOfInstances)
          .join() === "4,5",
      20_000,
    );
    await wait(2000);
    // each revision published once, by one of them, in order (none taken by both)
    const key = uidKey("study", "1.2.50");
    expect(ids).toEqual(ids.map((_, i) => `${key}-${i}`));
    // then a late instance at one replica: the next revision, with everything
    const late = sent.length;
    await a.add(await store(storage, "1.2.50", 1, 9));
    await until(() => sent.length === late + 1, 20_000);
    expect(sent.at(-1)?.event.radflowrevision).toBe(late);
    expect(sent.at(-1)?.event.data.series.map((s) => s.numberOfInstances)).toEqual([5, 5]);
    await wait(2000);
    expect(ids).toEqual(ids.map((_, i) => `${key}-${i}`));
    await Promise.all([a.stop(), b.stop()]);
  });

  it("a lock left by a process that died is taken over", async () => {
    const { journal } = await setup();
    const release = await journal.lock("k", 30_000);
    await expect(journal.lock("k", 30_000, 100)).rejects.toThrow(/timed out/);
    // stale: older than staleMs
    const again = await journal.lock("k", 0, 1000);
    await again();
    await release();
  });
});
