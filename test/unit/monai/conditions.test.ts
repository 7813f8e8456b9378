// MONAI condition strings -> CEL: a table of what translates (and what each translation selects),
// and a table of what must be refused with the task and the expression named.
import { describe, expect, it } from "vitest";
import { compileBool } from "../../../src/expr/cel.ts";
import { ConditionError, renderCel, translateCondition } from "../../../src/monai/conditions.ts";

const steps = (id: string) => ({ detect: "detect", "ai-liver": "ai-liver", Seg_1: "seg-1" })[id];
const cel = (c: string) => renderCel(translateCondition(c, "router", steps).node);

const study = {
  series: [
    { seriesInstanceUID: "2.25.1", modality: "CT", numberOfInstances: 2, seriesDescription: "Localizer" },
    {
      seriesInstanceUID: "2.25.2",
      modality: "CT",
      bodyPartExamined: "ABDOMEN",
      seriesDescription: "CT series for liver tumor from nii 014",
      numberOfInstances: 120,
      attributes: { "00200011": { vr: "IS", Value: [3] }, "00181030": { vr: "LO", Value: ["Liver 3-phase"] } },
    },
  ],
};
const stepState = {
  detect: { phase: "Succeeded", outputs: { device: true, score: 0.91, label: "pacemaker", count: 3 } },
  "ai-liver": { phase: "Succeeded", outputs: { result: "positive" } },
  "seg-1": { phase: "Succeeded", outputs: { "volume-ml": 12.5 } },
};

describe("translateCondition", () => {
  it.each([
    [
      "{{ context.dicom.series.any('0008','103E') }} == 'CT series for liver tumor from nii 014'",
      "study.series.exists(s, has(s.seriesDescription) && s.seriesDescription == 'CT series for liver tumor from nii 014')",
      true,
    ],
    [
      "{{context.dicom.series.any('0008','103E')}} == 'Axial Chest CT COVID-19'",
      "study.series.exists(s, has(s.seriesDescription) && s.seriesDescription == 'Axial Chest CT COVID-19')",
      false,
    ],
    ["{{ context.dicom.series.any('0008','0060') }} == 'CT'", "study.series.exists(s, s.modality == 'CT')", true],
    ["{{ context.dicom.series.all('0008','0060') }} != 'MR'", "study.series.all(s, s.modality != 'MR')", true],
    [
      "{{ context.dicom.series.any('0018','0015') }} == 'ABDOMEN'",
      "study.series.exists(s, has(s.bodyPartExamined) && s.bodyPartExamined == 'ABDOMEN')",
      true,
    ],
    [
      "{{ context.dicom.series.all('0018','0015') }} == 'ABDOMEN'",
      "study.series.all(s, has(s.bodyPartExamined) && s.bodyPartExamined == 'ABDOMEN')",
      false,
    ],
    [
      "{{ context.dicom.series.any('0018','1030') }} CONTAINS 'Liver'",
      "study.series.exists(s, has(s.attributes) && '00181030' in s.attributes && has(s.attributes['00181030'].Value) && s.attributes['00181030'].Value.exists(v, string(v).contains('Liver')))",
      true,
    ],
    [
      "{{ context.dicom.series.any('0020','0011') }} >= '3'",
      "study.series.exists(s, has(s.attributes) && '00200011' in s.attributes && has(s.attributes['00200011'].Value) && s.attributes['00200011'].Value.exists(v, double(v) >= 3.0))",
      true,
    ],
    [
      "{{ context.dicom.series.any('0008','103e') }} NOT_CONTAINS 'Localizer'",
      "study.series.exists(s, has(s.seriesDescription) && !s.seriesDescription.contains('Localizer'))",
      true,
    ],
    ["{{ context.executions.detect.result.device }} == 'true'", "string(steps.detect.outputs.device) == 'true'", true],
    ["{{ context.executions.detect.result.score }} > '0.9'", "double(steps.detect.outputs.score) > 0.9", true],
    ["{{ context.executions.detect.result.count }} <= 2", "double(steps.detect.outputs.count) <= 2.0", false],
    ["'3' < {{ context.executions.detect.result.count }}", "3.0 < double(steps.detect.outputs.count)", false],
    [
      "{{ context.executions.detect.result.label }} CONTAINS 'pace'",
      "string(steps.detect.outputs.label).contains('pace')",
      true,
    ],
    [
      "{{ context.executions.ai-liver.result.result }} == 'positive'",
      "string(steps['ai-liver'].outputs.result) == 'positive'",
      true,
    ],
    [
      "{{ context.executions.Seg_1.result.volume-ml }} > '10'",
      "double(steps['seg-1'].outputs['volume-ml']) > 10.0",
      true,
    ],
    ["{{ context.executions.task['detect'].'label' }} == 'icd'", "string(steps.detect.outputs.label) == 'icd'", false],
    [
      "{{ context.dicom.series.any('0008','0060') }} == 'CT' AND {{ context.executions.detect.result.device }} == 'true'",
      "study.series.exists(s, s.modality == 'CT') && string(steps.detect.outputs.device) == 'true'",
      true,
    ],
    [
      "{{ context.dicom.series.any('0008','0060') }} == 'MR' or {{ context.dicom.series.any('0008','0060') }} == 'CT'",
      "study.series.exists(s, s.modality == 'MR') || study.series.exists(s, s.modality == 'CT')",
      true,
    ],
    [
      "({{ context.dicom.series.any('0008','0060') }} == 'MR' OR {{ context.dicom.series.any('0008','0060') }} == 'CT') AND {{ context.executions.detect.result.device }} == 'false'",
      "(study.series.exists(s, s.modality == 'MR') || study.series.exists(s, s.modality == 'CT')) && string(steps.detect.outputs.device) == 'false'",
      false,
    ],
  ] as [string, string, boolean][])("%s", (monai, expected, selects) => {
    const text = cel(monai);
    expect(text).toBe(expected);
    expect(compileBool(text)({ study, steps: stepState })).toEqual({ ok: true, value: selects });
  });

  it("escapes quotes and backslashes in literals", () => {
    const text = cel("{{ context.dicom.series.any('0008','103E') }} == 'C:\\path\\x'");
    expect(text).toBe("study.series.exists(s, has(s.seriesDescription) && s.seriesDescription == 'C:\\\\path\\\\x')");
    expect(compileBool(text)({ study: { series: [{ modality: "CT", seriesDescription: "C:\\path\\x" }] } })).toEqual({
      ok: true,
      value: true,
    });
  });

  it("reports which tasks' results a condition reads", () => {
    const t = translateCondition(
      "{{ context.executions.detect.result.device }} == 'true' AND {{ context.executions.ai-liver.result.result }} == 'x'",
      "router",
      steps,
    );
    expect([...t.reads].sort()).toEqual(["ai-liver", "detect"]);
  });

  it.each([
    ["{{ context.input.dicom }} == 'x'", /context\.input\.dicom .*not supported/],
    ["{{ context.input.patient_details.sex }} == 'F'", /not supported/],
    ["{{ context.executions.detect.output_dir }} == 'x'", /not supported/],
    ["{{ context.executions.detect.result.device }} == 'null'", /'null'/],
    ["{{ context.executions.nosuch.result.device }} == 'true'", /"nosuch", which is not a model task/],
    [
      "{{ context.dicom.series.any('0008','0060') }} == 'CT' AND 'a' == {{ context.dicom.series.any('0008','0060') }} OR 'b' == {{ context.dicom.series.any('0008','0060') }}",
      /mixes AND and OR/,
    ],
    ["{{ context.dicom.series.any('0008','0060') }} => '3'", /"=>".*write >= or <=/],
    ["{{ context.dicom.series.any('0008','0060') }} LIKE 'CT'", /unknown word "LIKE"/],
    ["{{ context.dicom.series.any('0008','0060') }} == 'CT", /quote .* not closed/],
    ["{{ context.dicom.series.any('0008','0060') == 'CT'", /"\{\{" .* not closed/],
    ["({{ context.dicom.series.any('0008','0060') }} == 'CT'", /parenthesis is not closed/],
    ["'a' == 'a'", /compares two constants/],
    ["{{ context.dicom.series.any('0008','0060') }} > 'CT'", /> needs a number, got 'CT'/],
    [
      "{{ context.dicom.series.any('0008','0060') }} == {{ context.dicom.series.any('0018','0015') }}",
      /two DICOM attributes/,
    ],
    ["{{ context.dicom.series.any('0008','0060') }} 'CT'", /expected a comparison operator/],
    ["{{ context.dicom.series.any('0008','0060') }} == 'CT' AND", /ends where a value was expected/],
    ["{{ context.dicom.series.any('8','60') }} == 'CT'", /not supported/],
  ])("refuses %s", (monai, why) => {
    let err: unknown;
    try {
      translateCondition(monai, "router", steps);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConditionError);
    const e = err as ConditionError;
    expect(e.message).toMatch(why);
    // the message names the task and quotes the expression, so the author can find it
    expect(e.message).toContain('task "router"');
    expect(e.message).toContain(JSON.stringify(monai));
    expect(e.taskId).toBe("router");
    expect(e.expression).toBe(monai);
  });
});
