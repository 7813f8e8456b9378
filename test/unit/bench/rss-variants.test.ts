// The memory scenario's node-flag variants: the environment's list, else the chart's flags (and
// none beside them for comparison).
import { describe, expect, it } from "vitest";
import { nodeFlagVariants } from "../../../bench/scenarios/rss.ts";

describe("nodeFlagVariants", () => {
  it("takes the environment's variants in order, 'none' meaning no flags", () => {
    expect(nodeFlagVariants("none, --max-old-space-size=384 --trace-gc", [])).toEqual([
      { label: "no flags", nodeArgs: [] },
      { label: "--max-old-space-size=384 --trace-gc", nodeArgs: ["--max-old-space-size=384", "--trace-gc"] },
    ]);
  });

  it("measures the chart as it is, and without its flags when it sets some", () => {
    expect(nodeFlagVariants(undefined, [])).toEqual([{ label: "chart (no flags)", nodeArgs: [] }]);
    expect(nodeFlagVariants("", ["--max-semi-space-size=4"])).toEqual([
      { label: "chart (--max-semi-space-size=4)", nodeArgs: ["--max-semi-space-size=4"] },
      { label: "no flags", nodeArgs: [] },
    ]);
  });
});
