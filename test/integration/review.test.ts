// The clinical review gate and mandatory outputs on the real API server, Job controller, scheduler
// and KWOK nodes, with the operator as a child process and `radflow review` run as a reviewer would
// run it: accept, reject and timeout paths; the verdict's user is the API server's (a
// ServiceAccount token here), never a flag; a verdict cannot be changed; a model run whose
// termination message lacks a required output fails the step (KWOK plays the model: KWOK_RESULT).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { InferenceTask } from "../../src/api/v1alpha1/index.ts";
import { mergePatch } from "../../src/kube/client.ts";
import {
  core,
  createTask as createTaskFixture,
  custom,
  kubeConfig,
  kubeconfigPath,
  kubectl,
  toolBin,
  useNamespace,
  waitFor,
} from "./helpers.ts";
import { type OperatorProcess, startOperator } from "./operator-process.ts";

const run = promisify(execFile);
const G = { group: "radflow.io", version: "v1alpha1" };
const ns = useNamespace("review");
const entry = path.resolve(import.meta.dirname, "../../src/cmd/radflow.ts");
const PATIENT = "PAT-REVIEW-7731";
const ACCESSION = "ACC-REVIEW-5521";

type Obj = Record<string, unknown>;

const model = (name: string, result: string, extra: Obj = {}): Obj => ({
  name,
  image: `registry.example.org/models/${name}:1.0`,
  resources: { gpu: 0 },
  env: [{ name: "KWOK_RESULT", value: result }],
  ...extra,
});
/** detect → review → send (only when accepted) */
const gated = (review: Obj): Obj[] => [
  model("detect", '{"fracture":true}'),
  { name: "review", dependsOn: ["detect"], review },
  model("send", '{"sent":true}', { dependsOn: ["review"], when: "steps.review.outputs.accepted == true" }),
];

let seq = 0;
function createTask(name: string, steps: Obj[]): Promise<string> {
  seq++;
  return createTaskFixture({
    namespace: ns.name,
    name,
    workflow: "fracture",
    priority: "urgent",
    steps,
    // a patient ID and accession number in the study, to check that none leaks
    spec: {
      study: {
        studyInstanceUID: `1.2.826.0.1.3680043.10.77.${seq}`,
        accessionNumber: ACCESSION,
        series: [
          {
            seriesInstanceUID: `1.2.826.0.1.3680043.11.77.${seq}`,
            modality: "DX",
            numberOfInstances: 1,
            attributes: { "00100020": { vr: "LO", Value: [PATIENT] } },
          },
        ],
      },
    },
  });
}

const getTask = async (name: string) =>
  (await custom().getNamespacedCustomObject({
    ...G,
    namespace: ns.name,
    plural: "inferencetasks",
    name,
  })) as InferenceTask;
const waitTask = (name: string, what: string, pred: (t: InferenceTask) => boolean, timeoutMs = 120_000) =>
  waitFor(`task ${name}: ${what}`, timeoutMs, async () => {
    const t = await getTask(name);
    return { done: pred(t), value: t, seen: t.status };
  });
const cond = (t: InferenceTask, type: string) => t.status?.conditions?.find((c) => c.type === type);
const stepOf = (t: InferenceTask, name: string) => t.status?.steps?.find((s) => s.name === name);
const awaiting = (t: InferenceTask) => cond(t, "AwaitingReview")?.status === "True";

/** `radflow review …` as a reviewer runs it, with the given kubeconfig. */
async function review(args: string[], kubeconfig: string): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [entry, "review", ...args, "-n", ns.name], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? 1, out: x.stdout ?? "", err: x.stderr ?? "" };
  }
}

describe("clinical review gate", { timeout: 300_000 }, () => {
  let op: OperatorProcess;
  /** the chart's reviewer policy, while applied (cluster-scoped: removed after the file) */
  let policyApplied: string | undefined;
  let tmp: string;
  /** a kubeconfig that authenticates as ServiceAccount dr-house (a reviewer), by its token */
  let reviewerConfig: string;
  const reviewerName = () => `system:serviceaccount:${ns.name}:dr-house`;

  beforeAll(async () => {
    op = startOperator({ namespace: ns.name, args: ["--leader-elect=false"] });
    tmp = mkdtempSync(path.join(tmpdir(), "radflow-review-"));
    // a reviewer may read tasks and patch them: nothing else
    await kubectl(["-n", ns.name, "create", "serviceaccount", "dr-house"]);
    await kubectl([
      "-n",
      ns.name,
      "create",
      "role",
      "reviewer",
      "--verb=get,patch",
      "--resource=inferencetasks.radflow.io",
    ]);
    await kubectl([
      "-n",
      ns.name,
      "create",
      "rolebinding",
      "reviewer",
      "--role=reviewer",
      `--serviceaccount=${ns.name}:dr-house`,
    ]);
    const token = (await kubectl(["-n", ns.name, "create", "token", "dr-house", "--duration=1h"])).trim();
    const cluster = kubeConfig().getCurrentCluster()!;
    reviewerConfig = path.join(tmp, "reviewer.kubeconfig");
    writeFileSync(
      reviewerConfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "c",
            cluster: {
              server: cluster.server,
              ...(cluster.caFile ? { "certificate-authority": cluster.caFile } : {}),
              ...(cluster.caData ? { "certificate-authority-data": cluster.caData } : {}),
              ...(cluster.skipTLSVerify ? { "insecure-skip-tls-verify": true } : {}),
            },
          },
        ],
        users: [{ name: "dr-house", user: { token } }],
        contexts: [{ name: "r", context: { cluster: "c", user: "dr-house", namespace: ns.name } }],
        "current-context": "r",
      }),
    );
  });
  afterAll(async () => {
    if (policyApplied) await kubectl(["delete", "-f", "-", "--ignore-not-found"], policyApplied).catch(() => undefined);
    await op?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("accept: the task waits visibly, the reviewer (as the API server knows them) accepts, the gated step runs", async () => {
    const name = await createTask("accept-1", gated({ timeoutSeconds: 600 }));
    const waiting = await waitTask(name, "AwaitingReview", awaiting);
    expect(stepOf(waiting, "review")).toMatchObject({ phase: "Running", reason: "AwaitingReview" });
    expect(stepOf(waiting, "send")).toMatchObject({ phase: "Pending", reason: "WaitingForDependencies" });
    expect(waiting.status?.phase).toBe("Running");
    // kubectl shows it in the Review column
    const row = await kubectl(["-n", ns.name, "get", "itask", name, "--no-headers"]);
    expect(row).toContain("AwaitingReview");

    const r = await review(["accept", name, "--reason", "fracture confirmed"], reviewerConfig);
    expect(r.err).toBe("");
    expect(r.out).toContain(`accepted by ${reviewerName()}`);

    const done = await waitTask(name, "Succeeded", (t) => t.status?.phase === "Succeeded");
    expect(stepOf(done, "review")).toMatchObject({
      phase: "Succeeded",
      reason: "Accepted",
      outputs: { accepted: true, verdict: "Accepted" },
      review: { verdict: "Accepted", reviewer: reviewerName() },
    });
    expect(stepOf(done, "review")?.review?.reviewedAt).toBeDefined();
    expect(stepOf(done, "send")).toMatchObject({ phase: "Succeeded", outputs: { sent: true } });
    expect(cond(done, "AwaitingReview")).toMatchObject({ status: "False", reason: "Accepted" });
    const events = (await core().listNamespacedEvent({ namespace: ns.name })).items.filter(
      (e) => e.involvedObject.name === name,
    );
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(["AwaitingReview", "ReviewAccepted"]));
    // no PHI (nor the reviewer's note) in conditions, step messages or Events
    const text = JSON.stringify([done.status?.conditions, done.status?.steps, events.map((e) => e.message)]);
    for (const s of [PATIENT, ACCESSION, "1.2.826.0.1.3680043", "fracture confirmed"]) expect(text).not.toContain(s);

    // a verdict is final: the API server refuses to change it, whoever asks
    const changed = (done.spec.reviews ?? []).map((v) => ({ ...v, verdict: "Rejected" }));
    const refused = await custom()
      .patchNamespacedCustomObject(
        { ...G, namespace: ns.name, plural: "inferencetasks", name, body: { spec: { reviews: changed } } },
        (await import("../../src/kube/client.ts")).mergePatch,
      )
      .then(
        () => "accepted",
        (e: Error) => e.message,
      );
    expect(refused).toContain("cannot be changed or withdrawn");
    // and the CLI says the step has its verdict
    const again = await review(["reject", name, "--step", "review"], reviewerConfig);
    expect(again.code).toBe(1);
    expect(again.err).toContain("has its verdict already");
  }, 300_000);

  it("reject: outputs.accepted false, the gated step is skipped, the task succeeds", async () => {
    const name = await createTask("reject-1", gated({ timeoutSeconds: 600 }));
    await waitTask(name, "AwaitingReview", awaiting);
    const r = await review(["reject", name], reviewerConfig);
    expect(r.code).toBe(0);
    const done = await waitTask(name, "Succeeded", (t) => t.status?.phase === "Succeeded");
    expect(stepOf(done, "review")).toMatchObject({
      reason: "Rejected",
      outputs: { accepted: false, verdict: "Rejected" },
      review: { verdict: "Rejected", reviewer: reviewerName() },
    });
    expect(stepOf(done, "send")).toMatchObject({ phase: "Skipped" });
    expect(stepOf(done, "send")?.jobName).toBeUndefined();
    expect(cond(done, "AwaitingReview")).toMatchObject({ status: "False", reason: "Rejected" });
  }, 300_000);

  it("timeout, onTimeout Fail: the task fails with ReviewTimeout", async () => {
    const name = await createTask("timeout-fail", gated({ timeoutSeconds: 4 }));
    await waitTask(name, "AwaitingReview", awaiting);
    const done = await waitTask(name, "Failed", (t) => t.status?.phase === "Failed");
    expect(stepOf(done, "review")).toMatchObject({ phase: "Failed", reason: "ReviewTimeout" });
    expect(cond(done, "Succeeded")).toMatchObject({ status: "False", reason: "ReviewTimeout" });
    expect(stepOf(done, "send")?.jobName).toBeUndefined();
  });

  it("timeout, onTimeout Skip: the review is skipped as not accepted, the gated step too, the task succeeds", async () => {
    const name = await createTask("timeout-skip", gated({ timeoutSeconds: 4, onTimeout: "Skip" }));
    await waitTask(name, "AwaitingReview", awaiting);
    const done = await waitTask(name, "Succeeded", (t) => t.status?.phase === "Succeeded");
    expect(stepOf(done, "review")).toMatchObject({
      phase: "Skipped",
      reason: "ReviewTimeout",
      outputs: { accepted: false, verdict: "TimedOut" },
    });
    expect(stepOf(done, "send")).toMatchObject({ phase: "Skipped" });
  });

  it("mandatory outputs: a run whose termination message lacks a required output fails with MissingOutput", async () => {
    const missing = await createTask("outputs-missing", [
      model("seg", '{"mask":"m.nii"}', { outputs: { required: ["report", "mask"] } }),
    ]);
    const present = await createTask("outputs-present", [
      model("seg", '{"mask":"m.nii","report":"r.pdf"}', { outputs: { required: ["report", "mask"] } }),
    ]);
    const failed = await waitTask(missing, "Failed", (t) => t.status?.phase === "Failed");
    expect(stepOf(failed, "seg")).toMatchObject({ phase: "Failed", reason: "MissingOutput" });
    expect(stepOf(failed, "seg")?.message).toContain('"report"');
    expect(cond(failed, "Succeeded")).toMatchObject({ status: "False", reason: "MissingOutput" });
    const ok = await waitTask(present, "Succeeded", (t) => t.status?.phase === "Succeeded");
    expect(stepOf(ok, "seg")).toMatchObject({ phase: "Succeeded", outputs: { report: "r.pdf" } });
  });

  it("the API server refuses a step with neither image nor review, and a review naming no review step", async () => {
    const bad = await createTask("no-image", [{ name: "x" }]).then(
      () => "accepted",
      (e: Error) => e.message,
    );
    expect(bad).toMatch(/spec\.steps\[0\]\.image: Required value/);
    await createTask("wrong-step", gated({}));
    const wrong = await custom()
      .patchNamespacedCustomObject(
        {
          ...G,
          namespace: ns.name,
          plural: "inferencetasks",
          name: "wrong-step",
          body: {
            spec: {
              reviews: [{ step: "detect", verdict: "Accepted", reviewer: "x", time: "2026-01-01T00:00:00Z" }],
            },
          },
        },
        (await import("../../src/kube/client.ts")).mergePatch,
      )
      .then(
        () => "accepted",
        (e: Error) => e.message,
      );
    expect(wrong).toContain("every review must name a review step of this task");
  });

  it("the chart's admission policy refuses a verdict written in someone else's name, by anyone", async () => {
    // the chart's policy alone, bound to this file's namespace (helm template, as the chart renders it)
    const rendered = (
      await run(toolBin("helm"), [
        "template",
        `review-${ns.name}`,
        path.resolve(import.meta.dirname, "../../helm/radflow"),
        "--namespace",
        ns.name,
        "--set-json",
        `watchNamespaces=["${ns.name}"]`,
        "--api-versions",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
        "--show-only",
        "templates/review-policy.yaml",
      ])
    ).stdout;
    await kubectl(["apply", "-f", "-"], rendered);
    policyApplied = rendered;
    const name = await createTask("forged-1", gated({ timeoutSeconds: 600 }));
    await waitTask(name, "AwaitingReview", awaiting);
    const forge = (kc: k8s.KubeConfig, reviewer: string, dryRun?: string) =>
      kc
        .makeApiClient(k8s.CustomObjectsApi)
        .patchNamespacedCustomObject(
          {
            ...G,
            namespace: ns.name,
            plural: "inferencetasks",
            name,
            dryRun,
            body: {
              spec: { reviews: [{ step: "review", verdict: "Accepted", reviewer, time: new Date().toISOString() }] },
            },
          },
          mergePatch,
        )
        .then(
          () => "accepted",
          (e: Error) => e.message,
        );
    const reviewerKc = new k8s.KubeConfig();
    reviewerKc.loadFromFile(reviewerConfig);
    // a policy takes a moment to reach the API server's admission chain: probe with dry runs
    await waitFor("the reviewer policy in force", 60_000, async () => {
      const r = await forge(kubeConfig(), "dr-cuddy", "All");
      return { done: r !== "accepted", seen: r };
    });
    const asReviewer = await forge(reviewerKc, "dr-cuddy");
    expect(asReviewer).toContain(`a verdict must name its reviewer as the API server knows the requester`);
    expect(asReviewer).toMatch(/not \\*"dr-cuddy\\*" \(step review\)/);
    // the cluster admin cannot sign for someone else either
    expect(await forge(kubeConfig(), reviewerName())).toContain("a verdict must name its reviewer");
    expect((await getTask(name)).spec.reviews ?? []).toEqual([]);
    // the reviewer in their own name, as radflow review writes it, passes; the task goes on
    const r = await review(["accept", name], reviewerConfig);
    expect(r.err).toBe("");
    const done = await waitTask(name, "Succeeded", (t) => t.status?.phase === "Succeeded");
    expect(stepOf(done, "review")?.review).toMatchObject({ verdict: "Accepted", reviewer: reviewerName() });
  });
});

// kubeconfigPath is the admin's; the reviewer's kubeconfig is built from it above
void kubeconfigPath;
