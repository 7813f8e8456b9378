// PS3.15 A.5.3 rules as XPath over a rendered audit message, answered by xmllint (an independent
// reader of the XML), and the participant shapes several test files' rules name.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { run } from "./tools.ts";

/** An ActiveParticipant in the role of the DCM code (110150 application, 110152 destination, 110153 source, 110154 media). */
export const role = (code: string) => `ActiveParticipant[RoleIDCode/@csd-code='${code}']`;
/** The study: a system object, Report role, by Study Instance UID (110180). */
export const STUDY_OBJECT =
  "ParticipantObjectIdentification[@ParticipantObjectTypeCode='2' and @ParticipantObjectTypeCodeRole='3' and ParticipantObjectIDTypeCode/@csd-code='110180']";
/** The patient: a person, Patient role, by Patient Number (2). */
export const PATIENT_OBJECT =
  "ParticipantObjectIdentification[@ParticipantObjectTypeCode='1' and @ParticipantObjectTypeCodeRole='1' and ParticipantObjectIDTypeCode/@csd-code='2']";

/**
 * The XPath rules (name → expression) an audit message breaks, by name. `rules` may depend on the
 * message's EventID (its csd-code), for tests whose messages are of several events. One xmllint
 * run answers every rule: "true|false|…" in the rules' order.
 */
export function failedRules(
  xml: string,
  rules: Record<string, string> | ((eventId: string) => Record<string, string>),
): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-xpath-"));
  const file = path.join(dir, "m.xml");
  writeFileSync(file, xml);
  try {
    const id = () =>
      run("xmllint", ["--xpath", "string(/AuditMessage/EventIdentification/EventID/@csd-code)", file]).stdout.trim();
    const list = Object.entries(typeof rules === "function" ? rules(id()) : rules);
    if (list.length === 0) return [];
    const all = `concat(${list.map(([, x]) => `boolean(${x})`).join(", '|', ")}, '')`;
    const answers = run("xmllint", ["--xpath", all, file]).stdout.trim().split("|");
    return list.filter((_, i) => answers[i] !== "true").map(([what]) => what);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
