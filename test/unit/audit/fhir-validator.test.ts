// Every AuditEvent kind through an offline FHIR R4 checker built from HL7's own R4 definitions
// (hack/tools/fhir-validator: HAPI FHIR's R4 model and strict parser, HL7's R4 XML schema, code
// systems and bindings, from Maven Central into ~/.cache/radflow). 0 errors for every kind and
// variant; the broken events below show each check can fail.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { defaultAuditCodes } from "../../../src/audit/codes.ts";
import type { AuditFact } from "../../../src/audit/facts.ts";
import { type FhirAuditEvent, renderFhirAuditEvent } from "../../../src/audit/fhir-audit-event.ts";
import { ALL_KINDS, SOURCE, STUDY, sampleFact } from "./sample.ts";
import { requireTool } from "./tools.ts";

const BUILD = path.resolve(import.meta.dirname, "../../../hack/tools/fhir-validator/build.sh");
const codes = defaultAuditCodes();

interface Issue {
  file: string;
  severity: "ERROR" | "WARNING";
  where: string;
  message: string;
}

let classpath: string;
beforeAll(() => {
  requireTool("java");
  requireTool("mvn");
  // the first build fetches HAPI FHIR from Maven Central; later runs reuse the cache
  const r = spawnSync(BUILD, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`fhir-validator build failed:\n${r.stderr}`);
  classpath = r.stdout.trim().split("\n").at(-1)!;
}, 900_000);

/** Runs the checker once over all events; issues by event name. */
function validate(events: Record<string, unknown>): Record<string, Issue[]> {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-fhir-"));
  const files = Object.entries(events).map(([name, e]) => {
    const f = path.join(dir, `${name}.json`);
    writeFileSync(f, JSON.stringify(e));
    return f;
  });
  const r = spawnSync("java", ["-cp", classpath, "io.radflow.fhirvalidator.Main", ...files], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  rmSync(dir, { recursive: true, force: true }); // the answers are in r: leave nothing in /tmp
  if (r.status !== 0) throw new Error(`fhir-validator failed: ${r.stderr}`);
  const out: Record<string, Issue[]> = Object.fromEntries(Object.keys(events).map((n) => [n, []]));
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const [file, severity, where, message] = line.split("\t") as [string, Issue["severity"], string, string];
    out[path.basename(file, ".json")]!.push({ file, severity, where, message });
  }
  return out;
}

const errors = (issues: Record<string, Issue[]>) =>
  Object.fromEntries(
    Object.entries(issues)
      .map(([n, is]) => [n, is.filter((i) => i.severity === "ERROR").map((i) => `${i.where}: ${i.message}`)] as const)
      .filter(([, e]) => e.length > 0),
  );

/** Every kind as rendered, plus study variants: no AE titles, and a known patient. */
function events(): Record<string, FhirAuditEvent> {
  const out: Record<string, FhirAuditEvent> = {};
  for (const kind of ALL_KINDS) {
    const f = sampleFact(kind);
    out[kind] = renderFhirAuditEvent(f, codes, SOURCE);
    if (f.study) {
      const { callingAETitle: _c, calledAETitle: _d, ...study } = f.study;
      const bare: AuditFact = { ...f, study: { ...study, patientId: STUDY.patientId }, sender: "/gateways/dicomweb-1" };
      out[`${kind}-no-ae`] = renderFhirAuditEvent(bare, codes, SOURCE);
    }
  }
  return out;
}

describe("FHIR AuditEvents against HL7's R4 definitions", () => {
  it("every kind and variant has 0 errors; the broken ones are caught", { timeout: 300_000 }, () => {
    const good = events();
    const received = good.StudyReceived!;
    const broken: Record<string, unknown> = {
      // what radflow sent before: DCM 110119 is not in R4's DICOM code system
      "bad-ae-type": {
        ...received,
        agent: received.agent.map((a) =>
          a.altId?.startsWith("AETITLES=")
            ? {
                ...a,
                who: {
                  ...a.who,
                  identifier: {
                    ...a.who.identifier,
                    type: {
                      coding: [
                        {
                          system: "http://dicom.nema.org/resources/ontology/DCM",
                          code: "110119",
                          display: "Station AE Title",
                        },
                      ],
                    },
                  },
                },
              }
            : a,
        ),
      },
      // the DICOM message's patient ID type system, which FHIR does not know
      "bad-rfc3881": {
        ...received,
        entity: [
          ...(received.entity ?? []),
          {
            what: { identifier: { type: { coding: [{ system: "urn:ietf:rfc:3881", code: "2" }] }, value: "P1" } },
            type: { system: "http://terminology.hl7.org/CodeSystem/audit-entity-type", code: "1" },
          },
        ],
      },
      "bad-action": { ...received, action: "X" },
      "bad-no-recorded": { ...received, recorded: undefined },
      "bad-element": { ...received, surprise: true },
    };
    const issues = validate({ ...good, ...broken });
    const errs = errors(issues);
    const goodErrors = Object.fromEntries(Object.entries(errs).filter(([n]) => !n.startsWith("bad-")));
    expect(goodErrors).toEqual({});
    expect(Object.keys(good).length).toBeGreaterThanOrEqual(ALL_KINDS.length);
    expect(errs["bad-ae-type"]?.join()).toMatch(/unknown code '110119'/);
    expect(errs["bad-rfc3881"]?.join()).toMatch(/'urn:ietf:rfc:3881' is not a known code system URI/);
    expect(errs["bad-action"]?.length).toBeGreaterThan(0);
    expect(errs["bad-no-recorded"]?.join()).toMatch(/recorded/);
    expect(errs["bad-element"]?.join()).toMatch(/surprise/);
  });
});
