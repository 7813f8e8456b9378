// V8's `--trace-gc` lines in the operator's log: the heap left after its last full (mark-compact)
// collection, which is what the operator really holds, without the garbage a sampled heap
// figure may include.
//   [pid:0x…]  1428 ms: Mark-Compact 76.4 (109.9) -> 40.3 (69.3) MB, pooled: 0 MB, 118.03 / …

const LINE =
  /: (Mark-Compact|Scavenge|Minor Mark-Sweep)(?: \([^)]*\))? ([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB/;

export interface GcSummary {
  /** heap used after the last mark-compact, MB (V8's MB: 2^20 bytes) */
  afterLastFullMB?: number;
  /** the largest heap reserved (committed) any collection reported, MB */
  maxCommittedMB?: number;
  fullGCs: number;
  youngGCs: number;
}

export function summarizeGcTrace(log: string): GcSummary {
  const s: GcSummary = { fullGCs: 0, youngGCs: 0 };
  for (const line of log.split("\n")) {
    const m = LINE.exec(line);
    if (!m) continue;
    const committed = Math.max(Number(m[3]), Number(m[5]));
    s.maxCommittedMB = Math.max(s.maxCommittedMB ?? 0, committed);
    if (m[1] === "Mark-Compact") {
      s.fullGCs++;
      s.afterLastFullMB = Number(m[4]);
    } else s.youngGCs++;
  }
  return s;
}
