// The audit trail end to end: `radflow operator` (a child process) with a real TLS syslog receiver
// as its Audit Record Repository runs three studies (one through a failing model) while the
// repository is down for 30 s, and every lifecycle fact of the run must reach both sinks exactly
// once — the repository (RFC 5425 frames, RFC 5424 headers, DICOM AuditMessage XML), in order,
// and RADFLOW_AUDIT (FHIR AuditEvents on radflow.audit.<kind>).
//
// Isolation: the operator spools into a syslog spool of this run's own (RADFLOW_AUDIT_SPOOL_NAME),
// its events go out on a subject of this file's own and are routed by AE titles only this file
// uses; FHIR events are picked out by this namespace, these studies and this operator's identity.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AUDIT_STREAM } from "../../src/audit/pipeline.ts";
import { auditSpool } from "../../src/cmd/operator.ts";
import {
  type AuditView,
  auditKey,
  type FhirAuditEventLike,
  parseSyslog,
  viewOfAuditMessage,
  viewOfFhirAuditEvent,
} from "../support/audit-records.ts";
import { countBy, freePort, sleep, studyEvent, uniqueAE } from "../support/e2e.ts";
import { ingesting, useE2ERun } from "../support/e2e-run.ts";
import { SyslogReceiver, selfSigned } from "../support/tls-syslog-receiver.ts";
import { core, waitFor } from "./helpers.ts";
import type { OperatorProcess } from "./operator-process.ts";

const pem = selfSigned();
const receiver = new SyslogReceiver(pem);
const caFile = path.join(mkdtempSync(path.join(tmpdir(), "radflow-e2e-audit-")), "ca.pem");
const run = useE2ERun("e2e-audit", {
  cleanup: async (nats) => {
    await receiver.stop();
    await nats?.jsm.streams.delete(spool.stream).catch(() => undefined);
  },
});
const { ns, id: RUN, uidRoot: UID_ROOT } = run;
const SPOOL_NAME = `e2e-audit-${RUN}`;
const spool = auditSpool(SPOOL_NAME) as NonNullable<ReturnType<typeof auditSpool>>;
const AE_OK = uniqueAE("E2EA-OK-");
const AE_BAD = uniqueAE("E2EA-BAD-");

let auditSince = 0;

beforeAll(async () => {
  writeFileSync(caFile, pem.cert);
  await receiver.start();
});

function operator(identity: string, metricsPort: number): OperatorProcess {
  return run.startOperator({
    identity,
    metricsPort,
    args: ["--syslog-host", "127.0.0.1", "--syslog-port", String(receiver.port), "--syslog-ca", caFile],
    env: { RADFLOW_AUDIT_SPOOL_NAME: SPOOL_NAME },
  });
}

async function backlog(port: number): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^radflow_audit_backlog\{sink="syslog"\} (\d+)/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

const studies: { uid: string; accession: string }[] = [];
/**
 * A record of this run: recorded by one of this file's operator processes (other tests' operators
 * replaying the shared study stream record StudyUnmatched for these studies too) and about this
 * namespace, these studies or these operators.
 */
function isMine(v: AuditView, identities: string[]): boolean {
  const pids = run.operators.map((o) => String(o.proc.pid));
  if (!v.reporter || !pids.includes(v.reporter)) return false;
  if (v.object?.startsWith(`${ns.name}/`)) return true;
  if (v.study && studies.some((s) => s.uid === v.study)) return true;
  if (v.kind === "OperatorStarted" || v.kind === "OperatorStopped")
    return identities.some((id) => v.description?.includes(` ${id} `));
  return false;
}

/** This run's records at the repository, in arrival order; checks every frame's header. */
function syslogViews(identities: string[]): AuditView[] {
  expect(receiver.errors).toEqual([]); // every frame's MSG-LEN counted octets correctly
  const out: AuditView[] = [];
  for (const frame of receiver.messages) {
    const m = parseSyslog(frame);
    const v = viewOfAuditMessage(m.msg);
    if (!isMine(v, identities)) continue;
    expect(m).toMatchObject({ pri: 85, version: 1, appName: "IHE+SOLE", structuredData: "-", bom: true });
    expect(m.msgId).toBe(v.eventId); // MSGID is the EventID code
    out.push(v);
  }
  return out;
}

/** This run's FHIR AuditEvents in RADFLOW_AUDIT, with the kind from the subject checked against the codes. */
async function fhirViews(identities: string[]): Promise<AuditView[]> {
  const msgs = await run.read(AUDIT_STREAM, ["radflow.audit.>"], auditSince);
  const out: AuditView[] = [];
  for (const m of msgs) {
    const v = viewOfFhirAuditEvent(m.json<FhirAuditEventLike>());
    if (!isMine(v, identities)) continue;
    expect(m.subject).toBe(`radflow.audit.${v.kind}`);
    out.push(v);
  }
  return out;
}

const keys = (vs: AuditView[]) => vs.map(auditKey);
function duplicates(vs: AuditView[]): string[] {
  return Object.entries(countBy(keys(vs)))
    .filter(([, n]) => n > 1)
    .map(([k]) => k);
}

let seq = 0;
async function publishStudy(ae: string) {
  const n = ++seq;
  const ev = studyEvent({
    id: `e2e-audit-${RUN}-${n}`,
    studyInstanceUID: `${UID_ROOT}.${n}`,
    accessionNumber: `AUD${n}`,
    calledAETitle: ae,
    callingAETitle: "CT-AUDIT",
  });
  studies.push({ uid: ev.data.studyInstanceUID, accession: ev.data.accessionNumber as string });
  await run.publish(ev);
  return ev;
}

/** Waits until the repository holds every record of this run that RADFLOW_AUDIT holds, and no more arrive. */
async function bothSinksAgree(identities: string[], timeoutMs: number) {
  await waitFor(
    "the repository to hold what RADFLOW_AUDIT holds",
    timeoutMs,
    async () => {
      const [s, f] = [syslogViews(identities), await fhirViews(identities)];
      const sk = new Set(keys(s));
      const fk = new Set(keys(f));
      return {
        done: s.length >= f.length && f.length > 0,
        seen: {
          syslog: s.length,
          fhir: f.length,
          onlyFhir: [...fk].filter((k) => !sk.has(k)),
          onlySyslog: [...sk].filter((k) => !fk.has(k)),
        },
      };
    },
    1000,
  );
  await sleep(2000); // room for a late duplicate
}

describe("audit trail, end to end", () => {
  it("delivers every lifecycle fact of a run to the repository and to RADFLOW_AUDIT exactly once, across a 30 s repository outage", async () => {
    const id1 = `e2e-audit-a-${RUN}`;
    const id2 = `e2e-audit-b-${RUN}`;
    const ids = [id1, id2];
    const port1 = await freePort();
    auditSince = await run.lastSeq(AUDIT_STREAM);
    run.logsOnFailure();
    let op = operator(id1, port1);
    await ingesting(op);
    await run.createWorkflow("audit-ok", AE_OK, [{ name: "segment", env: { KWOK_RESULT: '{"volumeMl":12.5}' } }]);
    await run.createWorkflow("audit-bad", AE_BAD, [{ name: "classify", env: { KWOK_EXIT_CODE: "1" } }]);
    await sleep(1000);

    // 1. the first study, with the repository up
    await publishStudy(AE_OK);
    await run.tasksFinished("audit-ok", 1, 180_000);
    await waitFor("results of the first task published", 30_000, async () => ({
      done: !!(await run.tasks("audit-ok"))[0]?.status?.resultsPublished,
    }));
    await bothSinksAgree(ids, 60_000);
    await waitFor("the spool to be empty", 30_000, async () => ({ done: (await backlog(port1)) === 0 }));
    const beforeOutage = syslogViews(ids).length;

    // 2. the repository goes away for 30 s while two more studies (one failing) run
    const warnings = () => (op.logs().match(/audit records spooled/g) ?? []).length;
    const warnedBefore = warnings();
    await receiver.stop();
    const downAt = Date.now();
    await publishStudy(AE_OK);
    await publishStudy(AE_BAD);
    await waitFor("both tasks to be created", 60_000, async () => {
      const n = (await run.tasks("audit-ok")).length + (await run.tasks("audit-bad")).length;
      return { done: n === 3, seen: n };
    });
    await waitFor("records spooled for the repository", 30_000, async () => ({
      done: ((await backlog(port1)) ?? 0) > 0,
    }));
    // the FHIR copies do not wait for the repository
    const during = (await fhirViews(ids)).filter((v) => v.kind === "TaskCreated").length;
    await sleep(Math.max(0, 30_000 - (Date.now() - downAt)));
    const spooled = (await backlog(port1)) ?? 0;
    await receiver.start();
    expect(during).toBe(3);
    expect(spooled).toBeGreaterThan(0);
    // the outage is reported once — in the log and in `kubectl get events` — not once per record
    expect(warnings() - warnedBefore).toBe(1);
    // (one Event per warning; a repeat of the same note is counted in the Event's series)
    const ms = (t: unknown) => (t ? new Date(t as Date | string).getTime() : 0);
    await waitFor("the AuditBacklog Warning Event", 15_000, async () => {
      const evs = (await core().listNamespacedEvent({ namespace: ns.name })).items.filter(
        (e) => e.reason === "AuditBacklog" && e.type === "Warning",
      );
      const occurrences = evs.reduce((n, e) => n + (e.series?.count ?? e.count ?? 1), 0);
      const last = Math.max(0, ...evs.map((e) => ms(e.series?.lastObservedTime ?? e.eventTime ?? e.lastTimestamp)));
      return { done: occurrences === warnings() && last >= downAt, seen: { occurrences, warnings: warnings(), last } };
    });

    const ok = await run.tasksFinished("audit-ok", 2, 180_000);
    const bad = await run.tasksFinished("audit-bad", 1, 180_000);
    expect(countBy(ok.map((t) => t.status?.phase ?? "-"))).toEqual({ Succeeded: 2 });
    expect(bad[0]?.status?.phase).toBe("Failed");
    await waitFor("results of every task published", 60_000, async () => {
      const ts = [...(await run.tasks("audit-ok")), ...(await run.tasks("audit-bad"))];
      return { done: ts.every((t) => t.status?.resultsPublished) };
    });

    // 3. a graceful stop and a new operator: the first one's OperatorStopped leaves the spool with the second
    expect(await op.stop()).toBe(0);
    op = operator(id2, await freePort());
    await ingesting(op);
    await waitFor("the second operator's start at the repository", 60_000, async () => ({
      done: syslogViews(ids).some((v) => v.kind === "OperatorStarted" && v.description?.includes(id2)),
    }));
    await bothSinksAgree(ids, 60_000);

    const sys = syslogViews(ids);
    const fhir = await fhirViews(ids);
    expect(sys.length).toBeGreaterThan(beforeOutage);
    expect(duplicates(sys)).toEqual([]);
    expect(duplicates(fhir)).toEqual([]);
    expect([...keys(sys)].sort()).toEqual([...keys(fhir)].sort());

    // every lifecycle fact is there
    const tasks = [...ok, ...bad];
    const expected: string[] = [
      `OperatorStarted ${id1}`,
      `OperatorStopped ${id1}`,
      `OperatorStarted ${id2}`,
      `WorkflowCreated ${ns.name}/audit-ok`,
      `WorkflowCreated ${ns.name}/audit-bad`,
      ...studies.map((s) => `StudyReceived ${s.uid}`),
    ];
    for (const t of tasks) {
      const o = `${ns.name}/${t.metadata.name}`;
      const step = t.spec.steps[0]?.name;
      const end = t.status?.phase === "Succeeded" ? "TaskSucceeded" : "TaskFailed";
      expected.push(`TaskCreated ${o}`, `StepStarted ${o} ${step}`, `StepFinished ${o} ${step}`, `${end} ${o}`);
      expected.push(`ResultsPublished ${o}`);
    }
    const label = (v: AuditView) =>
      v.kind.startsWith("Operator")
        ? `${v.kind} ${ids.find((i) => v.description?.includes(i))}`
        : v.kind === "StudyReceived"
          ? `${v.kind} ${v.study}`
          : [v.kind, v.object, v.step].filter(Boolean).join(" ");
    const got = sys.map(label).filter((l) => !l.startsWith("GPUWait")); // a GPU wait depends on other tests' load
    expect([...got].sort()).toEqual([...expected].sort());

    // the study's identifiers are in the records that exist to hold them
    for (const v of sys.filter((x) => x.kind === "TaskCreated")) {
      const s = studies.find((x) => x.uid === v.study);
      expect(s, `study of ${v.object}`).toBeTruthy();
      expect(v.accession).toBe(s?.accession);
    }
    const failed = sys.find((v) => v.kind === "StepFinished" && v.object?.endsWith(bad[0]?.metadata.name as string));
    expect(failed?.outcome).toBe("8"); // serious failure
    expect(sys.find((v) => v.kind === "TaskFailed")?.outcome).toBe("8");

    // in order at the repository: the operator start first, and each task's facts in lifecycle order
    expect(label(sys[0] as AuditView)).toBe(`OperatorStarted ${id1}`);
    const at = (l: string) => got.indexOf(l);
    expect(at(`OperatorStopped ${id1}`)).toBeLessThan(at(`OperatorStarted ${id2}`));
    for (const t of tasks) {
      const o = `${ns.name}/${t.metadata.name}`;
      const step = t.spec.steps[0]?.name;
      const end = t.status?.phase === "Succeeded" ? "TaskSucceeded" : "TaskFailed";
      const order = [`TaskCreated ${o}`, `StepStarted ${o} ${step}`, `StepFinished ${o} ${step}`, `${end} ${o}`];
      order.push(`ResultsPublished ${o}`);
      expect(order.map(at), o).toEqual([...order.map(at)].sort((a, b) => a - b));
      expect(at(`OperatorStopped ${id1}`)).toBeGreaterThan(at(`ResultsPublished ${o}`));
    }
    console.info(
      `${sys.length} records of this run at the repository (${spooled} spooled during the outage); receiver got ${receiver.messages.length} in all`,
    );
    await op.stop();
  }, 420_000);
});
