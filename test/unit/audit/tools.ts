// External tools the audit tests need. A missing tool fails the test loudly, naming the Debian
// package to install: a skipped schema check would let invalid audit messages through CI.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { sharedPath } from "../../support/shared.ts";

const PACKAGES: Record<string, string> = { xmllint: "libxml2-utils", trang: "trang", openssl: "openssl" };

export function requireTool(name: string): string {
  const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  const found = r.stdout.trim();
  if (r.status !== 0 || !found) {
    throw new Error(`${name} is not installed: apt-get install -y ${PACKAGES[name] ?? name}`);
  }
  return found;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string; maxBuffer?: number } = {}) {
  const r = spawnSync(requireTool(cmd), args, { encoding: "utf8", ...opts });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The DICOM audit schema and FHIR example, from the shared fixtures (test/support/shared.ts); every caller skips with a reason when they are absent. */
export const FIXTURES = sharedPath("fixtures", "audit");

/**
 * The fixture's RELAX NG compact schema as full RELAX NG (xmllint reads only the XML syntax).
 * The DICOM schema writes "##" documentation comments after the value they describe, which
 * trang rejects; as plain "#" comments they mean the same and convert cleanly.
 */
export function convertedSchema(): string {
  const rnc = readFileSync(path.join(FIXTURES, "dicom-audit-message.rnc"), "utf8").replace(/##/g, "#");
  // Kept in the tool cache by content, not in /tmp: converting takes a JVM start, and the
  // schema is read by several test files in every run.
  const root =
    process.env.RADFLOW_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "radflow");
  const cache = path.join(root, "audit-schema");
  const rng = path.join(cache, `${createHash("sha256").update(rnc).digest("hex").slice(0, 16)}.rng`);
  if (existsSync(rng)) return rng;
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(path.join(cache, "tmp-"));
  try {
    writeFileSync(path.join(dir, "dicom-audit-message.rnc"), rnc);
    const out = path.join(dir, "dicom-audit-message.rng");
    const r = run("trang", ["-I", "rnc", "-O", "rng", path.join(dir, "dicom-audit-message.rnc"), out]);
    if (r.status !== 0) throw new Error(`trang failed: ${r.stderr}`);
    renameSync(out, rng); // atomic: a parallel test file sees the whole schema or none
    return rng;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** xmllint --relaxng over many documents at once: the files that failed, with xmllint's reasons. */
export function validate(rng: string, docs: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-xml-"));
  const files = Object.entries(docs).map(([name, xml]) => {
    const f = path.join(dir, `${name}.xml`);
    writeFileSync(f, xml);
    return f;
  });
  const r = run("xmllint", ["--noout", "--relaxng", rng, ...files]);
  rmSync(dir, { recursive: true, force: true }); // the answers are in r: leave nothing in /tmp
  const failures: Record<string, string> = {};
  for (const f of files) {
    const name = path.basename(f, ".xml");
    if (r.stderr.includes(`${f} fails to validate`) || !r.stderr.includes(`${f} validates`)) {
      failures[name] = r.stderr
        .split("\n")
        .filter((l) => l.startsWith(f))
        .join("\n");
    }
  }
  return failures;
}

/**
 * HL7's offline R4 checker (hack/tools/fhir-validator), built into the tool cache on first use
 * (that build fetches HAPI FHIR from Maven Central; later runs reuse it): its classpath.
 */
export function fhirValidatorClasspath(): string {
  requireTool("java");
  requireTool("mvn");
  const build = path.resolve(import.meta.dirname, "../../../hack/tools/fhir-validator/build.sh");
  const r = spawnSync(build, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`fhir-validator build failed:\n${r.stderr}`);
  return r.stdout.trim().split("\n").at(-1) as string;
}

export interface FhirIssue {
  severity: "ERROR" | "WARNING";
  where: string;
  message: string;
}

/** The checker once over many FHIR resources (one JVM start): the issues of each, by name. */
export function checkFhir(classpath: string, resources: Record<string, unknown>): Record<string, FhirIssue[]> {
  const dir = mkdtempSync(path.join(tmpdir(), "radflow-fhir-"));
  const files = Object.entries(resources).map(([name, e]) => {
    const f = path.join(dir, `${name}.json`);
    writeFileSync(f, JSON.stringify(e));
    return f;
  });
  const r = run("java", ["-cp", classpath, "io.radflow.fhirvalidator.Main", ...files], { maxBuffer: 64 << 20 });
  rmSync(dir, { recursive: true, force: true }); // the answers are in r: leave nothing in /tmp
  if (r.status !== 0) throw new Error(`fhir-validator failed: ${r.stderr}`);
  const out: Record<string, FhirIssue[]> = Object.fromEntries(Object.keys(resources).map((n) => [n, []]));
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const [file, severity, where, message] = line.split("\t") as [string, FhirIssue["severity"], string, string];
    out[path.basename(file, ".json")]?.push({ severity, where, message });
  }
  return out;
}

/** Only the errors of checkFhir's answer, "where: message" by name; names without errors left out. */
export function fhirErrors(issues: Record<string, FhirIssue[]>): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(issues)
      .map(([n, is]) => [n, is.filter((i) => i.severity === "ERROR").map((i) => `${i.where}: ${i.message}`)] as const)
      .filter(([, e]) => e.length > 0),
  );
}
