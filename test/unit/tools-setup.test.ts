// Tools the unit tests run are built by the unit project's global setup, before any test starts,
// never inside a test (a promtool build once took 405 s inside the alerts test's beforeAll).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fileFilters } from "./global-setup.ts";

const UNIT = path.resolve(import.meta.dirname);

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : [],
  );
}

describe("unit tests' tools", () => {
  it("are never built by a unit test file", () => {
    const building = testFiles(UNIT)
      .filter((f) => !f.endsWith("global-setup.ts") && !f.endsWith("tools-setup.test.ts"))
      .filter((f) => /hack\/tools\/build\.sh|buildTools\(|helmBinary\(/.test(readFileSync(f, "utf8")))
      .map((f) => path.relative(UNIT, f));
    expect(building).toEqual([]);
  });

  it("are built only when the run's file filters include a test that needs them", () => {
    const vitest = ["/usr/bin/node", "/repo/node_modules/.bin/vitest", "run", "--project", "unit"];
    expect(fileFilters(vitest)).toEqual([]);
    expect(fileFilters([...vitest, "test/unit/api", "-t", "name"])).toEqual(["test/unit/api"]);
    expect(fileFilters([...vitest, "--reporter", "dot", "alerts"])).toEqual(["alerts"]);
  });
});
