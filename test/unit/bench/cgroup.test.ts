// The memory scenario's readings: which memory cgroup a process is in, the cgroup's figures from
// its v1 files, and V8's heap after its last full GC from --trace-gc lines.
import { describe, expect, it } from "vitest";
import { memoryCgroupPath, readings } from "../../../bench/lib/cgroup.ts";
import { summarizeGcTrace } from "../../../bench/lib/gc-trace.ts";

describe("memoryCgroupPath", () => {
  it("finds the memory controller's line among v1 and v2 lines", () => {
    const text = "9:name=systemd:/\n4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";
    expect(memoryCgroupPath(text)).toBe("/process_api/abc");
    expect(memoryCgroupPath("5:cpu,memory:/x\n")).toBe("/x");
  });

  it("says none on a v2-only host", () => {
    expect(memoryCgroupPath("0::/user.slice\n")).toBeUndefined();
  });
});

describe("readings", () => {
  it("takes the hierarchical stat figures and subtracts inactive file pages for the working set", () => {
    const r = readings({
      limit: "536870912\n",
      usage: "300000000\n",
      maxUsage: "400000000\n",
      failcnt: "3\n",
      stat: "cache 1000\nrss 2000\ntotal_cache 50000000\ntotal_rss 240000000\ntotal_inactive_file 20000000\n",
      oomControl: "oom_kill_disable 0\nunder_oom 1\noom_kill 2\n",
    });
    expect(r).toEqual({
      limitBytes: 536870912,
      usageBytes: 300000000,
      maxUsageBytes: 400000000,
      failcnt: 3,
      workingSetBytes: 280000000,
      rssBytes: 240000000,
      cacheBytes: 50000000,
      underOom: true,
      oomKills: 2,
    });
  });

  it("reads a kernel without the oom_kill counter as no kills", () => {
    const r = readings({
      limit: "1",
      usage: "0",
      maxUsage: "0",
      failcnt: "0",
      stat: "",
      oomControl: "oom_kill_disable 0\nunder_oom 0\n",
    });
    expect(r.oomKills).toBe(0);
    expect(r.underOom).toBe(false);
  });
});

describe("summarizeGcTrace", () => {
  it("keeps the heap after the last mark-compact and the largest committed heap", () => {
    const log = [
      '{"level":"info","msg":"caches synced: reconciling"}',
      "[7:0x1]      682 ms: Scavenge 19.3 (28.4) -> 19.2 (51.6) MB, pooled: 0 MB, 96.90 / 0.00 ms  (average mu = 1.000) allocation failure;",
      "[7:0x1]     1428 ms: Mark-Compact 76.4 (109.9) -> 43.7 (69.3) MB, pooled: 33 MB, 118.03 / 0.00 ms  (average mu = 0.916) testing;",
      "[7:0x1]     2428 ms: Mark-Compact (reduce) 50.1 (70.0) -> 41.2 (60.0) MB, pooled: 0 MB, 18.03 / 0.00 ms  (average mu = 0.9) finalize;",
    ].join("\n");
    expect(summarizeGcTrace(log)).toEqual({ afterLastFullMB: 41.2, maxCommittedMB: 109.9, fullGCs: 2, youngGCs: 1 });
  });

  it("has no heap figure before the first full GC", () => {
    expect(summarizeGcTrace("nothing here\n").afterLastFullMB).toBeUndefined();
  });
});
