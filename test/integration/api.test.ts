// The API server's verdict on radflow's CRDs: they install and become Established, the examples
// are accepted (created for real, with the API server's defaults matching zod's), the invalid
// table is rejected with a message naming the field and the fault — and zod agrees on every case.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { AIWorkflow, InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { invalidCases, invalidWorkflow, validWorkflow, zodPath } from "../unit/api/invalid-cases.ts";
import { installCrds } from "./crds.ts";
import { custom, kubectl, useNamespace, waitFor } from "./helpers.ts";

const ns = useNamespace("api");
const group = "radflow.io";
const version = "v1alpha1";
const examplesDir = path.resolve(import.meta.dirname, "../../examples");
const examples = readdirSync(examplesDir).filter((f) => f.endsWith(".yaml"));

type Obj = Record<string, unknown>;

async function create(
  plural: string,
  body: Obj,
): Promise<{ ok: true; obj: Obj } | { ok: false; status: number; message: string }> {
  try {
    const obj = (await custom().createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body,
    })) as Obj;
    return { ok: true, obj };
  } catch (e) {
    const err = e as { code?: number; body?: unknown; message: string };
    let message = err.message;
    try {
      message = (typeof err.body === "string" ? JSON.parse(err.body) : (err.body as Obj)).message as string;
    } catch {}
    return { ok: false, status: err.code ?? 0, message };
  }
}

// the API server stores `cpu: 2` as written; zod hands the operator "2"
function quantitiesAsStrings(spec: Obj): Obj {
  const s = structuredClone(spec);
  for (const step of s.steps as { resources?: Obj }[]) {
    for (const k of ["cpu", "memory"]) {
      if (typeof step.resources?.[k] === "number") step.resources[k] = String(step.resources[k]);
    }
  }
  return s;
}

beforeAll(async () => {
  const { stderr } = await installCrds();
  // a format the server does not know or a CEL rule over budget shows up as a warning
  expect(stderr).not.toMatch(/warning/i);
});

describe("radflow CRDs on a real API server", () => {
  it.each(examples)("accepts examples/%s, with the defaults zod applies", async (f) => {
    const text = readFileSync(path.join(examplesDir, f), "utf8");
    await kubectl(["apply", "-n", ns.name, "-f", "-"], text);
    const name = (yaml.load(text) as { metadata: { name: string } }).metadata.name;
    const stored = (await custom().getNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural: "aiworkflows",
      name,
    })) as { spec: Obj };
    const parsed = AIWorkflow.parse(yaml.load(text));
    expect(quantitiesAsStrings(stored.spec)).toEqual(JSON.parse(JSON.stringify(parsed.spec)));
  });

  it("lists AIWorkflows with their printer columns, also under the radflow category and short name", async () => {
    await waitFor("all examples listed", 10_000, async () => {
      const out = await kubectl(["get", "aiwf", "-n", ns.name, "-o", "name"]);
      return { done: out.trim().split("\n").length >= examples.length, seen: out };
    });
    const table = await kubectl(["get", "aiwf", "-n", ns.name]);
    expect(table.split("\n")[0]).toMatch(/^NAME\s+PRIORITY\s+STEPS\s+READY\s+AGE/);
    expect(table).toMatch(/head-ct-ich-triage\s+stat/);
    const byCategory = await kubectl(["get", "radflow", "-n", ns.name, "-o", "name"]);
    expect(byCategory).toContain("aiworkflow.radflow.io/head-ct-ich-triage");
  });

  it("has at least 15 invalid cases", () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(15);
  });

  it.each(invalidCases)("rejects ($name) naming the field, and zod rejects it too", async (c) => {
    const name = `bad-${invalidCases.indexOf(c)}`;
    const r = await create("aiworkflows", invalidWorkflow(c, name));
    expect(r.ok, "the API server accepted it").toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(422);
    expect(r.message).toContain(`${c.field}:`);
    expect(r.message).toMatch(c.why);
    const z = AIWorkflow.safeParse(invalidWorkflow(c, name));
    expect(z.success, "zod accepted what the API server rejected").toBe(false);
    expect(z.error!.issues.map((i) => i.path.join(".")).some((p) => p.startsWith(zodPath(c.field)))).toBe(true);
  });

  it("accepts the base workflow of the invalid table (so each case fails for its own reason)", async () => {
    const r = await create("aiworkflows", { ...validWorkflow(), metadata: { name: "base" } });
    expect(r.ok ? "created" : r.message).toBe("created");
  });

  // a name the API server takes but the radflow.io/workflow label or workflowRef.name (a DNS
  // label) cannot hold made a Ready workflow whose every study was dead-lettered (issue 12, item 2)
  it.each([
    ["a dot", "ct.head-triage"],
    ["64 characters", `w${"-x".repeat(31)}x`],
  ])("refuses an AIWorkflow name with %s at admission, saying what to fix", async (_, name) => {
    const r = await create("aiworkflows", { ...validWorkflow(), metadata: { name } });
    expect(r.ok, "the API server accepted it").toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(422);
    expect(r.message).toContain(
      "metadata.name must be a DNS label: at most 63 lower-case letters, digits and '-', no dots",
    );
  });

  it("accepts an AIWorkflow name of 63 characters", async () => {
    const name = `w${"-x".repeat(31)}`;
    expect(name).toHaveLength(63);
    const r = await create("aiworkflows", { ...validWorkflow(), metadata: { name } });
    expect(r.ok ? "created" : r.message).toBe("created");
  });

  it("kubectl explain prints the field descriptions", async () => {
    // the CRD's OpenAPI is published a moment after it is Established
    const out = await waitFor("kubectl explain aiworkflow.spec.steps", 30_000, async () => {
      try {
        const text = await kubectl(["explain", "aiworkflow.spec.steps"]);
        return { done: text.includes("dependsOn"), value: text, seen: text.slice(0, 200) };
      } catch (e) {
        return { done: false, seen: (e as Error).message };
      }
    });
    expect(out).toContain("The steps of the workflow");
    expect(out).toContain("Container image of the model");
    expect(out).toContain("Steps that must have finished");
    const it = await kubectl(["explain", "inferencetask.status.steps.outputs"]);
    expect(it).toContain("termination message");
  });

  it("stores an InferenceTask with free-form step outputs and DICOM attributes through the status subresource", async () => {
    const wf = AIWorkflow.parse(validWorkflow());
    const task = {
      apiVersion: `${group}/${version}`,
      kind: "InferenceTask",
      metadata: { name: "base-5f2c9a" },
      spec: {
        workflowRef: { name: "base", uid: "5d0f8a52-2d9e-4a1b-9a57-7b1c1f0e9d11", generation: 1 },
        priority: wf.spec.priority,
        steps: wf.spec.steps,
        study: {
          studyInstanceUID: "2.25.123456789012345678901234567890",
          calledAETitle: "RADFLOW-GW",
          series: [
            {
              seriesInstanceUID: "2.25.98765432109876543210",
              modality: "CR",
              numberOfInstances: 1,
              attributes: {
                "00200011": { vr: "IS", Value: [3] },
                "00100010": { vr: "PN", Value: [{ Alphabetic: "X" }] },
              },
            },
          ],
        },
        eventId: "evt-0001",
      },
    };
    expect(InferenceTask.safeParse(task).error?.issues).toBeUndefined();
    const r = await create("inferencetasks", task);
    expect(r.ok ? "created" : r.message).toBe("created");
    const outputs = { device: true, score: 0.93, boxes: [{ x: 1, y: 2 }] };
    const status = {
      phase: "Running",
      currentStep: "detect",
      steps: [{ name: "detect", phase: "Succeeded", outputs }],
    };
    await kubectl([
      "patch",
      "itask",
      "base-5f2c9a",
      "-n",
      ns.name,
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status }),
    ]);
    const got = (await custom().getNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural: "inferencetasks",
      name: "base-5f2c9a",
    })) as { spec: { study: { series: Obj[] } }; status: { steps: Obj[] } };
    expect(got.status.steps[0]!.outputs).toEqual(outputs);
    expect(got.spec.study.series[0]!.attributes).toEqual(task.spec.study.series[0]!.attributes);
    expect(InferenceTask.safeParse(got).error?.issues).toBeUndefined();
    const table = await kubectl(["get", "itask", "-n", ns.name]);
    expect(table.split("\n")[0]).toMatch(/^NAME\s+WORKFLOW\s+PHASE\s+STEP\s+REVIEW\s+DURATION\s+AGE/);
    expect(table).toMatch(/base-5f2c9a\s+base\s+Running\s+detect/);
  });
});
