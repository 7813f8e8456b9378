// MONAI Deploy task-destination conditions -> CEL over radflow's study summary and step outputs.
//
// What MONAI means, and what radflow writes:
//   {{ context.dicom.series.any('gggg','eeee') }} OP v
//       -> study.series.exists(s, <attribute of s> OP v)   (all(...) for .all)
//     MONAI reads the attribute from the first instance that has it; radflow asks the question the
//     condition is written to ask: does some (every) series satisfy it. The attribute is
//     (0008,103E) -> s.seriesDescription, (0008,0060) -> s.modality,
//     (0018,0015) -> s.bodyPartExamined, any other -> s.attributes['GGGGEEEE'].Value (some value).
//     A series without the attribute does not satisfy the comparison.
//   {{ context.executions.<task>.result.<key> }}  -> steps.<step>.outputs.<key>
//     MONAI results are strings, so == != CONTAINS compare string(...) forms (a model writing
//     {"device": true} still matches 'true'); < > <= >= compare double(...) forms, as MONAI
//     compares numbers.
//   AND / OR / parentheses -> && / || ; CONTAINS / NOT_CONTAINS -> contains() / !contains().
// Anything else (other context paths, MONAI's 'null', AND and OR mixed without parentheses,
// whose grouping MONAI resolves right to left) is an error naming the task and the expression:
// a condition radflow cannot translate must never become one that quietly reads as false.

export class ConditionError extends Error {
  readonly taskId: string;
  readonly expression: string;
  constructor(taskId: string, expression: string, reason: string) {
    super(`task "${taskId}": condition ${JSON.stringify(expression)}: ${reason}`);
    this.taskId = taskId;
    this.expression = expression;
  }
}

/** A CEL expression tree, just enough to parenthesise correctly when conditions are combined. */
export type CelNode = { kind: "and" | "or"; items: CelNode[] } | { kind: "leaf"; text: string };

export interface Translation {
  node: CelNode;
  /** MONAI task ids whose results the condition reads */
  reads: Set<string>;
}

/** How conditions name steps: MONAI task id -> radflow step name (undefined: not a step). */
export type StepNames = (taskId: string) => string | undefined;

type Token =
  | { t: "ref"; text: string; pos: number }
  | { t: "str"; value: string; pos: number }
  | { t: "num"; value: string; pos: number }
  | { t: "op"; value: Op; pos: number }
  | { t: "and" | "or" | "(" | ")"; pos: number };
type Op = "==" | "!=" | "<" | ">" | "<=" | ">=" | "CONTAINS" | "NOT_CONTAINS";

type Operand =
  | { k: "series"; mode: "any" | "all"; tag: string }
  | { k: "output"; taskId: string; key: string }
  | { k: "lit"; value: string; numeric: boolean };

/** Translates one MONAI condition string; throws ConditionError. */
export function translateCondition(expression: string, taskId: string, steps: StepNames): Translation {
  const fail = (reason: string): never => {
    throw new ConditionError(taskId, expression, reason);
  };
  const tokens = tokenize(expression, fail);
  const reads = new Set<string>();
  let i = 0;
  const peek = () => tokens[i];

  const operand = (): Operand => {
    const tok = tokens[i++];
    if (!tok) return fail("ends where a value was expected");
    if (tok.t === "str") {
      if (tok.value.toLowerCase() === "null") {
        fail("MONAI's 'null' (a value that is missing) has no translation; test for the value you expect instead");
      }
      return { k: "lit", value: tok.value, numeric: /^-?[0-9]+(\.[0-9]+)?$/.test(tok.value) };
    }
    if (tok.t === "num") return { k: "lit", value: tok.value, numeric: true };
    if (tok.t === "ref") return reference(tok.text, fail);
    return fail(`expected a value at position ${tok.pos}`);
  };

  const comparison = (): CelNode => {
    const left = operand();
    const op = tokens[i++];
    if (op?.t !== "op") return fail(`expected a comparison operator at position ${op?.pos ?? expression.length}`);
    const right = operand();
    for (const o of [left, right]) {
      if (o.k === "output") {
        if (!steps(o.taskId)) fail(`reads the result of "${o.taskId}", which is not a model task of this workflow`);
        reads.add(o.taskId);
      }
    }
    return { kind: "leaf", text: compare(left, op.value, right, steps, fail) };
  };

  const primary = (): CelNode => {
    if (peek()?.t === "(") {
      i++;
      const inner = sequence();
      if (peek()?.t !== ")") fail("a parenthesis is not closed");
      i++;
      return inner;
    }
    return comparison();
  };

  const sequence = (): CelNode => {
    const items = [primary()];
    let joiner: "and" | "or" | undefined;
    for (let tok = peek(); tok && (tok.t === "and" || tok.t === "or"); tok = peek()) {
      if (joiner && joiner !== tok.t) {
        fail(
          "mixes AND and OR without parentheses; MONAI groups such conditions from the right (a AND b OR c means a AND (b OR c)), so write the parentheses you mean",
        );
      }
      joiner = tok.t;
      i++;
      items.push(primary());
    }
    return items.length === 1 || !joiner ? items[0]! : { kind: joiner, items };
  };

  const node = sequence();
  if (i < tokens.length) fail(`unexpected text at position ${tokens[i]!.pos}`);
  return { node, reads };
}

/** CEL text of a tree, with parentheses only where && and || meet. */
export function renderCel(node: CelNode, parent?: "and" | "or"): string {
  if (node.kind === "leaf") return node.text;
  const text = node.items.map((n) => renderCel(n, node.kind)).join(node.kind === "and" ? " && " : " || ");
  return parent && parent !== node.kind ? `(${text})` : text;
}

/** The conjunction of several trees (MONAI ANDs a destination's conditions). */
export function allOf(nodes: CelNode[]): CelNode | undefined {
  const items = nodes.flatMap((n) => (n.kind === "and" ? n.items : [n]));
  if (items.length === 0) return undefined;
  return items.length === 1 ? items[0] : { kind: "and", items };
}

function tokenize(s: string, fail: (reason: string) => never): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (s.startsWith("{{", i)) {
      const end = s.indexOf("}}", i + 2);
      if (end < 0) fail(`"{{" at position ${i} is not closed`);
      out.push({ t: "ref", text: s.slice(i + 2, end).trim(), pos: i });
      i = end + 2;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) fail(`the quote at position ${i} is not closed`);
      out.push({ t: "str", value: s.slice(i + 1, end), pos: i });
      i = end + 1;
    } else if (c === "(" || c === ")") {
      out.push({ t: c, pos: i });
      i++;
    } else {
      if (s.startsWith("=>", i) || s.startsWith("=<", i)) {
        fail(`"${s.slice(i, i + 2)}" at position ${i}: MONAI evaluates it inconsistently; write >= or <=`);
      }
      const m = /^(==|!=|<=|>=|<|>)/.exec(s.slice(i)) ?? /^(-?[0-9]+(\.[0-9]+)?|[A-Za-z_]+)/.exec(s.slice(i));
      if (!m) return fail(`unexpected "${c}" at position ${i}`);
      const w = m[0];
      const upper = w.toUpperCase();
      if (/^[=!<>]/.test(w)) out.push({ t: "op", value: w as Op, pos: i });
      else if (/^-?[0-9]/.test(w)) out.push({ t: "num", value: w, pos: i });
      else if (upper === "AND") out.push({ t: "and", pos: i });
      else if (upper === "OR") out.push({ t: "or", pos: i });
      else if (upper === "CONTAINS" || upper === "NOT_CONTAINS") out.push({ t: "op", value: upper, pos: i });
      else fail(`unknown word "${w}" at position ${i}`);
      i += w.length;
    }
  }
  return out;
}

function reference(text: string, fail: (reason: string) => never): Operand {
  const series =
    /^context\.dicom\.series\.(any|all)\(\s*['"]([0-9A-Fa-f]{4})['"]\s*,\s*['"]([0-9A-Fa-f]{4})['"]\s*\)$/.exec(text);
  if (series) return { k: "series", mode: series[1] as "any" | "all", tag: `${series[2]}${series[3]}`.toUpperCase() };
  const result = /^context\.executions\.([A-Za-z0-9_.-]+?)\.result\.([^\s{}]+)$/.exec(text);
  if (result) return { k: "output", taskId: result[1]!, key: result[2]! };
  // the older spelling: context.executions.task['id'].'key'
  const older = /^context\.executions\.task\['([^']+)'\]\.'([^']+)'$/.exec(text);
  if (older) return { k: "output", taskId: older[1]!, key: older[2]! };
  return fail(
    `{{ ${text} }} is not supported (only context.dicom.series.any/all(...) and context.executions.<task>.result.<key>)`,
  );
}

const KNOWN_SERIES_FIELDS: Record<string, string> = {
  "0008103E": "seriesDescription",
  "00080060": "modality",
  "00180015": "bodyPartExamined",
};

const CEL_RESERVED = new Set(
  "true false null in as break const continue else for function if import let loop package namespace return var void while".split(
    " ",
  ),
);

/** `a.b` when b is a CEL identifier, `a['b']` otherwise. */
export function member(base: string, name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !CEL_RESERVED.has(name)
    ? `${base}.${name}`
    : `${base}[${quote(name)}]`;
}

export function quote(s: string): string {
  return `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'").replaceAll("\n", "\\n")}'`;
}

function compare(l: Operand, op: Op, r: Operand, steps: StepNames, fail: (reason: string) => never): string {
  if (l.k === "lit" && r.k === "lit") fail("compares two constants");
  if (l.k === "series" && r.k === "series")
    fail("compares two DICOM attributes with each other, which has no translation");
  const numeric = op === "<" || op === ">" || op === "<=" || op === ">=";
  for (const o of [l, r]) {
    if (numeric && o.k === "lit" && !o.numeric) fail(`${op} needs a number, got '${o.value}'`);
  }
  const series = l.k === "series" ? l : r.k === "series" ? r : undefined;
  // the per-value variable: a known field of the series, or each value of a DICOM JSON attribute
  const generic = series && !KNOWN_SERIES_FIELDS[series.tag];
  const value = (o: Operand): string => {
    if (o.k === "lit") {
      if (!numeric) return quote(o.value);
      return o.value.includes(".") ? o.value : `${o.value}.0`;
    }
    if (o.k === "output") {
      const ref = member(member(member("steps", steps(o.taskId)!), "outputs"), o.key);
      return numeric ? `double(${ref})` : `string(${ref})`;
    }
    const field = KNOWN_SERIES_FIELDS[o.tag];
    if (field) return numeric ? `double(s.${field})` : `s.${field}`;
    return numeric ? "double(v)" : "string(v)";
  };
  const celOp = op === "CONTAINS" || op === "NOT_CONTAINS" ? undefined : op;
  let cmp = celOp
    ? `${value(l)} ${celOp} ${value(r)}`
    : `${op === "NOT_CONTAINS" ? "!" : ""}${value(l)}.contains(${value(r)})`;
  if (!series) return cmp;
  let guard: string;
  if (generic) {
    const attr = `s.attributes[${quote(series.tag)}]`;
    guard = `has(s.attributes) && ${quote(series.tag)} in s.attributes && has(${attr}.Value)`;
    cmp = `${attr}.Value.exists(v, ${cmp})`;
  } else {
    const field = KNOWN_SERIES_FIELDS[series.tag]!;
    guard = field === "modality" ? "" : `has(s.${field})`;
  }
  const body = guard ? `${guard} && ${cmp}` : cmp;
  return `study.series.${series.mode === "any" ? "exists" : "all"}(s, ${body})`;
}
