// Job names must not collide in practice: two tasks whose Jobs share a name leave the second one
// waiting for a Job it never sees (issue 12, item 1). The reconciler's ownership check on a 409 is
// the safety net; this is the first line.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { jobName } from "../../../src/jobs/job-builder.ts";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

describe("jobName: no collisions in practice", () => {
  it("50,000 studies of one workflow with a 54-character workflow+step get 50,000 distinct Job names", () => {
    // the case from the issue: the name must be shortened, so it rests on the hash
    const workflow = "stroke-perfusion-research"; // 25
    const step = "core-penumbra-segmentation-v2"; // 29 → workflow + step = 54
    // task names as ingest makes them: `<workflow>-<16 hex digits of a hash of the event>`
    const taskName = (i: number) =>
      `${workflow}-${createHash("sha256").update(`event-${i}`).digest("hex").slice(0, 16)}`;
    const seen = new Map<string, string>();
    let collisions = 0;
    for (let i = 0; i < 50_000; i++) {
      const task = taskName(i);
      const name = jobName(task, step);
      const other = seen.get(name);
      if (other !== undefined && other !== task) collisions++;
      seen.set(name, task);
    }
    // with the former 24-bit hash: ≈ 75 collisions expected (n²/2 / 2²⁴)
    expect(collisions).toBe(0);
  }, 60_000);

  it("keeps at least 64 bits of hash when the name is shortened", () => {
    const task = `${"w".repeat(46)}-0123456789abcdef`; // 63 characters
    for (const step of ["a", "detect", "s".repeat(40)]) {
      const name = jobName(task, step);
      const hash = name
        .slice(0, -(step.length + 1))
        .split("-")
        .pop() as string;
      expect(hash.length * 5).toBeGreaterThanOrEqual(64); // base-32 digits
    }
  });

  it("splits task and step unambiguously in the hash", () => {
    const long = "x".repeat(40);
    expect(jobName(`${long}-ab`, `c-${long.slice(0, 30)}`)).not.toBe(jobName(`${long}-ab-c`, long.slice(0, 30)));
  });
});

describe("jobName: shape", () => {
  const cases: [string, string][] = [
    ["head-ct-0123456789abcdef", "detect"],
    ["a".repeat(57), "detect"],
    [`${"a".repeat(14)}-${"b".repeat(48)}`, "s".repeat(40)],
    [`${"stroke-".repeat(8)}0123456789abcdef`.slice(0, 63), "s".repeat(40)],
  ];
  it.each(cases)("%s / %s: ≤ 63 characters, a DNS label, ends with the step, deterministic", (task, step) => {
    const name = jobName(task, step);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(DNS_LABEL);
    expect(name.endsWith(`-${step}`)).toBe(true);
    expect(jobName(task, step)).toBe(name);
    if (`${task}-${step}`.length <= 63) expect(name).toBe(`${task}-${step}`);
  });
});
