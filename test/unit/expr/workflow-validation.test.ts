// Workflow validation refuses what would stall or break routing (issue 12, items 2 and 7):
// expressions over the cost budget, and names that cannot name tasks (for objects stored before
// the CRD rule that now refuses them at admission).
import { describe, expect, it } from "vitest";
import { AIWorkflow, WORKFLOW_NAME_MAX, workflowNameProblem } from "../../../src/api/v1alpha1/index.ts";
import { validateWorkflow } from "../../../src/controllers/aiworkflow.ts";

const L = `[${Array.from({ length: 25 }, (_, i) => i).join(", ")}]`;
const NESTED = `${L}.all(a, ${L}.all(b, ${L}.all(c, ${L}.all(d, a + b + c + d >= 0))))`;

function workflow(name: string, spec: Record<string, unknown> = {}): AIWorkflow {
  return AIWorkflow.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name, namespace: "radiology", uid: "u", generation: 1 },
    spec: { trigger: {}, steps: [{ name: "infer", image: "registry.example.org/model:1" }], ...spec },
  });
}

describe("validateWorkflow", () => {
  it("marks the issue's nested .all() trigger not Ready: ExpressionTooExpensive, naming the field", () => {
    const v = validateWorkflow(workflow("nested", { trigger: { expression: NESTED } }));
    expect(v).toMatchObject({ ok: false, reason: "ExpressionTooExpensive" });
    expect(v.message).toMatch(/^AIWorkflow radiology\/nested: trigger\.expression may cost too much: estimated cost/);
  });

  it("does the same for a step's when", () => {
    const v = validateWorkflow(
      workflow("w", {
        steps: [
          { name: "a", image: "registry.example.org/model:1" },
          {
            name: "b",
            image: "registry.example.org/model:1",
            dependsOn: ["a"],
            when: `steps.a.phase == 'Succeeded' && ${NESTED}`,
          },
        ],
      }),
    );
    expect(v).toMatchObject({ ok: false, reason: "ExpressionTooExpensive" });
    expect(v.message).toContain("step 'b': `when` may cost too much");
  });

  it("keeps InvalidExpression for an expression that does not compile", () => {
    expect(validateWorkflow(workflow("x", { trigger: { expression: "study.series.exists(s, " } })).reason).toBe(
      "InvalidExpression",
    );
  });

  it.each([
    ["ct.head-triage", "a dot"],
    ["a".repeat(WORKFLOW_NAME_MAX + 1), "64 characters"],
  ])("refuses the name %s (%s) with InvalidName, saying what to fix", (name) => {
    const v = validateWorkflow(workflow(name));
    expect(v).toMatchObject({ ok: false, reason: "InvalidName" });
    expect(v.message).toMatch(
      /metadata\.name must be a DNS label: at most 63 lower-case letters, digits and '-', no dots/,
    );
  });

  it("accepts a 63-character name", () => {
    expect(workflowNameProblem("a".repeat(63))).toBeUndefined();
    expect(validateWorkflow(workflow(`w${"-x".repeat(31)}`)).ok).toBe(true);
  });
});
