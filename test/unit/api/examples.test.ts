// The examples are documentation users copy: each must parse, say what it models, and carry
// expressions that compile.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/index.ts";
import { checkBool, compileBool } from "../../../src/expr/cel.ts";

const dir = path.resolve(import.meta.dirname, "../../../examples");
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
const load = (f: string) => AIWorkflow.parse(yaml.load(readFileSync(path.join(dir, f), "utf8")));

describe("examples", () => {
  it("there are the six documented use cases", () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  it.each(files)("%s parses as an AIWorkflow", (f) => {
    const r = AIWorkflow.safeParse(yaml.load(readFileSync(path.join(dir, f), "utf8")));
    expect(r.error?.issues).toBeUndefined();
  });

  it.each(files)("%s starts with a comment on what it models", (f) => {
    const lines = readFileSync(path.join(dir, f), "utf8").split("\n");
    const comment = lines.slice(
      0,
      lines.findIndex((l) => !l.startsWith("#")),
    );
    expect(comment.join(" ").length).toBeGreaterThan(120);
  });

  it.each(files)("%s: every CEL expression compiles", (f) => {
    const wf = load(f);
    for (const e of [wf.spec.trigger.expression, ...wf.spec.steps.map((s) => s.when)]) {
      if (e) expect(checkBool(e), e).toBeUndefined();
    }
  });

  it("cover the priorities and features the use cases call for", () => {
    const all = files.map(load);
    const byName = new Map(all.map((w) => [w.metadata.name, w]));
    const ich = byName.get("head-ct-ich-triage")!;
    expect(ich.spec.priority).toBe("stat");
    expect(ich.spec.steps.map((s) => s.resources.gpu)).toEqual([1]);
    expect(ich.spec.queueTimeoutSeconds).toBeLessThanOrEqual(300);
    const mri = byName.get("mri-safety-implant-check")!;
    expect(mri.spec.steps[1]).toMatchObject({ dependsOn: ["detect"], when: "steps.detect.outputs.device == true" });
    expect(all.some((w) => w.spec.steps.some((s) => s.resources.gpuProduct))).toBe(true);
    const batch = all.find((w) => w.spec.priority === "batch")!;
    expect(batch.spec.concurrency?.maxRunning).toBeGreaterThan(0);
  });

  it("the cascade runs identify only when detect found a device, and fails loudly without the output", () => {
    const when = compileBool(load("mri-safety-implanted-device.yaml").spec.steps[1]!.when!);
    const study = { series: [] };
    expect(when({ study, steps: { detect: { phase: "Succeeded", outputs: { device: true } } } })).toEqual({
      ok: true,
      value: true,
    });
    expect(when({ study, steps: { detect: { phase: "Succeeded", outputs: { device: false } } } })).toEqual({
      ok: true,
      value: false,
    });
    expect(when({ study, steps: { detect: { phase: "Succeeded", outputs: {} } } }).ok).toBe(false);
  });

  it("the trigger expressions select the studies they describe", () => {
    const cac = compileBool(load("coronary-calcium-opportunistic.yaml").spec.trigger.expression!);
    const ct = (seriesDescription: string, numberOfInstances: number) => ({
      study: { series: [{ modality: "CT", seriesDescription, numberOfInstances }] },
    });
    expect(cac(ct("Chest 1.0 B35f", 320))).toEqual({ ok: true, value: true });
    expect(cac(ct("Chest contrast 1.0", 320))).toEqual({ ok: true, value: false });
    expect(cac(ct("Chest 5.0 thick", 60))).toEqual({ ok: true, value: false });
  });
});
