// Who may send to the gateway: per-source allow-lists of calling and called AE titles. A source
// is a calling AE title (a modality, a PACS) with the called AE titles it may address; the gateway
// answers to its own AE titles only. Unknown titles are refused at association with the reject
// reason PS3.8 9.3.4 defines (3: calling AE title not recognized, 7: called AE title not recognized).

export interface AEPolicy {
  /** The gateway's own AE titles; empty: any called title. */
  calledAETitles: string[];
  /** Calling AE title → the called titles it may use (empty: any of the gateway's). Empty map: any caller. */
  sources: Map<string, string[]>;
}

export type AEDecision = { ok: true } | { ok: false; reason: "calling-ae" | "called-ae" };

/** AE titles compare without their space padding; case matters (PS3.5: AE is case-sensitive). */
const norm = (ae: string) => ae.trim();

export function checkAssociation(p: AEPolicy, calling: string, called: string): AEDecision {
  const c = norm(calling);
  const d = norm(called);
  if (p.sources.size > 0) {
    const allowed = p.sources.get(c);
    if (!allowed) return { ok: false, reason: "calling-ae" };
    if (allowed.length > 0 && !allowed.includes(d)) return { ok: false, reason: "called-ae" };
  }
  if (p.calledAETitles.length > 0 && !p.calledAETitles.includes(d)) return { ok: false, reason: "called-ae" };
  return { ok: true };
}

const AE = /^[\x20-\x5b\x5d-\x7e]{1,16}$/; // 16 printable characters, no backslash

/**
 * Parses sources: "CT_EAST=RADFLOW|RADFLOW_STAT;MR1;PACS=RADFLOW" — a calling title, optionally
 * with the called titles it may use. Entries are separated by ';' or new lines.
 */
export function parseSources(spec: string | undefined): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of (spec ?? "").split(/[;\n]/)) {
    const entry = raw.trim();
    if (!entry) continue;
    const [calling = "", called = ""] = entry.split("=", 2);
    const c = calling.trim();
    if (!AE.test(c)) throw new Error(`source ${JSON.stringify(entry)}: calling AE title must be 1-16 characters`);
    const list = called
      .split("|")
      .map((s) => s.trim())
      .filter(Boolean);
    for (const t of list) {
      if (!AE.test(t))
        throw new Error(`source ${JSON.stringify(entry)}: called AE title ${JSON.stringify(t)} is not valid`);
    }
    out.set(c, [...(out.get(c) ?? []), ...list]);
  }
  return out;
}

export function parseAETitles(spec: string | undefined): string[] {
  const list = (spec ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const t of list)
    if (!AE.test(t)) throw new Error(`AE title ${JSON.stringify(t)} is not valid (1-16 characters)`);
  return list;
}
