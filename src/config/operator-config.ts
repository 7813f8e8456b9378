// Operator configuration: flags override environment, environment overrides defaults.
// Parsed with zod so a bad value stops the operator at start with a message naming it.
import { z } from "zod";

const Toleration = z.object({
  key: z.string().optional(),
  operator: z.enum(["Exists", "Equal"]).optional(),
  value: z.string().optional(),
  effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
});

export const OperatorConfig = z.object({
  kubeconfig: z.string().optional().describe("Path of a kubeconfig; in-cluster config when unset."),
  namespaces: z.array(z.string()).default([]).describe("Namespaces to watch; empty means all."),
  workers: z.number().int().min(1).max(256).default(8).describe("Concurrent InferenceTask reconciles."),
  identity: z.string().min(1).describe("Leader-election identity of this replica (pod name)."),
  leaderElection: z.boolean().default(true),
  leaseNamespace: z.string().default("radflow-system"),
  leaseName: z.string().default("radflow-operator"),
  leaseDurationMs: z.number().int().min(1000).default(15_000),
  renewDeadlineMs: z.number().int().min(500).default(10_000),
  retryPeriodMs: z.number().int().min(100).default(2_000),
  metricsPort: z.number().int().min(0).max(65535).default(8080),
  healthPort: z.number().int().min(0).max(65535).default(8081),
  maxRunningJobs: z.number().int().min(0).default(0).describe("Global cap on running step Jobs; 0 = no cap."),
  gpuResource: z.string().default("nvidia.com/gpu"),
  gpuProductLabel: z.string().default("nvidia.com/gpu.product"),
  gpuTolerations: z.array(Toleration).default([{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }]),
  priorityClasses: z
    .partialRecord(z.enum(["stat", "urgent", "routine", "batch"]), z.string())
    .default({})
    .describe("PriorityClass name per priority; a priority without one gets none."),
  terminationMessageMaxBytes: z.number().int().min(64).max(4096).default(4096),
  startTimeoutSeconds: z
    .number()
    .int()
    .min(1)
    .default(300)
    .describe("Seconds a scheduled step pod may fail to start its container (image, config) before the step fails."),
  taskTtlSeconds: z
    .number()
    .int()
    .min(0)
    .default(86_400)
    .describe("Finished tasks are deleted this long after they end unless their workflow sets a TTL; 0 = kept."),
  nats: z
    .object({
      url: z.string().optional(),
      consumer: z.string().default("radflow-operator"),
      monai: z.boolean().default(false),
      streamReplicas: z
        .number()
        .int()
        .min(1)
        .max(5)
        .default(1)
        .describe("Replicas of radflow's JetStream streams and KV bucket (3 in a production NATS cluster)."),
    })
    .default({ consumer: "radflow-operator", monai: false, streamReplicas: 1 }),
});
export type OperatorConfig = z.infer<typeof OperatorConfig>;
