import { describe, expect, it } from "vitest";
import { parseOperatorArgs } from "../../../src/cmd/operator.ts";
import { PROCESSED_BUCKET, processedBucketConfig, streamConfigs } from "../../../src/ingest/streams.ts";

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

describe("processedBucketConfig", () => {
  it("is a KV bucket (as `nats kv` makes them) keeping identities as long as the studies stream keeps events", () => {
    const c = processedBucketConfig({ maxAgeSeconds: 3600, replicas: 3 });
    expect(c).toMatchObject({
      name: `KV_${PROCESSED_BUCKET}`,
      subjects: [`$KV.${PROCESSED_BUCKET}.>`],
      max_msgs_per_subject: 1,
      max_age: 3600 * S,
      num_replicas: 3,
      allow_rollup_hdrs: true,
      deny_delete: true,
      allow_direct: true,
    });
    expect(processedBucketConfig().max_age).toBe(streamConfigs()[0]?.max_age);
    expect(processedBucketConfig({}, "OTHER").name).toBe("KV_OTHER");
  });
});

describe("--stream-replicas", () => {
  it("defaults to 1 and is read from the flag or RADFLOW_STREAM_REPLICAS", () => {
    expect(parseOperatorArgs([], {}).cfg.nats.streamReplicas).toBe(1);
    expect(parseOperatorArgs(["--stream-replicas", "3"], {}).cfg.nats.streamReplicas).toBe(3);
    expect(parseOperatorArgs([], { RADFLOW_STREAM_REPLICAS: "3" }).cfg.nats.streamReplicas).toBe(3);
    expect(() => parseOperatorArgs(["--stream-replicas", "0"], {})).toThrow();
  });
});
