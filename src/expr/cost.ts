// The cost of a CEL expression, the way Kubernetes bounds CRD validation rules: estimated from the
// syntax tree before the expression is accepted (worst case over the inputs' declared maximum
// sizes), and metered while it runs (src/expr/meter.ts) so that no evaluation exceeds the budget
// even when the estimate was never made. One unit is about one node evaluated, or ten characters
// (list entries) a function reads or produces; on this interpreter a unit is roughly a microsecond.
import { bodyNodes, callArgs, children, type Expr } from "./ast.ts";

/** Units one evaluation may spend; the static estimate must stay below it too. */
export const COST_LIMIT = 250_000;

/** What is known about a value's size: lists, maps and strings by their maximum length. */
export type Shape =
  | { t: "none" } // no value yet (the element type of an empty accumulator)
  | { t: "scalar" }
  | { t: "string"; max: number }
  | { t: "list"; max: number; elem: Shape }
  | { t: "map"; max: number; value: Shape; fields?: Record<string, Shape> }
  | { t: "dyn"; max: number }; // any JSON value of at most `max` characters

const SCALAR: Shape = { t: "scalar" };
const NONE: Shape = { t: "none" };

export function sizeOf(s: Shape): number {
  return s.t === "none" || s.t === "scalar" ? 0 : s.max;
}

function join(a: Shape, b: Shape): Shape {
  if (a.t === "none") return b;
  if (b.t === "none") return a;
  if (a.t === "scalar" && b.t === "scalar") return SCALAR;
  if (a.t === "string" && b.t === "string") return { t: "string", max: Math.max(a.max, b.max) };
  if (a.t === "list" && b.t === "list") return { t: "list", max: Math.max(a.max, b.max), elem: join(a.elem, b.elem) };
  if (a.t === "map" && b.t === "map")
    return { t: "map", max: Math.max(a.max, b.max), value: join(mapValue(a), mapValue(b)) };
  return { t: "dyn", max: Math.max(sizeOf(a), sizeOf(b)) };
}

function mapValue(m: Extract<Shape, { t: "map" }>): Shape {
  return Object.values(m.fields ?? {}).reduce(join, m.value);
}

/** How many passes a comprehension over a value of this shape makes, and what it binds. */
function iteration(s: Shape): { n: number; elem: Shape } {
  switch (s.t) {
    case "list":
      return { n: s.max, elem: s.elem };
    case "map":
      return { n: s.max, elem: { t: "string", max: 256 } };
    case "dyn":
      return { n: Math.ceil(s.max / 2), elem: s }; // a JSON array of `max` characters: [1,1,…]
    default:
      return { n: 0, elem: NONE };
  }
}

const EQUALITY = new Set(["_==_", "_!=_"]);

/** Characters (entries) a call reads: all of its arguments, but equality stops at the shorter side. */
export function readSize(fn: string, argSizes: readonly number[]): number {
  if (EQUALITY.has(fn)) return Math.min(...argSizes);
  let sum = 0;
  for (const s of argSizes) sum += s;
  return sum;
}

/** The per-call charge the meter also makes: one unit plus a tenth of the sizes read and made. */
export function callCharge(read: number, resultSize: number): number {
  return 1 + Math.ceil(read / 10) + Math.ceil(resultSize / 10);
}

/** `matches` runs RE2 over the text once per pattern state: charged as the product. */
export function matchesCharge(textSize: number, patternSize: number): number {
  return (Math.ceil(textSize / 10) + 1) * (Math.ceil(patternSize / 10) + 1);
}

/** Worst-case size of `s.replace(old, new)`: an empty `old` inserts `new` between every character. */
export function replaceSize(s: number, old: number, repl: number): number {
  return old === 0 ? s + (s + 1) * repl : s + Math.floor(s / old) * repl;
}

// Operators the interpreter evaluates itself (short-circuiting, indexing): no function call, so
// the meter charges them only through the comprehension pass that contains them.
const SPECIAL = new Set([
  "_&&_",
  "_||_",
  "_?_:_",
  "@not_strictly_false",
  "not_strictly_false",
  "_[_]",
  "_[?_]",
  "_?._",
]);

function resultShape(fn: string, args: Shape[], argExprs: Expr[]): Shape {
  const [a = SCALAR, b = SCALAR, c = SCALAR] = args;
  switch (fn) {
    case "_+_":
      if (a.t === "string" && b.t === "string") return { t: "string", max: a.max + b.max };
      if (a.t === "list" && b.t === "list") return { t: "list", max: a.max + b.max, elem: join(a.elem, b.elem) };
      if (a.t === "dyn" || b.t === "dyn") return { t: "dyn", max: sizeOf(a) + sizeOf(b) };
      return SCALAR;
    case "_?_:_":
      return join(b, c);
    case "_[_]":
    case "_[?_]":
      if (a.t === "list") return a.elem;
      if (a.t === "map") {
        const k = argExprs[1]?.exprKind;
        const key =
          k?.case === "constExpr" && k.value.constantKind.case === "stringValue" ? k.value.constantKind.value : "";
        return a.fields?.[key] ?? mapValue(a);
      }
      return a.t === "dyn" ? a : SCALAR;
    case "dyn":
      return a;
    case "string":
    case "bytes":
      return { t: "string", max: Math.max(sizeOf(a), 32) };
    case "lowerAscii":
    case "upperAscii":
    case "trim":
    case "substring":
    case "charAt":
      return { t: "string", max: sizeOf(a) };
    case "replace":
      return { t: "string", max: replaceSize(sizeOf(a), 0, sizeOf(c)) };
    case "split":
      return { t: "list", max: sizeOf(a) + 1, elem: { t: "string", max: sizeOf(a) } };
    case "join":
      return { t: "string", max: sizeOf(a) * (sizeOf(a.t === "list" ? a.elem : a) + sizeOf(b)) };
    case "format":
      return { t: "string", max: sizeOf(a) + sizeOf(b) * sizeOf(b.t === "list" ? b.elem : b) };
    case "strings.quote":
      return { t: "string", max: 2 * sizeOf(a) + 2 };
    default:
      return SCALAR;
  }
}

export interface Estimate {
  /** Worst-case units. */
  cost: number;
  shape: Shape;
}

/**
 * The worst-case cost of evaluating `e` with variables of the given shapes. Unknown variables
 * are scalars (evaluating them is an error, which is cheap).
 */
export function estimate(e: Expr, vars: ReadonlyMap<string, Shape>): Estimate {
  const k = e.exprKind;
  switch (k.case) {
    case "constExpr": {
      const c = k.value.constantKind;
      if (c.case === "stringValue") return { cost: 1, shape: { t: "string", max: c.value.length } };
      if (c.case === "bytesValue") return { cost: 1, shape: { t: "string", max: c.value.length } };
      return { cost: 1, shape: SCALAR };
    }
    case "identExpr":
      return { cost: 1, shape: vars.get(k.value.name) ?? SCALAR };
    case "selectExpr": {
      const o = k.value.operand ? estimate(k.value.operand, vars) : { cost: 0, shape: SCALAR };
      if (k.value.testOnly) return { cost: o.cost + 1, shape: SCALAR };
      const s = o.shape;
      const shape = s.t === "map" ? (s.fields?.[k.value.field] ?? s.value) : s.t === "dyn" ? s : SCALAR;
      return { cost: o.cost + 1, shape };
    }
    case "listExpr": {
      const els = k.value.elements.map((x) => estimate(x, vars));
      return {
        cost: 1 + els.reduce((a, x) => a + x.cost, 0),
        shape: { t: "list", max: els.length, elem: els.map((x) => x.shape).reduce(join, NONE) },
      };
    }
    case "structExpr": {
      const parts = children(e).map((x) => estimate(x, vars));
      return {
        cost: 1 + parts.reduce((a, x) => a + x.cost, 0),
        shape: { t: "map", max: k.value.entries.length, value: parts.map((x) => x.shape).reduce(join, NONE) },
      };
    }
    case "callExpr": {
      const argExprs = callArgs(k.value);
      const args = argExprs.map((x) => estimate(x, vars));
      const fn = k.value.function;
      const shape = resultShape(
        fn,
        args.map((x) => x.shape),
        argExprs,
      );
      let own = 1;
      if (fn === "_&&_" || fn === "_||_" || fn === "_?_:_") {
        // worst case: every branch evaluated
      } else if (!SPECIAL.has(fn)) {
        own = callCharge(
          readSize(
            fn,
            args.map((x) => sizeOf(x.shape)),
          ),
          sizeOf(shape),
        );
        if (fn === "matches") own += matchesCharge(sizeOf(args[0]?.shape ?? SCALAR), sizeOf(args[1]?.shape ?? SCALAR));
      }
      return { cost: own + args.reduce((a, x) => a + x.cost, 0), shape };
    }
    case "comprehensionExpr":
      return comprehension(k.value, vars);
    default:
      return { cost: 1, shape: SCALAR };
  }
}

function comprehension(
  c: Extract<Expr["exprKind"], { case: "comprehensionExpr" }>["value"],
  vars: ReadonlyMap<string, Shape>,
) {
  const range = c.iterRange ? estimate(c.iterRange, vars) : { cost: 0, shape: SCALAR };
  const init = c.accuInit ? estimate(c.accuInit, vars) : { cost: 0, shape: SCALAR };
  const { n, elem } = iteration(range.shape);
  const inner = new Map(vars);
  inner.set(c.iterVar, elem);
  // A list accumulator (map, filter) grows by one element per pass: estimate the step once to
  // learn the element, then again with the accumulator at its full length.
  let accu: Shape = init.shape.t === "list" ? { t: "list", max: n, elem: NONE } : init.shape;
  inner.set(c.accuVar, accu);
  if (accu.t === "list" && c.loopStep) {
    const grown = estimate(c.loopStep, inner).shape;
    accu = { t: "list", max: n, elem: grown.t === "list" ? grown.elem : grown };
    inner.set(c.accuVar, accu);
  }
  const cond = c.loopCondition ? estimate(c.loopCondition, inner).cost : 0;
  const step = c.loopStep ? estimate(c.loopStep, inner).cost : 0;
  const result = c.result ? estimate(c.result, inner) : { cost: 0, shape: SCALAR };
  return {
    cost: 1 + range.cost + init.cost + n * (bodyNodes(c) + cond + step) + result.cost,
    shape: result.shape,
  };
}

/**
 * The Shape of a value described by a JSON Schema (zod's toJSONSchema output): maximum lengths
 * and item counts where the schema has them, `unbounded` characters where it has none.
 */
export function shapeOfSchema(schema: unknown, unbounded: number): Shape {
  const s = (schema ?? {}) as Record<string, unknown>;
  switch (s.type) {
    case "string":
      return { t: "string", max: typeof s.maxLength === "number" ? s.maxLength : unbounded };
    case "array":
      return {
        t: "list",
        max: typeof s.maxItems === "number" ? s.maxItems : Math.ceil(unbounded / 2),
        elem: shapeOfSchema(s.items, unbounded),
      };
    case "object": {
      const props = s.properties as Record<string, unknown> | undefined;
      if (props && Object.keys(props).length > 0) {
        const fields: Record<string, Shape> = {};
        for (const [name, p] of Object.entries(props)) fields[name] = shapeOfSchema(p, unbounded);
        return { t: "map", max: Object.keys(fields).length, value: NONE, fields };
      }
      if (s.additionalProperties && typeof s.additionalProperties === "object")
        return { t: "map", max: Math.ceil(unbounded / 4), value: shapeOfSchema(s.additionalProperties, unbounded) };
      return { t: "dyn", max: unbounded };
    }
    case "integer":
    case "number":
    case "boolean":
      return SCALAR;
    default:
      return { t: "dyn", max: unbounded };
  }
}
