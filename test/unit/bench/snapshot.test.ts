// The run records which operator sources were uncommitted: whole paths, the first line included
// (its leading status space was once trimmed away, turning " M src/a.ts" into "rc/a.ts").
import { describe, expect, it } from "vitest";
import { porcelainPaths } from "../../../bench/lib/snapshot.ts";

describe("porcelainPaths", () => {
  it("keeps every path whole", () => {
    expect(porcelainPaths(" M src/cmd/operator.ts\nM  src/a.ts\n?? src/kube/controller.ts\n")).toEqual([
      "src/cmd/operator.ts",
      "src/a.ts",
      "src/kube/controller.ts",
    ]);
    expect(porcelainPaths("")).toEqual([]);
  });
});
