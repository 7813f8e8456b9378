// CRD generation: deterministic, in sync with crds/ and docs/, structural, every field described.
import { readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  customResourceDefinition,
  GenerationError,
  type JSONSchemaProps,
  type KindDefinition,
  kinds,
  openAPISchema,
} from "../../../src/api/v1alpha1/crd.ts";
import { generatedFiles, main } from "../../../src/cmd/generate.ts";

const repo = path.resolve(import.meta.dirname, "../../..");

/** every schema node with its path */
function* nodes(s: JSONSchemaProps, p = ""): Generator<[string, JSONSchemaProps]> {
  yield [p, s];
  for (const [k, v] of Object.entries(s.properties ?? {})) yield* nodes(v, p ? `${p}.${k}` : k);
  if (s.items) yield* nodes(s.items, `${p}[]`);
  if (s.additionalProperties) yield* nodes(s.additionalProperties, `${p}{}`);
}

function kind(name: string): KindDefinition {
  return kinds.find((k) => k.kind === name)!;
}

describe("CRD generation", () => {
  it("generate --check passes on the committed files and refuses unknown arguments", async () => {
    expect(await main(["--check"])).toBe(0);
    const write = process.stderr.write;
    process.stderr.write = () => true;
    try {
      expect(await main(["--chek"])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
  });

  it("is deterministic", () => {
    expect([...generatedFiles()]).toEqual([...generatedFiles()]);
  });

  it("matches the committed crds/ and docs/api.md (run npm run generate)", () => {
    for (const [rel, content] of generatedFiles()) {
      expect(readFileSync(path.join(repo, rel), "utf8"), rel).toBe(content);
    }
  });

  it.each(kinds)("$kind: every field has a description", (def) => {
    const schema = openAPISchema(def);
    const missing: string[] = [];
    for (const [p, s] of nodes(schema)) {
      for (const [name, field] of Object.entries(s.properties ?? {})) {
        if (p === "" && name === "metadata") continue;
        if (!field.description) missing.push(p ? `${p}.${name}` : name);
      }
    }
    expect(missing).toEqual([]);
  });

  it.each(kinds)("$kind: the schema is structural", (def) => {
    const schema = openAPISchema(def);
    const text = JSON.stringify(schema);
    expect(text).not.toContain("$schema");
    expect(text).not.toContain('"additionalProperties":false');
    expect(text).not.toContain("propertyNames");
    expect(text).not.toContain('"const"');
    for (const [p, s] of nodes(schema)) {
      const typed =
        s.type !== undefined || s["x-kubernetes-int-or-string"] || s["x-kubernetes-preserve-unknown-fields"];
      expect(typed, `${p} has a type`).toBeTruthy();
      expect(s.properties && s.additionalProperties, `${p}: properties and additionalProperties`).toBeFalsy();
      if (s.format) expect(["date-time", "date"]).toContain(s.format);
      if (s.maximum !== undefined) expect(s.maximum).toBeLessThan(Number.MAX_SAFE_INTEGER);
      for (const b of s.anyOf ?? []) expect(Object.keys(b)).toEqual(["type"]);
    }
    expect(schema.properties!.metadata).toEqual({ type: "object" });
  });

  it("AIWorkflow: names, scope, status subresource, printer columns", () => {
    const crd = customResourceDefinition(kind("AIWorkflow"));
    expect(crd.metadata.name).toBe("aiworkflows.radflow.io");
    expect(crd.spec.scope).toBe("Namespaced");
    expect(crd.spec.names).toMatchObject({ shortNames: ["aiwf"], categories: ["radflow"] });
    const v = crd.spec.versions[0]!;
    expect(v).toMatchObject({ name: "v1alpha1", served: true, storage: true, subresources: { status: {} } });
    expect(v.additionalPrinterColumns.map((c) => [c.name, c.jsonPath])).toEqual([
      ["Priority", ".spec.priority"],
      ["Steps", ".status.stepCount"],
      ["Ready", '.status.conditions[?(@.type=="Ready")].status'],
      ["Age", ".metadata.creationTimestamp"],
    ]);
  });

  it("InferenceTask: short name and printer columns", () => {
    const crd = customResourceDefinition(kind("InferenceTask"));
    expect(crd.spec.names).toMatchObject({ shortNames: ["itask"], categories: ["radflow"] });
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map((c) => c.jsonPath)).toEqual([
      ".spec.workflowRef.name",
      ".status.phase",
      ".status.currentStep",
      '.status.conditions[?(@.type=="AwaitingReview")].reason',
      ".status.duration",
      ".metadata.creationTimestamp",
    ]);
  });

  it("keeps defaults, list types and CEL rules, and bounds every list a rule walks", () => {
    const spec = openAPISchema(kind("AIWorkflow")).properties!.spec!;
    const steps = spec.properties!.steps!;
    expect(spec.properties!.priority!.default).toBe("routine");
    expect(steps.items!.properties!.timeoutSeconds!.default).toBe(3600);
    expect(steps["x-kubernetes-list-type"]).toBe("map");
    expect(steps["x-kubernetes-list-map-keys"]).toEqual(["name"]);
    expect(steps["x-kubernetes-validations"]?.map((r) => r.message)).toHaveLength(2);
    expect(steps.maxItems).toBeDefined();
    expect(steps.items!.properties!.dependsOn!.maxItems).toBeDefined();
    expect(steps.items!.properties!.dependsOn!["x-kubernetes-list-type"]).toBe("set");
    // required keys leave defaulted fields out (io: "input")
    expect(steps.items!.required).toEqual(["name"]);
    // image or review, exactly one (a review step runs no container); neither only for a
    // forwarding step, whose every export sends the study
    expect(steps.items!["x-kubernetes-validations"]?.map((r) => r.rule)).toEqual([
      "has(self.image) || has(self.review) || (has(self.export) && size(self.export) > 0 && self.export.all(e, has(e.content) && e.content == 'study'))",
      "!(has(self.image) && has(self.review))",
    ]);
  });

  it("puts AIWorkflow's rule on metadata.name at the root, the only place a rule may read it", () => {
    const root = openAPISchema(kind("AIWorkflow"));
    expect(root["x-kubernetes-validations"]).toEqual([
      expect.objectContaining({
        rule: "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        message: expect.stringMatching(/^metadata\.name must be a DNS label: at most 63 .*no dots/),
      }),
    ]);
    expect(openAPISchema(kind("InferenceTask"))["x-kubernetes-validations"]).toBeUndefined();
  });

  it("refuses RADFLOW_* env names with a message naming the variable", () => {
    const name = openAPISchema(kind("AIWorkflow")).properties!.spec!.properties!.steps!.items!.properties!.env!.items!
      .properties!.name!;
    expect(name["x-kubernetes-validations"]).toEqual([
      expect.objectContaining({
        rule: "!self.startsWith('RADFLOW_')",
        messageExpression: expect.stringMatching(/^self \+ /),
      }),
    ]);
  });

  it("writes a quantity as int-or-string with its pattern", () => {
    const cpu = openAPISchema(kind("AIWorkflow")).properties!.spec!.properties!.steps!.items!.properties!.resources!
      .properties!.cpu!;
    expect(cpu).toMatchObject({
      "x-kubernetes-int-or-string": true,
      anyOf: [{ type: "integer" }, { type: "string" }],
      minimum: 0,
    });
    expect(cpu.pattern).toBeDefined();
  });

  it("keeps step outputs and DICOM attributes as free-form JSON", () => {
    const it = openAPISchema(kind("InferenceTask"));
    const outputs = it.properties!.status!.properties!.steps!.items!.properties!.outputs!;
    expect(outputs).toMatchObject({ type: "object", "x-kubernetes-preserve-unknown-fields": true });
    expect(outputs.additionalProperties).toBeUndefined();
  });

  const fake = (spec: z.ZodType): KindDefinition => ({
    kind: "Fake",
    plural: "fakes",
    singular: "fake",
    shortNames: [],
    printerColumns: [],
    schema: z.object({ spec, status: z.object({}).optional().describe("s") }).describe("A fake."),
  });

  it("fails, naming the field, when a description is missing", () => {
    const spec = z.object({ ok: z.string().describe("fine"), bare: z.string() }).describe("spec");
    expect(() => openAPISchema(fake(spec))).toThrow(GenerationError);
    expect(() => openAPISchema(fake(spec))).toThrow(/spec\.bare: no description/);
  });

  it("merges a union of string literals into one enum", () => {
    const spec = z.object({ mode: z.union([z.literal("a"), z.enum(["b", "c"])]).describe("mode") }).describe("spec");
    expect(openAPISchema(fake(spec)).properties!.spec!.properties!.mode).toEqual({
      description: "mode",
      type: "string",
      enum: ["a", "b", "c"],
    });
  });

  it("refuses a union the API server cannot express", () => {
    const spec = z.object({ x: z.union([z.string(), z.boolean()]).describe("x") }).describe("spec");
    expect(() => openAPISchema(fake(spec))).toThrow(/spec\.x: a union of/);
  });

  it("writes records as additionalProperties with a schema", () => {
    const spec = z.object({ labels: z.record(z.string(), z.string()).describe("labels") }).describe("spec");
    expect(openAPISchema(fake(spec)).properties!.spec!.properties!.labels).toEqual({
      description: "labels",
      type: "object",
      additionalProperties: { type: "string" },
    });
  });

  it("the committed YAML parses back to the generated object", () => {
    for (const def of kinds) {
      const crd = customResourceDefinition(def);
      const file = path.join(repo, "crds", `radflow.io_${def.plural}.yaml`);
      expect(yaml.load(readFileSync(file, "utf8"))).toEqual(JSON.parse(JSON.stringify(crd)));
    }
  });

  it("documents every field in docs/api.md", () => {
    const md = generatedFiles().get("docs/api.md")!;
    for (const def of kinds) {
      for (const [p, s] of nodes(openAPISchema(def))) {
        for (const name of Object.keys(s.properties ?? {})) {
          if (p === "") continue;
          expect(md, `${def.kind}.${p}.${name}`).toContain(`| \`${name}\``);
        }
      }
    }
    expect(md).toContain("### AIWorkflow.spec.steps[]");
    expect(md).toContain("| `timeoutSeconds` | integer | `3600` |");
  });
});
