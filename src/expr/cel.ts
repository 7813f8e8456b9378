// CEL for trigger expressions and step conditions (@bufbuild/cel, the dialect Kubernetes uses).
// A CEL error is a *value* here, not an exception: every caller must see it as an error, never
// as "false" — a condition that silently reads as false is the MONAI failure radflow exists to fix.
// Every evaluation runs under a cost budget (src/expr/cost.ts, src/expr/meter.ts), and its error
// text is built from the expression alone, never from the values it ran on (src/expr/errors.ts).
import { type CelInput, celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { z } from "zod";
import { Study } from "../api/v1alpha1/study.ts";
import type { ParsedExpr } from "./ast.ts";
import { COST_LIMIT, estimate, type Shape, shapeOfSchema } from "./cost.ts";
import { describeError } from "./errors.ts";
import { instrument, metered, meteredEnv } from "./meter.ts";

const env = meteredEnv(celEnv({ funcs: [...strings] }));

export type CompiledExpr = (bindings: Record<string, unknown>) => BoolResult;
export type BoolResult = { ok: true; value: boolean } | { ok: false; error: string };

export class CelCompileError extends Error {}

function parsed(expr: string): ParsedExpr {
  try {
    return parse(expr);
  } catch (e) {
    // the parser quotes the expression, which is the workflow author's text, not study data
    throw new CelCompileError((e as Error).message);
  }
}

/**
 * Parses and plans an expression once; throws CelCompileError with the parser's message. The
 * result evaluates under `limit` cost units and reports errors without the values involved.
 */
export function compileBool(expr: string, limit = COST_LIMIT): CompiledExpr {
  const run = compileMetered(expr, limit);
  return (bindings) => run(bindings).result;
}

/** compileBool that also reports the units each evaluation spent (tests, benchmarks). */
export function compileMetered(
  expr: string,
  limit = COST_LIMIT,
): (bindings: Record<string, unknown>) => { result: BoolResult; spent: number } {
  const ast = parsed(expr);
  let program: ReturnType<typeof plan>;
  try {
    program = plan(env, { ...ast, expr: instrument(ast.expr) } as ParsedExpr);
  } catch (e) {
    throw new CelCompileError((e as Error).message);
  }
  const outcome = (out: unknown, exceeded: boolean): BoolResult => {
    if (exceeded) return { ok: false, error: `evaluation stopped: it exceeded the cost budget of ${limit} units` };
    if (out instanceof Error || isCelError(out)) return { ok: false, error: describeError(out, ast, expr) };
    if (typeof out !== "boolean") return { ok: false, error: `expression must be a bool, got ${typeof out}` };
    return { ok: true, value: out };
  };
  return (bindings) => {
    const run = metered(limit, () => {
      try {
        return program(toCel(bindings) as Record<string, CelInput>);
      } catch (e) {
        return e as Error; // toCel of an unsupported input; the library itself never throws
      }
    });
    return { result: outcome(run.value, run.exceeded), spent: run.spent };
  };
}

// The largest values the inputs can hold, for the static estimate. The study's come from its
// schema (series ≤ 512, descriptions ≤ 256 characters, …); parts the schema leaves open (a
// series' DICOM attributes, a step's outputs: a termination message of ≤ 4 KiB) are taken as
// 4 KiB of JSON. Larger inputs are still bounded at evaluation by the meter.
const OPEN_ENDED = 4096;
const STEP_COUNT = 32;
const stepsShape: Shape = {
  t: "map",
  max: STEP_COUNT,
  value: {
    t: "map",
    max: 2,
    value: { t: "none" },
    fields: { phase: { t: "string", max: 16 }, outputs: { t: "dyn", max: OPEN_ENDED } },
  },
};
let vars: ReadonlyMap<string, Shape> | undefined;
/** Variables of trigger expressions (study) and step conditions (study, steps); built on first use. */
export function variables(): ReadonlyMap<string, Shape> {
  vars ??= new Map([
    ["study", shapeOfSchema(z.toJSONSchema(Study, { io: "input", unrepresentable: "any" }), OPEN_ENDED)],
    ["steps", stepsShape],
  ]);
  return vars;
}

/** Worst-case cost units of an expression over inputs of the declared sizes. */
export function estimateCost(expr: string): number {
  return estimate(parsed(expr).expr, variables()).cost;
}

export interface ExprProblem {
  /** InvalidExpression (does not parse) or ExpressionTooExpensive (over the budget). */
  kind: "syntax" | "cost";
  message: string;
}

/** Why an expression may not be used (it does not compile, or it may cost too much), or undefined. */
export function checkExpression(expr: string, limit = COST_LIMIT): ExprProblem | undefined {
  let ast: ParsedExpr;
  try {
    compileBool(expr, limit);
    ast = parse(expr);
  } catch (e) {
    return { kind: "syntax", message: (e as Error).message };
  }
  const cost = estimate(ast.expr, variables()).cost;
  if (cost > limit)
    return {
      kind: "cost",
      message: `estimated cost ${formatUnits(cost)} exceeds the budget of ${formatUnits(limit)} units (worst case over studies of up to 512 series); avoid nesting .all()/.exists()/.map() over lists and building long strings`,
    };
  return undefined;
}

function formatUnits(n: number): string {
  return Number.isFinite(n) && n < 1e15 ? Math.round(n).toLocaleString("en-US") : "more than 10^15";
}

/** Compile errors or an over-budget estimate as a message, or undefined when the expression may be used. */
export function checkBool(expr: string): string | undefined {
  return checkExpression(expr)?.message;
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
