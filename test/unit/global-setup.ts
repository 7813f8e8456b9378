// Builds the tools unit tests run (promtool, for the shipped alert rules) once, before any test
// starts: a unit test never compiles anything. The build is cached (hack/tools/build.sh keys it by
// the pinned go.sum), so this is a stamp check on every run after the first, and it is skipped
// when the run's file filters leave out the tests that need it. A machine without Go still runs
// every other unit test; the tests that need a tool fail with the build's error.
import path from "node:path";
import type { TestProject } from "vitest/node";
import { buildTools } from "../../hack/cluster.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** why toolsBin is empty: the build's error, for the tests that need a tool */
    toolsError: string;
  }
}

/** The test files that run tools (relative to the repository), and the tools they run. */
const NEEDS_TOOLS: Record<string, string[]> = {
  "test/unit/alerts.test.ts": ["promtool"],
  "test/unit/helm-chart.test.ts": ["helm", "promtool"],
  "test/unit/helm-drift.test.ts": ["helm"],
  "test/unit/gateway/chart-and-cli.test.ts": ["helm"],
};

/** The positional file filters of this vitest run (vitest matches them as substrings of paths). */
export function fileFilters(argv: string[]): string[] {
  const valued = new Set([
    "--project",
    "--config",
    "-c",
    "--root",
    "-r",
    "--reporter",
    "--dir",
    "-t",
    "--testNamePattern",
  ]);
  const out: string[] = [];
  const args = argv.slice(argv.findIndex((a) => /vitest(\.mjs|\.js)?$/.test(a)) + 1);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (valued.has(a)) i++;
    else if (!a.startsWith("-") && !["run", "watch", "related", "bench", "dev"].includes(a)) out.push(a);
  }
  return out;
}

export default function setup(project: TestProject) {
  const root = path.resolve(import.meta.dirname, "../..");
  const filters = fileFilters(process.argv).map((f) => path.relative(root, path.resolve(f)) || f);
  const tools = [
    ...new Set(
      Object.entries(NEEDS_TOOLS)
        .filter(([file]) => filters.length === 0 || filters.some((f) => file.includes(f)))
        .flatMap(([, t]) => t),
    ),
  ];
  project.provide("toolsBin", "");
  project.provide("toolsError", "");
  if (tools.length === 0) return;
  const t0 = Date.now();
  try {
    project.provide("toolsBin", buildTools(false, tools));
  } catch (e) {
    project.provide("toolsError", `building the unit tests' tools failed: ${(e as Error).message}`);
  }
  const s = (Date.now() - t0) / 1000;
  if (s > 5) process.stderr.write(`unit: tools built in ${s.toFixed(0)} s (cached from now on)\n`);
}
