// Structured JSON logs (pino) with PHI redaction (ARCHITECTURE.md §7). Code must never log a
// patient or study identifier; the redaction paths are the safety net for when someone does.
// A study appears in logs only as studyRef(uid): an HMAC of its UID with the site's key.
import { createHmac } from "node:crypto";
import { type Logger, pino } from "pino";

export const PHI_PATHS = [
  "study",
  "*.study",
  "studyInstanceUID",
  "*.studyInstanceUID",
  "seriesInstanceUID",
  "*.seriesInstanceUID",
  "sopInstanceUID",
  "*.sopInstanceUID",
  "accessionNumber",
  "*.accessionNumber",
  "patientName",
  "*.patientName",
  "patientId",
  "*.patientId",
  "patientBirthDate",
  "*.patientBirthDate",
  "studyDescription",
  "*.studyDescription",
  "seriesDescription",
  "*.seriesDescription",
  "series",
  "*.series",
  "spec.study",
  "*.spec.study",
];

const root: Logger = pino({
  level: process.env.RADFLOW_LOG_LEVEL ?? "info",
  base: { app: "radflow" },
  redact: { paths: PHI_PATHS, censor: "[PHI]" },
  timestamp: pino.stdTimeFunctions.isoTime,
});

/** Per-module level: RADFLOW_LOG_LEVELS="ingest=debug,kube=warn". */
function moduleLevels(): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of (process.env.RADFLOW_LOG_LEVELS ?? "").split(",")) {
    const [k, v] = part.split("=");
    if (k && v) m.set(k.trim(), v.trim());
  }
  return m;
}
const levels = moduleLevels();

export function logger(module: string): Logger {
  const child = root.child({ module });
  const lvl = levels.get(module);
  if (lvl) child.level = lvl;
  return child;
}

let hmacKey = process.env.RADFLOW_PHI_HMAC_KEY ?? "";
export function setStudyRefKey(key: string) {
  hmacKey = key;
}

/** A stable, non-reversible reference to a study for logs and Events: "s-" + 16 hex chars. */
export function studyRef(studyInstanceUID: string): string {
  return `s-${createHmac("sha256", hmacKey || "radflow-unset-key")
    .update(studyInstanceUID)
    .digest("hex")
    .slice(0, 16)}`;
}
