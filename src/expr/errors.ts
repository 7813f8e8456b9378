// CEL runtime errors without study values. The library's messages quote the values they failed on
// ("Cannot convert acc-778899 to a BigInt", "no such key: <a value used as key>"), and values
// *derived* from the study (lowered, split, concatenated) cannot be found by searching the message
// for the study's strings. So the message is never passed on: its kind picks a fixed text, and the
// rest — which function, which field, where — comes from the expression's syntax tree, which is
// the workflow author's text.
import { isCelError } from "@bufbuild/cel";
import { type Expr, nodesById, type ParsedExpr } from "./ast.ts";

// [pattern over the library's message, the fixed text radflow reports]; first match wins
const KINDS: [RegExp, string][] = [
  [/regexp|regular expression/i, "invalid regular expression"],
  [/divide by zero|modulus by zero|division by zero/i, "division by zero"],
  [/overflow/i, "integer overflow"],
  [/out of bounds|out of range|index/i, "index out of range"],
  [/no such|not found|unresolved|undeclared/i, "no such field or key"],
  [/overload|type mismatch|unsupported key type|unbound function|iterable/i, "no function for these argument types"],
  [/convert|parse|bigint|unable to|invalid|decode|syntax/i, "value cannot be converted"],
];

/** A value-free description of an evaluation error: kind, function or field, and position. */
export function describeError(err: Error, ast: ParsedExpr, source: string): string {
  const kind = KINDS.find(([re]) => re.test(err.message))?.[1] ?? "evaluation failed";
  const id = isCelError(err) ? err.exprId : undefined;
  const node = id === undefined ? undefined : nodesById(ast.expr).get(BigInt(id));
  if (!node) return kind;
  return [kind, what(node), position(ast, node, source)].filter((x) => x !== "").join(" ");
}

function what(e: Expr): string {
  const k = e.exprKind;
  if (k.case === "callExpr") {
    const f = k.value.function;
    if (f === "_[_]" || f === "_[?_]") return "in an index [ ]";
    if (/^[A-Za-z_][\w.]*$/.test(f)) return `in ${f}()`;
    const op = /^_?([^_]+)_?$/.exec(f)?.[1];
    return `in operator ${op ?? f}`;
  }
  if (k.case === "selectExpr") return `at .${k.value.field}`;
  if (k.case === "identExpr") return `at ${k.value.name}`;
  if (k.case === "comprehensionExpr") return "in a macro (all, exists, map, filter)";
  return "";
}

function position(ast: ParsedExpr, e: Expr, source: string): string {
  const offset = (ast.sourceInfo?.positions as Record<string, number> | undefined)?.[String(e.id)];
  if (offset === undefined) return "";
  // offsets are in code points; the line/column is computed over the author's text
  const before = [...source].slice(0, offset).join("");
  const line = before.split("\n").length;
  const column = offset - before.lastIndexOf("\n");
  return line > 1 ? `(line ${line}, column ${column})` : `(column ${column})`;
}
