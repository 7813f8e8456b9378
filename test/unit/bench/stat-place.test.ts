// The STAT study's place among the tasks created from one queue: counted in watch order, over the
// batch tasks only (other tasks in the namespace do not count), and all of them when it never came.
import { describe, expect, it } from "vitest";
import { statPlace } from "../../../bench/scenarios/stat.ts";

describe("statPlace", () => {
  const batch = new Set(["b1", "b2", "b3", "b4"]);
  it("counts the batch tasks created before the STAT one", () => {
    expect(statPlace(["b2", "x", "s", "b1", "b3"], "s", batch)).toEqual({
      batchCreatedBefore: 1,
      ofQueuedBefore: 4,
      found: true,
    });
    expect(statPlace(["s", "b1"], "s", batch).batchCreatedBefore).toBe(0);
  });
  it("stream order puts it after every batch task", () => {
    expect(statPlace(["b1", "b2", "b3", "b4", "s"], "s", batch).batchCreatedBefore).toBe(4);
  });
  it("a STAT task not seen yet has every seen batch task before it", () => {
    expect(statPlace(["b1", "b3"], "s", batch)).toEqual({ batchCreatedBefore: 2, ofQueuedBefore: 4, found: false });
  });
});
