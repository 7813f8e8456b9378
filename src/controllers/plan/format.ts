// Small formatting rules the planner's status follows: timestamps, durations, the currentStep summary.

/** RFC 3339 to the second, as Kubernetes writes its own timestamps. */
export const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

export function formatDuration(ms: number): string {
  let s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}

/** Step names for status.currentStep, which holds at most 256 characters: "a,b +5" when they do not fit. */
export function summariseSteps(names: readonly string[], max = 256): string {
  const all = names.join(",");
  if (all.length <= max) return all;
  let out = `+${names.length}`;
  for (let i = 1; i < names.length; i++) {
    const candidate = `${names.slice(0, i).join(",")} +${names.length - i}`;
    if (candidate.length > max) break;
    out = candidate;
  }
  return out;
}

/** Deep equality of JSON-like values, ignoring undefined members: write status only when it changed. */
export function sameJson(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(
          Object.keys(x)
            .sort()
            .filter((k) => (x as Record<string, unknown>)[k] !== undefined)
            .map((k) => [k, (x as Record<string, unknown>)[k]]),
        )
      : x,
  );
}
