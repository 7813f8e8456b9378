// What a scenario hands back: table rows (with the target next to the number, never asserted),
// details for the JSON file, and the operator's CPU profile summaries.
import type { ProfileSummary } from "./cpuprofile.ts";

export interface Row {
  metric: string;
  value: string;
  target?: string;
  /** true: meets the target; false: misses it; undefined: no target */
  met?: boolean;
}

export interface ScenarioResult {
  scenario: string;
  rows: Row[];
  details: Record<string, unknown>;
  profiles: ProfileSummary[];
  error?: string;
}

export function fmt(x: number | undefined, unit = "", digits = 1): string {
  if (x === undefined || Number.isNaN(x)) return "n/a";
  return `${x.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

export function mb(bytes: number): number {
  return bytes / (1024 * 1024);
}
