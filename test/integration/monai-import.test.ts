// `radflow import monai` end to end: the fixture converts, the YAML applies to the real API
// server, and the stored steps' `when` (read back from the server) pick exactly the branch whose
// series description the study carries — and no step for a study that matches no branch.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AIWorkflow, type Study } from "../../src/api/v1alpha1/index.ts";
import { renderImport } from "../../src/cmd/import.ts";
import { compileBool } from "../../src/expr/cel.ts";
import { custom, kubectl, useNamespace } from "./helpers.ts";

const ns = useNamespace("monai");
const fixturePath = path.resolve(import.meta.dirname, "../../../shared/fixtures/monai/liver-lung-seg.workflow.json");
const fixture = JSON.parse(readFileSync(fixturePath, "utf8"));

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

describe("radflow import monai on a real API server", () => {
  it("the fixture's YAML applies, and each branch's study selects exactly that branch's step", async () => {
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
