// zod's verdict on the invalid table: every case is rejected, at the field the API server names
// (test/integration/api.test.ts checks the API server's verdict on the same table).
import { describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/index.ts";
import { invalidCases, invalidWorkflow, validWorkflow, zodPath } from "./invalid-cases.ts";

describe("AIWorkflow schema", () => {
  it("accepts the base workflow the invalid cases start from", () => {
    const r = AIWorkflow.safeParse(validWorkflow());
    expect(r.error?.issues).toBeUndefined();
  });

  it("has at least 15 invalid cases", () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(15);
  });

  it.each(invalidCases)("rejects: $name", (c) => {
    const r = AIWorkflow.safeParse(invalidWorkflow(c));
    expect(r.success).toBe(false);
    const paths = r.error!.issues.map((i) => i.path.join("."));
    expect(
      paths.some((p) => p.startsWith(zodPath(c.field))),
      `issues at ${paths.join(", ")}`,
    ).toBe(true);
  });

  it("parses a numeric quantity as a string, as a Job's resources need it", () => {
    const wf = validWorkflow();
    const steps = (wf.spec as { steps: { resources?: Record<string, unknown> }[] }).steps;
    steps[0]!.resources = { gpu: 1, cpu: 2 };
    expect(AIWorkflow.parse(wf).spec.steps[0]!.resources.cpu).toBe("2");
  });

  it("names the missing step in a dependsOn error", () => {
    const c = invalidCases.find((x) => x.name === "dependsOn an unknown step")!;
    const r = AIWorkflow.safeParse(invalidWorkflow(c));
    expect(r.error!.issues.map((i) => i.message).join("\n")).toContain(
      'step "identify" depends on "detekt", which is not a step',
    );
  });

  it("fills the schema's defaults", () => {
    const wf = AIWorkflow.parse(validWorkflow());
    expect(wf.spec.steps[1]).toMatchObject({ timeoutSeconds: 3600, retries: 0, resources: { gpu: 1 } });
    expect(wf.spec.suspend).toBe(false);
    expect(wf.spec.storage?.mountPath).toBe("/data");
  });
});
