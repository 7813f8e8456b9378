import { describe, expect, it } from "vitest";
import { streamConfigs } from "../../../src/ingest/streams.ts";

const S = 1_000_000_000;

describe("streamConfigs", () => {
  it("has the three streams of the contract with their subjects", () => {
    expect(streamConfigs().map((c) => [c.name, c.subjects])).toEqual([
      ["RADFLOW_STUDIES", ["radflow.study.>"]],
      ["RADFLOW_RESULTS", ["radflow.task.>"]],
      ["RADFLOW_DLQ", ["radflow.dlq.>"]],
    ]);
  });

  it("adds MONAI's subjects when MONAI compatibility is on", () => {
    const c = streamConfigs({ monai: true });
    expect(c[0]?.subjects).toEqual(["radflow.study.>", "md.workflow.request"]);
    expect(c[1]?.subjects).toEqual(["radflow.task.>", "md.export.request.>"]);
  });

  it("takes retention, replicas and the duplicate window from options, the window at most the age", () => {
    const [studies, , dlq] = streamConfigs({
      maxAgeSeconds: 3600,
      replicas: 3,
      duplicateWindowSeconds: 7200,
      dlqMaxAgeSeconds: 86400,
    });
    expect(studies).toMatchObject({ max_age: 3600 * S, num_replicas: 3, duplicate_window: 3600 * S });
    expect(dlq).toMatchObject({ max_age: 86400 * S, duplicate_window: 7200 * S });
    expect(streamConfigs()[0]).toMatchObject({ max_age: 7 * 86400 * S, duplicate_window: 600 * S, num_replicas: 1 });
  });
});
