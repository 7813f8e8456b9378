// The README describes commands; these tests run them and compare, so the front door stays true.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const readme = readFileSync(path.join(root, "README.md"), "utf8");
const radflow = (args: string[]) =>
  execFileSync(process.execPath, [path.join(root, "src/cmd/radflow.ts"), ...args], { encoding: "utf8" });

describe("README", () => {
  it("shows exactly what `radflow operator --help` prints", () => {
    const block = readme.split("<!-- operator-help:begin -->")[1]?.split("<!-- operator-help:end -->")[0] ?? "";
    const shown = block.replace(/^\s*```\n/, "").replace(/```\s*$/, "");
    expect(shown).toBe(radflow(["operator", "--help"]));
    // a child Node process loading the operator's modules: seconds of wall time on a loaded 2-core machine
  }, 60_000);

  it("names npm scripts that exist", () => {
    const scripts = Object.keys(JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")).scripts);
    const used = [...readme.matchAll(/hack\/npm run ([a-z:]+)/g)].map((m) => m[1]);
    expect(used.length).toBeGreaterThan(3);
    for (const s of used) expect(scripts).toContain(s);
    expect(readme).toContain("hack/npm test");
  });

  it("names hack/cluster subcommands that exist", () => {
    const src = readFileSync(path.join(root, "hack/cluster.ts"), "utf8");
    for (const m of readme.matchAll(/hack\/cluster (\w+)/g)) expect(src).toContain(`case "${m[1]}":`);
  });

  it("points at files that exist", () => {
    for (const m of readme.matchAll(/\]\(([^)#]+)\)/g)) {
      expect(existsSync(path.join(root, m[1] as string)), m[1]).toBe(true);
    }
  });
});
