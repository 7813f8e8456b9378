// CEL for trigger expressions and step conditions (@bufbuild/cel, the dialect Kubernetes uses).
// A CEL error is a *value* here, not an exception: every caller must see it as an error, never
// as "false" — a condition that silently reads as false is the MONAI failure radflow exists to fix.
import { type CelInput, celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";

const env = celEnv({ funcs: [...strings] });

export type CompiledExpr = (bindings: Record<string, unknown>) => BoolResult;
export type BoolResult = { ok: true; value: boolean } | { ok: false; error: string };

export class CelCompileError extends Error {}

/** Parses and plans an expression once; throws CelCompileError with the parser's message. */
export function compileBool(expr: string): CompiledExpr {
  let program: ReturnType<typeof plan>;
  try {
    program = plan(env, parse(expr));
  } catch (e) {
    throw new CelCompileError((e as Error).message);
  }
  return (bindings) => {
    let out: unknown;
    try {
      out = program(toCel(bindings) as Record<string, CelInput>);
    } catch (e) {
      return { ok: false, error: withoutValues((e as Error).message, bindings) };
    }
    if (isCelError(out)) return { ok: false, error: withoutValues(out.message, bindings) };
    if (typeof out !== "boolean") return { ok: false, error: `expression must be a bool, got ${typeof out}` };
    return { ok: true, value: out };
  };
}

export const VALUE_CENSOR = "[value]";

/**
 * CEL's runtime errors can quote the value they failed on ("Cannot convert ACC-1234 to a
 * BigInt"). The values are study data (PHI, ARCHITECTURE.md §7) and these messages go to logs,
 * task status and Kubernetes Events, so every string of the bindings the message contains is
 * replaced (longest first).
 */
export function withoutValues(message: string, bindings: unknown): string {
  const values = new Set<string>();
  const collect = (v: unknown, depth: number) => {
    if (typeof v === "string") {
      if (v.length >= 2 && message.includes(v)) values.add(v);
    } else if (v !== null && typeof v === "object" && depth < 16) {
      for (const x of Array.isArray(v) ? v : Object.values(v)) collect(x, depth + 1);
    }
  };
  collect(bindings, 0);
  let out = message;
  for (const v of [...values].sort((a, b) => b.length - a.length)) out = out.split(v).join(VALUE_CENSOR);
  return out;
}

/** Compile errors as a message, or undefined when the expression compiles. */
export function checkBool(expr: string): string | undefined {
  try {
    compileBool(expr);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const cache = new Map<string, CompiledExpr>();
/** compileBool with a cache: workflows' expressions are evaluated for every study. */
export function cachedBool(expr: string): CompiledExpr {
  let c = cache.get(expr);
  if (!c) {
    c = compileBool(expr);
    if (cache.size > 10_000) cache.clear();
    cache.set(expr, c);
  }
  return c;
}

// CEL numbers: JSON numbers that are integers become CEL ints only if we say so; keep them as
// doubles (JS numbers) except bigint. Dates become RFC 3339 strings. undefined is dropped.
function toCel(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toCel);
  if (typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = toCel(x);
    return o;
  }
  return v;
}
