// On 409 AlreadyExists the reconciler asks whose the Job is (issue 12, item 1): its own Job (a
// re-plan after a restart) is fine; anything else must fail the step, not be waited for forever.
import type { V1Job } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import type { InferenceTask } from "../../../src/api/v1alpha1/index.ts";
import { jobOwnership } from "../../../src/controllers/inferencetask.ts";

const UID = "5f0c6f3e-0d0b-4a51-9d3c-2a1f6b1e7c11";
const task = { metadata: { name: "head-ct-0123456789abcdef", namespace: "radiology", uid: UID } } as InferenceTask;

function existing(o: { task?: string; step?: string; owner?: string; deleting?: boolean } = {}): V1Job {
  const labels: Record<string, string> = { "app.kubernetes.io/managed-by": "radflow" };
  if (o.task !== undefined) labels["radflow.io/task"] = o.task;
  if (o.step !== undefined) labels["radflow.io/step"] = o.step;
  return {
    metadata: {
      name: "head-ct-0123456789abcdef-detect",
      labels,
      ownerReferences: o.owner
        ? [{ apiVersion: "radflow.io/v1alpha1", kind: "InferenceTask", name: "x", uid: o.owner, controller: true }]
        : undefined,
      deletionTimestamp: o.deleting ? new Date() : undefined,
    },
  };
}

describe("jobOwnership", () => {
  it("this task's Job for this step, owned by this task: ours", () => {
    expect(jobOwnership(task, "detect", existing({ task: task.metadata.name, step: "detect", owner: UID }))).toBe(
      "ours",
    );
  });

  it("gone in between, or an earlier incarnation's Job on its way out: create again shortly", () => {
    expect(jobOwnership(task, "detect", undefined)).toBe("leaving");
    const old = existing({ task: task.metadata.name, step: "detect", owner: "another-uid", deleting: true });
    expect(jobOwnership(task, "detect", old)).toBe("leaving");
  });

  const conflicts: [string, V1Job, RegExp][] = [
    [
      "another task's Job (a name collision)",
      existing({ task: "other", step: "detect", owner: "u2" }),
      /task other step detect/,
    ],
    [
      "this task's Job for another step",
      existing({ task: task.metadata.name, step: "segment", owner: UID }),
      /step segment/,
    ],
    [
      "an earlier incarnation's Job that is not being deleted",
      existing({ task: task.metadata.name, step: "detect", owner: "another-uid" }),
      /earlier incarnation/,
    ],
    ["this task's labels but no owner", existing({ task: task.metadata.name, step: "detect" }), /earlier incarnation/],
    ["a Job radflow did not make", existing(), /radflow did not make/],
  ];
  it.each(conflicts)("%s: a conflict naming what holds it", (_n, job, message) => {
    const v = jobOwnership(task, "detect", job);
    expect(v).toEqual({ conflict: expect.stringMatching(message) });
  });
});
