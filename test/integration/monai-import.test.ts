// `radflow import monai` end to end: the fixture converts, the YAML applies to the real API
// server, and the stored steps' `when` (read back from the server) pick exactly the branch whose
// series description the study carries — and no step for a study that matches no branch.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AIWorkflow, type Study } from "../../src/api/v1alpha1/index.ts";
import { renderImport } from "../../src/cmd/import.ts";
import { compileBool } from "../../src/expr/cel.ts";
import { ImportError, importMonai } from "../../src/monai/convert.ts";
import { sharedPath, withoutShared } from "../support/shared.ts";
import { custom, kubectl, useNamespace } from "./helpers.ts";

const ns = useNamespace("monai");
// ../shared fixtures: read when the tests run, skipped with a one-line reason when it is absent
const fixturePath = sharedPath("fixtures", "monai", "liver-lung-seg.workflow.json");
const noShared = withoutShared(import.meta.filename);

const branches = {
  ailiver: "CT series for liver tumor from nii 014",
  ailung: "Axial Chest CT COVID-19",
};

function study(...descriptions: string[]): Study {
  return {
    studyInstanceUID: "2.25.112233445566778899",
    calledAETitle: "MONAI-DEPLOY",
    callingAETitle: "ORTHANC",
    series: [
      // a scout first: MONAI's "first instance with the tag" reading would see only this one
      { seriesInstanceUID: "2.25.1", modality: "CT", seriesDescription: "Topogram 0.6 T20f", numberOfInstances: 1 },
      ...descriptions.map((d, i) => ({
        seriesInstanceUID: `2.25.${i + 2}`,
        modality: "CT",
        seriesDescription: d,
        numberOfInstances: 120,
      })),
    ],
  };
}

describe.skipIf(noShared)("radflow import monai on a real API server", () => {
  it("the fixture's YAML applies, and each branch's study selects exactly that branch's step", async () => {
    const fixture = JSON.parse(readFileSync(fixturePath, "utf8"));
    const text = renderImport(fixture, { namespace: ns.name }, fixturePath);
    await kubectl(["apply", "-f", "-"], text);
    const stored = AIWorkflow.parse(
      await custom().getNamespacedCustomObject({
        group: "radflow.io",
        version: "v1alpha1",
        namespace: ns.name,
        plural: "aiworkflows",
        name: "all-in-one",
      }),
    );
    expect(stored.spec.steps.map((s) => s.name).sort()).toEqual(Object.keys(branches).sort());
    expect(stored.spec.trigger.sources).toEqual({ calledAETitles: ["MONAI-DEPLOY"], callingAETitles: ["ORTHANC"] });

    const selected = (s: Study) =>
      stored.spec.steps
        .filter((step) => {
          const r = compileBool(step.when!)({ study: s, steps: {} });
          if (!r.ok) throw new Error(`step ${step.name}: ${r.error}`);
          return r.value;
        })
        .map((step) => step.name);

    for (const [step, description] of Object.entries(branches)) {
      expect(selected(study(description)), description).toEqual([step]);
    }
    expect(selected(study("Head CT 5mm"))).toEqual([]);
    expect(selected(study())).toEqual([]);
  });
});

// The public MONAI Deploy corpus (../shared): every workflow the importer converts is accepted by
// the real API server's CRD validation and reads back as a valid AIWorkflow with the same steps.
const corpusDir = sharedPath("fixtures", "monai-corpus", "workflows");
describe.skipIf(noShared)("the MONAI corpus on a real API server", () => {
  it("applies every converted workflow", { timeout: 180_000 }, async () => {
    const docs: string[] = [];
    const expected = new Map<string, string[]>();
    readdirSync(corpusDir)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .forEach((f, i) => {
        let wf = JSON.parse(readFileSync(path.join(corpusDir, f), "utf8"));
        if (wf.data?.[0]?.workflow) wf = wf.data[0].workflow;
        else if (!wf.tasks && wf.workflow) wf = wf.workflow;
        const images = Object.fromEntries(
          (wf.tasks ?? [])
            .filter((t: { type?: string }) => t?.type === "argo")
            .map((t: { id: string }) => [t.id, `registry.example.org/${t.id.toLowerCase()}:1`]),
        );
        // several published workflows share a name: one object per file
        const name = `corpus-${i}`;
        try {
          const { workflow } = importMonai(wf, { name, namespace: ns.name, images });
          expected.set(
            name,
            workflow.spec.steps.map((s) => s.name),
          );
          docs.push(renderImport(wf, { name, namespace: ns.name, images }, f));
        } catch (e) {
          if (!(e instanceof ImportError)) throw e;
        }
      });
    expect(docs.length).toBe(43); // 7 refused: see test/unit/monai/corpus.test.ts
    await kubectl(["apply", "-f", "-"], docs.join("\n---\n"));
    for (const [name, steps] of expected) {
      const stored = AIWorkflow.parse(
        await custom().getNamespacedCustomObject({
          group: "radflow.io",
          version: "v1alpha1",
          namespace: ns.name,
          plural: "aiworkflows",
          name,
        }),
      );
      expect(
        stored.spec.steps.map((s) => s.name),
        name,
      ).toEqual(steps);
    }
  });
});
