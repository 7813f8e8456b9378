// trigger.match.seriesDescriptionPattern: RE2 syntax, matched by re2js, a port of RE2 that runs in
// time linear in the input. JavaScript's RegExp backtracks: `^(\w+\s?)+$` against a 40-character
// description that does not match ran for hours and stalled the operator's event loop.
import { RE2JS } from "re2js";

export interface Pattern {
  /** Whether the pattern matches anywhere in `text`, case-insensitively (like RegExp#test). */
  test(text: string): boolean;
}

/** The pattern compiled for matching, or an Error naming what RE2 does not accept. */
export function compilePattern(source: string): Pattern | Error {
  try {
    return RE2JS.compile(source, RE2JS.CASE_INSENSITIVE);
  } catch (e) {
    // re2js's message names the offending construct from the pattern (workflow text, not study data)
    return new Error(`not a valid RE2 regular expression: ${(e as Error).message}`);
  }
}

/** Undefined when the pattern compiles, else why not (for workflow validation). */
export function checkPattern(source: string): string | undefined {
  const p = compilePattern(source);
  return p instanceof Error ? p.message : undefined;
}

const cache = new Map<string, Pattern | Error>();
/** compilePattern with a cache: a workflow's pattern is matched against every series of every study. */
export function cachedPattern(source: string): Pattern | Error {
  let p = cache.get(source);
  if (!p) {
    p = compilePattern(source);
    if (cache.size > 10_000) cache.clear();
    cache.set(source, p);
  }
  return p;
}
