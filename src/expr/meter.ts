// Enforcing the cost budget while an expression runs. @bufbuild/cel 0.6 has no cost hook (no
// interrupt, no step counter), so radflow builds one from its public API:
//   - every library function is wrapped (same name and overload id, so the wrapper replaces the
//     original in the environment) and charges the units src/expr/cost.ts estimates for it,
//     *before* it runs where the result could be large (replace, join);
//   - every comprehension's loop condition is wrapped in a call to TICK, which charges the nodes
//     one pass of the loop body evaluates — `.all()`/`.exists()` bodies call no function at all.
// Over budget, the charge throws. Function wrappers the library builds with celFunc catch
// exceptions and turn them into error values, which `||` could swallow and a loop would then
// continue; these wrappers are not built with celFunc, so the exception unwinds the whole
// evaluation at once, up to plan()'s own catch.
import type { CelEnv, CelFunc, CelType, CelValue } from "@bufbuild/cel";
import { celEnv, isCelList, isCelMap } from "@bufbuild/cel";
import { bodyNodes, type Comprehension, type Expr } from "./ast.ts";
import { callCharge, matchesCharge, readSize, replaceSize } from "./cost.ts";

export class BudgetExceeded extends Error {}

interface Meter {
  spent: number;
  limit: number;
  exceeded: boolean;
}

let meter: Meter | undefined;

function charge(units: number) {
  if (!meter) return; // evaluated outside metered() (never in radflow): unmetered
  meter.spent += units;
  if (meter.spent > meter.limit) {
    meter.exceeded = true;
    throw new BudgetExceeded("cost budget exceeded");
  }
}

/** Runs one evaluation under a budget; `exceeded` says whether it was stopped for cost. */
export function metered<T>(limit: number, run: () => T): { value: T; spent: number; exceeded: boolean } {
  const m: Meter = { spent: 0, limit, exceeded: false };
  const outer = meter;
  meter = m;
  try {
    const value = run();
    return { value, spent: m.spent, exceeded: m.exceeded };
  } finally {
    meter = outer;
  }
}

function size(v: CelValue | undefined): number {
  if (typeof v === "string") return v.length;
  if (typeof v !== "object" || v === null) return 0; // numbers, booleans: the common case, kept fast
  if (v instanceof Uint8Array) return v.length;
  if (isCelList(v)) return v.size;
  if (isCelMap(v)) return v.size;
  return 0;
}

// the library marks its functions with this registered symbol; the resolver does not check it
const FUNC = Symbol.for("@bufbuild/cel/func");

// Calls whose result can be much larger than their arguments: charged before they run.
function prepay(name: string, target: CelValue | undefined, args: CelValue[]) {
  if (name === "replace" && typeof target === "string" && args.length >= 2) {
    charge(Math.ceil(replaceSize(target.length, size(args[0]), size(args[1])) / 10));
  } else if (name === "join" && isCelList(target)) {
    let total = 0;
    for (const x of target) total += size(x) + size(args[0]);
    charge(Math.ceil(total / 10));
  } else if (name === "matches") {
    charge(matchesCharge(size(target), size(args[0])));
  }
}

function metering(f: CelFunc): CelFunc {
  const expensive = f.name === "replace" || f.name === "join" || f.name === "matches";
  const equality = readSize(f.name, [0, 1]) === 0; // ==, != read the shorter side only
  const wrapped = {
    [FUNC]: {},
    id: f.id,
    name: f.name,
    target: f.target,
    arguments: f.arguments,
    result: f.result,
    call(id: number, target: CelValue | undefined, args: CelValue[]) {
      if (expensive) prepay(f.name, target, args);
      const r = f.call(id, target, args);
      if (r === undefined) return r; // another overload's arguments: not this one's call
      let read = target === undefined ? 0 : size(target);
      if (equality) read = Math.min(size(args[0]), size(args[1]));
      else for (const a of args) read += size(a);
      charge(callCharge(read, size(r as CelValue)));
      return r;
    },
  };
  return wrapped as unknown as CelFunc;
}

/** The name of the per-pass charge inserted into comprehensions (not writable in CEL source). */
export const TICK = "@radflow.tick";

const tick = {
  [FUNC]: {},
  id: `${TICK}(dyn,int)`,
  name: TICK,
  target: undefined,
  arguments: [] as CelType[],
  result: undefined as unknown as CelType,
  call(_id: number, _target: CelValue | undefined, args: CelValue[]) {
    charge(Number(args[1]));
    return args[0];
  },
} as unknown as CelFunc;

/** An environment whose every function charges the current meter. */
export function meteredEnv(base: CelEnv): CelEnv {
  return celEnv({ funcs: [...[...base.funcs].map(metering), tick] });
}

let nextId = -1n; // ids of inserted nodes: negative, never clashing with the parser's
/**
 * A copy of the tree whose comprehensions charge their body's node count each pass. The result
 * evaluates exactly like the original: TICK returns its first argument.
 */
export function instrument(e: Expr): Expr {
  const k = e.exprKind;
  const at = (x: Expr | undefined) => (x ? instrument(x) : undefined);
  switch (k.case) {
    case "callExpr":
      return {
        ...e,
        exprKind: {
          case: "callExpr",
          value: { ...k.value, target: at(k.value.target), args: k.value.args.map(instrument) },
        },
      } as Expr;
    case "selectExpr":
      return { ...e, exprKind: { case: "selectExpr", value: { ...k.value, operand: at(k.value.operand) } } } as Expr;
    case "listExpr":
      return {
        ...e,
        exprKind: { case: "listExpr", value: { ...k.value, elements: k.value.elements.map(instrument) } },
      } as Expr;
    case "structExpr":
      return {
        ...e,
        exprKind: {
          case: "structExpr",
          value: {
            ...k.value,
            entries: k.value.entries.map((x) => ({
              ...x,
              keyKind: x.keyKind.case === "mapKey" ? { case: "mapKey", value: instrument(x.keyKind.value) } : x.keyKind,
              value: at(x.value),
            })),
          },
        },
      } as Expr;
    case "comprehensionExpr": {
      const c = k.value;
      const units = BigInt(Math.max(1, bodyNodes(c)));
      const cond = at(c.loopCondition);
      const value: Comprehension = {
        ...c,
        iterRange: at(c.iterRange),
        accuInit: at(c.accuInit),
        loopStep: at(c.loopStep),
        result: at(c.result),
        loopCondition:
          cond &&
          ({
            ...cond,
            id: nextId--,
            exprKind: {
              case: "callExpr",
              value: {
                $typeName: "cel.expr.Expr.Call",
                function: TICK,
                target: undefined,
                args: [
                  cond,
                  {
                    ...cond,
                    id: nextId--,
                    exprKind: {
                      case: "constExpr",
                      value: { $typeName: "cel.expr.Constant", constantKind: { case: "int64Value", value: units } },
                    },
                  },
                ],
              },
            },
          } as Expr),
      };
      return { ...e, exprKind: { case: "comprehensionExpr", value } } as Expr;
    }
    default:
      return e;
  }
}
