// Structured JSON logs (pino) with PHI redaction (docs/ARCHITECTURE.md §7). Code must never log a
// patient or study identifier; the redaction below is the safety net for when someone does:
//
// - PHI_PATHS: pino's own redaction of the usual places (top level and one level down);
// - a scrub of every log object and child binding at any depth: keys that name PHI (any case,
//   camelCase or snake_case, DICOM keywords, DICOM JSON tags such as "00100010") are censored;
// - a scrub of message strings, error messages and stacks: anything shaped like an instance
//   DICOM UID is replaced (standard UIDs under 1.2.840.10008, e.g. SOP classes, are safe and kept).
// Free text that merely contains a name or accession number cannot be recognised: do not log it.
//
// A study appears in logs only as studyRef(uid): an HMAC of its UID with the site's key.
import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

export const CENSOR = "[PHI]";
export const UID_CENSOR = "[UID]";

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

/** Keys whose values are PHI wherever they appear, compared lower-case without '_' or '-'. */
const PHI_KEYS = new Set(
  [
    // radflow's own field names (the paths above) and their DICOM keyword spellings
    "study",
    "series",
    "studyInstanceUID",
    "seriesInstanceUID",
    "sopInstanceUID",
    "accessionNumber",
    "patientName",
    "patientId",
    "patientBirthDate",
    "patientSex",
    "patientAddress",
    "otherPatientIDs",
    "studyDescription",
    "seriesDescription",
    "institutionName",
    "stationName",
    "referringPhysicianName",
    "studyID",
    // DICOM JSON tags of the same attributes (PS3.18 F: 8 hex digits as keys)
    "00100010", // PatientName
    "00100020", // PatientID
    "00100030", // PatientBirthDate
    "00101000", // OtherPatientIDs
    "00101040", // PatientAddress
    "00080050", // AccessionNumber
    "0020000D", // StudyInstanceUID
    "0020000E", // SeriesInstanceUID
    "00080018", // SOPInstanceUID
    "00081030", // StudyDescription
    "0008103E", // SeriesDescription
    "00080080", // InstitutionName
    "00081010", // StationName
    "00080090", // ReferringPhysicianName
    "00200010", // StudyID
  ].map(normalizeKey),
);

function normalizeKey(k: string): string {
  return k.toLowerCase().replace(/[_-]/g, "");
}

// An instance UID: a root 0/1/2 and at least five components, or a UUID-derived 2.25.<n>.
// IPv4 addresses (four components) and version numbers are left alone.
const UID_IN_TEXT = /(?<!\d)(?:[0-2](?:\.(?:0|[1-9]\d*)){4,}|2\.25\.\d{6,})(?![\d])/g;
const STANDARD_UID_ROOT = "1.2.840.10008.";

/** Replaces instance-UID-shaped substrings of free text. */
export function scrubText(s: string): string {
  return s.replace(UID_IN_TEXT, (m) => (m.startsWith(STANDARD_UID_ROOT) ? m : UID_CENSOR));
}

const MAX_DEPTH = 10;

/** A copy of `v` with PHI keys censored and UID-shaped strings replaced, at any depth. */
export function scrub(v: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof v === "string") return scrubText(v);
  if (v === null || typeof v !== "object") return v;
  if (seen.has(v)) return "[Circular]";
  if (depth >= MAX_DEPTH) return "[Truncated]";
  seen.add(v);
  try {
    if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1, seen));
    if (v instanceof Error) {
      // keep it an Error (of its class) so pino's err serializer still shows type and stack
      const e = Object.create(Object.getPrototypeOf(v)) as Error & Record<string, unknown>;
      e.message = scrubText(v.message);
      if (v.stack) e.stack = scrubText(v.stack);
      for (const [k, x] of Object.entries(v)) e[k] = PHI_KEYS.has(normalizeKey(k)) ? CENSOR : scrub(x, depth + 1, seen);
      if (v.cause !== undefined) e.cause = scrub(v.cause, depth + 1, seen);
      return e;
    }
    if (v instanceof Date || Buffer.isBuffer(v) || ArrayBuffer.isView(v)) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = PHI_KEYS.has(normalizeKey(k)) ? CENSOR : scrub(x, depth + 1, seen);
    return out;
  } finally {
    seen.delete(v);
  }
}

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

/** RADFLOW_LOG_LEVELS="ingest=debug,kube=warn" → per-module levels, and what could not be used. */
export function parseModuleLevels(spec: string | undefined): { levels: Map<string, string>; errors: string[] } {
  const levels = new Map<string, string>();
  const errors: string[] = [];
  for (const part of (spec ?? "").split(",")) {
    if (!part.trim()) continue;
    const [k, v, ...rest] = part.split("=").map((s) => s.trim());
    if (!k || !v || rest.length) errors.push(`${JSON.stringify(part)} is not module=level`);
    else if (!LEVELS.has(v)) errors.push(`${k}: unknown level ${JSON.stringify(v)} (one of ${[...LEVELS].join(", ")})`);
    else levels.set(k, v);
  }
  return { levels, errors };
}

/** The pino options radflow logs with: level, PHI redaction and scrubbing, ISO timestamps. */
export function loggerOptions(level = "info"): LoggerOptions {
  return {
    level,
    base: { app: "radflow" },
    redact: { paths: PHI_PATHS, censor: CENSOR },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      log: (o) => scrub(o) as Record<string, unknown>,
    },
    hooks: {
      // message strings and printf-style arguments; the merging object goes through formatters.log
      logMethod(args, method) {
        const scrubbed = args.map((a, i) =>
          typeof a === "string" ? scrubText(a) : i === 0 ? a : scrub(a),
        ) as Parameters<typeof method>;
        return method.apply(this, scrubbed);
      },
    },
  };
}

/** A root logger; tests pass a destination to read what would be written. */
export function createRootLogger(level?: string, destination?: DestinationStream): Logger {
  const l = destination ? pino(loggerOptions(level), destination) : pino(loggerOptions(level));
  // pino formats only the root's bindings, not those given to child(): scrub them on the way in.
  // Children are created from their parent, so they inherit this override.
  const pinoChild = l.child;
  const child = function (this: Logger, bindings: Record<string, unknown>, options?: unknown) {
    return pinoChild.call(this, scrub(bindings) as Record<string, unknown>, options as undefined);
  };
  l.child = child as Logger["child"];
  return l;
}

const envLevel = process.env.RADFLOW_LOG_LEVEL ?? "info";
const root: Logger = createRootLogger(LEVELS.has(envLevel) ? envLevel : "info");
if (!LEVELS.has(envLevel)) root.warn(`RADFLOW_LOG_LEVEL: unknown level ${JSON.stringify(envLevel)}; using info`);
const moduleLevels = parseModuleLevels(process.env.RADFLOW_LOG_LEVELS);
for (const e of moduleLevels.errors) root.warn(`RADFLOW_LOG_LEVELS: ${e}; ignored`);

/** A module's logger; RADFLOW_LOG_LEVELS may set its level apart from the others. */
export function logger(module: string, base: Logger = root, levels = moduleLevels.levels): Logger {
  const child = base.child({ module });
  const lvl = levels.get(module);
  if (lvl) child.level = lvl;
  return child;
}

// ---- study references -------------------------------------------------------------------

const MIN_KEY_BYTES = 16;
let hmacKey: Buffer | undefined;

function keyFromEnv(): Buffer | undefined {
  const file = process.env.RADFLOW_PHI_HMAC_KEY_FILE;
  const raw = file ? readFileSync(file, "utf8").trim() : process.env.RADFLOW_PHI_HMAC_KEY;
  if (!raw) return undefined;
  return checkedKey(raw, file ? `RADFLOW_PHI_HMAC_KEY_FILE (${file})` : "RADFLOW_PHI_HMAC_KEY");
}

function checkedKey(key: string | Buffer, what: string): Buffer {
  const b = Buffer.isBuffer(key) ? key : Buffer.from(key, "utf8");
  if (b.length < MIN_KEY_BYTES) {
    throw new Error(`${what}: the study reference key must be at least ${MIN_KEY_BYTES} bytes (use a random secret)`);
  }
  return b;
}

/** Sets the per-site key (from the operator's Secret); at least 16 bytes. */
export function setStudyRefKey(key: string | Buffer) {
  hmacKey = checkedKey(key, "study reference key");
}

/** Reads the key from the environment now, so a bad key stops the operator at start, not at its first study. */
export function initStudyRefKey(): void {
  currentKey();
}

function currentKey(): Buffer {
  if (!hmacKey) {
    hmacKey = keyFromEnv();
    if (!hmacKey) {
      // A fixed fallback key would let anyone who reads the source reverse references by
      // hashing candidate UIDs. A random key is safe; its price is that references differ
      // between processes.
      hmacKey = randomBytes(32);
      root.warn(
        "RADFLOW_PHI_HMAC_KEY is not set: study references use a random key and will not match across restarts or replicas",
      );
    }
  }
  return hmacKey;
}

/** "s-" + 16 hex characters: HMAC-SHA256 of the UID (without DICOM padding) under `key`. */
export function studyRefWith(key: string | Buffer, studyInstanceUID: string): string {
  const uid = studyInstanceUID.replace(/[\0\s]+$/, "").trim();
  return `s-${createHmac("sha256", key).update(uid).digest("hex").slice(0, 16)}`;
}

/** A stable, non-reversible reference to a study for logs and Events, keyed by the site's key. */
export function studyRef(studyInstanceUID: string): string {
  return studyRefWith(currentKey(), studyInstanceUID);
}
