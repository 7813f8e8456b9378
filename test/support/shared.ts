// The design fixtures (MONAI events and workflows, the DICOM audit schema, the FHIR example) live
// in ../shared, next to the repository in this workplace and absent from a plain clone. Tests
// reach them only through here, so a clone without them skips exactly those tests with one line
// saying why, and everything else still runs. RADFLOW_SHARED_DIR points elsewhere (or at a path
// that does not exist, to check the skipping).
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

export const SHARED_DIR = path.resolve(
  process.env.RADFLOW_SHARED_DIR ?? path.resolve(import.meta.dirname, "../../../shared"),
);

/** Whether the shared fixtures are here. */
export const hasShared = existsSync(path.join(SHARED_DIR, "fixtures"));

/** The one-line reason a test that needs the fixtures is skipped. */
export const NO_SHARED = `skipped: needs the design fixtures in ${SHARED_DIR}, which is absent (not part of the repository; set RADFLOW_SHARED_DIR)`;

const told = new Set<string>();

/**
 * Whether the calling test file must skip its fixture tests; says so once per file when it must.
 * Use as `describe.skipIf(withoutShared(import.meta.filename))`.
 */
export function withoutShared(file: string): boolean {
  if (hasShared) return false;
  if (!told.has(file)) {
    told.add(file);
    process.stderr.write(`${path.basename(file)}: ${NO_SHARED}\n`);
  }
  return true;
}

/** Absolute path of a file under the shared directory (it may not exist: see hasShared). */
export function sharedPath(...parts: string[]): string {
  return path.join(SHARED_DIR, ...parts);
}

/** A shared fixture's text, read when a test asks for it (never at import, so files still load). */
export function readShared(...parts: string[]): string {
  return readFileSync(sharedPath(...parts), "utf8");
}
