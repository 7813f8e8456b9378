// The parsed CEL syntax tree (@bufbuild/cel's protobuf messages), typed from parse() so radflow
// does not import the transitive @bufbuild/cel-spec package directly.
import type { parse } from "@bufbuild/cel";

export type ParsedExpr = ReturnType<typeof parse>;
export type Expr = ParsedExpr["expr"];
export type Call = Extract<Expr["exprKind"], { case: "callExpr" }>["value"];
export type Comprehension = Extract<Expr["exprKind"], { case: "comprehensionExpr" }>["value"];

/** The direct sub-expressions of a node, in evaluation order (a method's target first). */
export function children(e: Expr): Expr[] {
  const k = e.exprKind;
  switch (k.case) {
    case "callExpr":
      return [...(k.value.target ? [k.value.target] : []), ...k.value.args];
    case "selectExpr":
      return k.value.operand ? [k.value.operand] : [];
    case "listExpr":
      return k.value.elements;
    case "structExpr":
      return k.value.entries.flatMap((x) => [
        ...(x.keyKind.case === "mapKey" ? [x.keyKind.value] : []),
        ...(x.value ? [x.value] : []),
      ]);
    case "comprehensionExpr": {
      const c = k.value;
      return [c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result].filter((x): x is Expr => x !== undefined);
    }
    default:
      return [];
  }
}

/** Every node by id, for turning an error's expression id back into what the author wrote. */
export function nodesById(root: Expr): Map<bigint, Expr> {
  const out = new Map<bigint, Expr>();
  const stack = [root];
  while (stack.length) {
    const e = stack.pop() as Expr;
    out.set(e.id, e);
    stack.push(...children(e));
  }
  return out;
}

/**
 * Nodes one pass of a comprehension's body evaluates (loop condition and step). A nested
 * comprehension counts its range, initial value and result: its own body is counted per pass of
 * its own loop.
 */
export function bodyNodes(c: Comprehension): number {
  const count = (e: Expr | undefined): number => {
    if (!e) return 0;
    if (e.exprKind.case === "comprehensionExpr") {
      const n = e.exprKind.value;
      return 1 + count(n.iterRange) + count(n.accuInit) + count(n.result);
    }
    return 1 + children(e).reduce((s, x) => s + count(x), 0);
  };
  return count(c.loopCondition) + count(c.loopStep);
}

/** A method call's target and arguments as one list, as the interpreter passes them. */
export function callArgs(c: Call): Expr[] {
  return c.target ? [c.target, ...c.args] : c.args;
}
