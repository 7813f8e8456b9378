// radflow review accept|reject <task> [-n ns] [--step s] [--reason text] [--kubeconfig path]
// A reviewer's verdict on a task's clinical review step (docs/ARCHITECTURE.md §3, "Review steps").
// Who: the API server says, through a SelfSubjectReview (the user kubectl would act as); the
// verdict is appended to the task's spec.reviews with a merge patch that carries the
// resourceVersion it was read at, so two reviewers deciding at once cannot both win (the second
// re-reads and finds the step decided). The CRD refuses to change or withdraw a verdict.
import { AuthenticationV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { GROUP, type InferenceTask, type ReviewVerdict, VERSION } from "../api/v1alpha1/index.ts";
import { AWAITING_REVIEW } from "../controllers/review.ts";
import { mergePatch } from "../kube/client.ts";

const usage = `usage: radflow review accept|reject <task> [-n namespace] [--step name] [--reason text] [--kubeconfig path]
Gives your verdict on an InferenceTask's review step (the one awaiting review unless --step says).
You are recorded as the reviewer as the API server knows you (SelfSubjectReview); the --reason
note goes to the task and the audit trail: write no patient identifiers in it.
`;

class UsageError extends Error {}

export interface ReviewArgs {
  verdict: "Accepted" | "Rejected";
  task: string;
  namespace?: string;
  step?: string;
  reason?: string;
  kubeconfig?: string;
}

export function parseArgs(args: string[]): ReviewArgs | "help" {
  const [action, ...rest] = args;
  if (action === "--help" || action === "-h") return "help";
  if (action !== "accept" && action !== "reject") throw new UsageError("the first argument is accept or reject");
  const out: Partial<ReviewArgs> = { verdict: action === "accept" ? "Accepted" : "Rejected" };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === "-n" || a === "--namespace") out.namespace = value();
    else if (a === "--step") out.step = value();
    else if (a === "--reason") out.reason = value();
    else if (a === "--kubeconfig") out.kubeconfig = value();
    else if (a === "--help" || a === "-h") return "help";
    else if (a.startsWith("-") || out.task !== undefined) throw new UsageError(`unexpected argument ${a}`);
    else out.task = a;
  }
  if (!out.task) throw new UsageError("which task? give its name");
  if (out.reason !== undefined && out.reason.length > 1024)
    throw new UsageError("--reason holds at most 1024 characters");
  return out as ReviewArgs;
}

/** The review step a verdict is for: --step, else the one step awaiting review; an error says why not. */
export function chooseStep(task: InferenceTask, wanted?: string): { step: string } | { error: string } {
  const name = task.metadata.name;
  const reviewSteps = task.spec.steps.filter((s) => s.review !== undefined).map((s) => s.name);
  if (reviewSteps.length === 0) return { error: `task ${name} has no review step` };
  const decided = new Set((task.spec.reviews ?? []).map((r) => r.step));
  if (wanted !== undefined) {
    if (!reviewSteps.includes(wanted))
      return { error: `task ${name} has no review step ${wanted} (review steps: ${reviewSteps.join(", ")})` };
    if (decided.has(wanted)) return { error: `step ${wanted} of task ${name} has its verdict already` };
    const st = task.status?.steps?.find((s) => s.name === wanted);
    if (st && ["Succeeded", "Failed", "Skipped", "Canceled"].includes(st.phase))
      return { error: `step ${wanted} of task ${name} is over (${st.phase}${st.reason ? `: ${st.reason}` : ""})` };
    return { step: wanted };
  }
  const awaiting = (task.status?.steps ?? [])
    .filter((s) => s.phase === "Running" && s.reason === AWAITING_REVIEW && !decided.has(s.name))
    .map((s) => s.name);
  if (awaiting.length === 1) return { step: awaiting[0]! };
  if (awaiting.length > 1)
    return {
      error: `task ${name} has several reviews awaiting a verdict (${awaiting.join(", ")}): say which with --step`,
    };
  return {
    error: `task ${name} has no review awaiting a verdict now (phase ${task.status?.phase ?? "Pending"}); --step gives a verdict before the step is reached`,
  };
}

/** The merge patch that appends the verdict; the resourceVersion makes it a compare-and-swap. */
export function verdictPatch(task: InferenceTask, v: ReviewVerdict): Record<string, unknown> {
  return {
    metadata: { resourceVersion: task.metadata.resourceVersion },
    spec: { reviews: [...(task.spec.reviews ?? []), v] },
  };
}

export async function main(args: string[]): Promise<number> {
  let a: ReviewArgs | "help";
  try {
    a = parseArgs(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`radflow review: ${e.message}\n${usage}`);
    return 2;
  }
  if (a === "help") {
    process.stdout.write(usage);
    return 0;
  }
  const kc = new KubeConfig();
  if (a.kubeconfig) kc.loadFromFile(a.kubeconfig);
  else kc.loadFromDefault();
  const namespace = a.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  const custom = kc.makeApiClient(CustomObjectsApi);
  const who = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  const reviewer = who.status?.userInfo?.username;
  if (!reviewer) throw new Error("the API server did not say who you are (SelfSubjectReview without a user name)");
  const ref = { group: GROUP, version: VERSION, namespace, plural: "inferencetasks", name: a.task };
  for (let attempt = 1; ; attempt++) {
    const task = (await custom.getNamespacedCustomObject(ref)) as InferenceTask;
    const chosen = chooseStep(task, a.step);
    if ("error" in chosen) {
      process.stderr.write(`radflow review: ${chosen.error}\n`);
      return 1;
    }
    const v: ReviewVerdict = {
      step: chosen.step,
      verdict: a.verdict,
      reviewer,
      time: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      ...(a.reason ? { reason: a.reason } : {}),
    };
    try {
      await custom.patchNamespacedCustomObject({ ...ref, body: verdictPatch(task, v) }, mergePatch);
    } catch (e) {
      // someone else wrote the task since we read it: read again (the step may be decided now)
      if ((e as { code?: number }).code === 409 && attempt < 5) continue;
      throw e;
    }
    process.stdout.write(
      `inferencetask/${a.task} step ${chosen.step}: ${a.verdict.toLowerCase()} by ${reviewer} at ${v.time}\n`,
    );
    return 0;
  }
}
