// Argo Workflows beside radflow: the workflow-controller (hack/tools/argo, pinned) runs on the
// same cluster, namespaced to one namespace, and the same single-step workload (radflow's
// container, bench/lib/shape.ts) is submitted as N one-template Workflows at full concurrency →
// workflows/s to pod created (the pod's ADDED watch event) and to Succeeded, and API writes per
// workflow: the whole cluster's (API server) and the controller's own (its request counter).
// KWOK plays the kubelet for Argo's pods as it does for the Jobs' pods.
import { performance } from "node:perf_hooks";
import { perStudyLine, profileRow } from "../lib/apiserver-profile.ts";
import { ArgoController, applyArgoCrds, argoBinary, argoCrdDir, argoVersion, writeConfig } from "../lib/argo.ts";
import type { Context } from "../lib/context.ts";
import { log, PORTS } from "../lib/context.ts";
import { coresLine, coresUsed, cpuMsPerStudy } from "../lib/cpu.ts";
import { apiserverMetrics, pool, Recorder, waitUntil } from "../lib/kube.ts";
import { sleep } from "../lib/operator.ts";
import type { Scrape } from "../lib/prom.ts";
import { fmt, mb, type Row, type ScenarioResult } from "../lib/result.ts";
import { argoWorkflow, JobShape } from "../lib/shape.ts";
import { rates, round } from "../lib/stats.ts";
import { apiserverWrites, type WriteCount } from "../lib/writes.ts";
import { PEER_CONCURRENCY } from "./baseline.ts";
import { singleStep } from "./common.ts";

const WF = { group: "argoproj.io", version: "v1alpha1", plural: "workflows" };
const WF_LABEL = "workflows.argoproj.io/workflow";

/**
 * The controller's own writes between two scrapes of its k8s request counter, whatever its
 * exact name and label keys (…k8s_request_total with a …verb and a …kind label).
 */
export function argoOwnWrites(before: Scrape, after: Scrape, workflows: number): WriteCount {
  const key = (labels: Record<string, string>) => {
    const find = (suffix: string) => Object.entries(labels).find(([k]) => k.endsWith(suffix))?.[1] ?? "";
    return `${find("verb").toLowerCase()} ${find("kind")}`;
  };
  const group = (s: Scrape) => {
    const m = new Map<string, number>();
    for (const x of s)
      if (/k8s_request_total$/.test(x.name)) m.set(key(x.labels), (m.get(key(x.labels)) ?? 0) + x.value);
    return m;
  };
  const a = group(before);
  const breakdown: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of [...group(after)].sort((x, y) => y[1] - x[1])) {
    const d = v - (a.get(k) ?? 0);
    if (d <= 0 || !/^(create|update|patch|delete)/.test(k)) continue;
    total += d;
    breakdown[k] = round(d / workflows, 2);
  }
  return { total, perStudy: round(total / workflows, 2), breakdown };
}

type WfObj = { metadata?: { name?: string }; status?: { phase?: string; message?: string } };
type PodObj = { metadata?: { labels?: Record<string, string> }; status?: { phase?: string } };

export async function argoScenario(ctx: Context): Promise<ScenarioResult> {
  const n = ctx.opts.throughputStudies;
  log("argo: workflow-controller from hack/tools/argo (built on first use, then cached)");
  const binary = await argoBinary();
  applyArgoCrds(ctx.cluster.KUBECONFIG, argoCrdDir());
  const ns = await ctx.namespace("argo");
  const metricsPort = PORTS.argoMetrics(ctx.portBase);
  await writeConfig(ctx.kube, ns, metricsPort);
  const ctl = new ArgoController({
    binary,
    kubeconfig: ctx.cluster.KUBECONFIG,
    namespace: ns,
    metricsPort,
    logFile: `${ctx.workDir}/argo-workflow-controller.log`,
    qps: 200,
    burst: 400,
    workers: 32,
  });
  const podAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  const phases = new Map<string, string>();
  const pods = new Recorder<PodObj>(
    ctx.kube.kc,
    `/api/v1/namespaces/${ns}/pods`,
    (type, p, at) => {
      const wf = p.metadata?.labels?.[WF_LABEL];
      if (type === "ADDED" && wf && !podAt.has(wf)) podAt.set(wf, at);
    },
    WF_LABEL,
  );
  const wfs = new Recorder<WfObj>(
    ctx.kube.kc,
    `/apis/${WF.group}/${WF.version}/namespaces/${ns}/${WF.plural}`,
    (type, w, at) => {
      const name = w.metadata?.name;
      const phase = w.status?.phase;
      if (!name || type === "DELETED" || !phase) return;
      phases.set(name, phase);
      if (["Succeeded", "Failed", "Error"].includes(phase) && !doneAt.has(name)) doneAt.set(name, at);
    },
  );
  const shape = new JobShape(ns, "bench-argo", singleStep("NECK"), `${ctx.runId}-argo`);
  const submit = (name: string) =>
    ctx.kube.custom.createNamespacedCustomObject({ ...WF, namespace: ns, body: argoWorkflow(shape.next(), name) });
  const rows: Row[] = [];
  ctl.start();
  try {
    await ctl.waitReady();
    await Promise.all([pods.start(), wfs.start()]);
    // one workflow first: the controller works and KWOK completes its pod, or this says why not
    await submit("warmup");
    try {
      await waitUntil("the warm-up Workflow to succeed", 180_000, async () => phases.get("warmup") === "Succeeded");
    } catch (e) {
      throw new Error(
        `${(e as Error).message}: workflow phase ${phases.get("warmup") ?? "none"}, pod ${podAt.has("warmup") ? "created" : "never created"}; controller log ${ctl.o.logFile}:\n${ctl.tail(10)}`,
      );
    }
    const names = Array.from({ length: n }, (_, i) => `bench-argo-${i}`);
    log(`argo: ${n} single-step Workflows, ${PEER_CONCURRENCY} creates in flight`);
    const apiBefore = ctx.cluster.own ? await apiserverMetrics(ctx.kube.kc) : undefined;
    const own0 = await ctl.metrics();
    const cpu0 = ctl.cpuSeconds();
    const c0 = ctx.cpu(undefined, { "workflow-controller": ctl.pid as number });
    const profiling = ctx.apiserverProfile("argo");
    let errors = 0;
    const t0 = performance.now();
    await pool(names, PEER_CONCURRENCY, (name) =>
      submit(name).catch(() => {
        errors++;
      }),
    );
    const submitMs = performance.now() - t0;
    // wait for every workflow to end; give up when nothing moved for a minute
    let last = -1;
    let since = performance.now();
    let stalled = false;
    const progress = () => names.reduce((k, x) => k + (podAt.has(x) ? 1 : 0) + (doneAt.has(x) ? 1 : 0), 0);
    while (progress() < 2 * (n - errors)) {
      const p = progress();
      if (p !== last) {
        last = p;
        since = performance.now();
      } else if (performance.now() - since > 60_000) {
        log(`argo: no progress for 60 s (${p}/${2 * n}); giving up`);
        stalled = true;
        break;
      }
      await sleep(100);
    }
    const c1 = ctx.cpu(undefined, { "workflow-controller": ctl.pid as number });
    const cores = coresUsed(c0, c1);
    const perStudy = cpuMsPerStudy(c0, c1, n);
    const apiserverProfile = await profiling;
    const cpu = ctl.cpuSeconds() - cpu0;
    await sleep(3000); // the controller's last writes (pod labels, Events) land after the phase
    const own = argoOwnWrites(own0, await ctl.metrics(), n);
    const cluster = apiBefore ? apiserverWrites(apiBefore, await apiserverMetrics(ctx.kube.kc), n) : undefined;
    const at = (m: Map<string, number>) => names.map((x) => m.get(x)).filter((x): x is number => x !== undefined);
    const toPod = rates(t0, at(podAt));
    const toDone = rates(t0, at(doneAt));
    const notSucceeded = names.filter((x) => doneAt.has(x) && phases.get(x) !== "Succeeded").length;
    const list = (b: Record<string, number>) =>
      Object.entries(b)
        .slice(0, 6)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    rows.push({
      metric: `workflows/s to pod created (${n} at once; sustained / overall)`,
      value: `${fmt(toPod.sustained)} / ${fmt(toPod.overall)}${errors ? `, ${errors} submit errors` : ""}`,
    });
    rows.push({
      metric: "workflows/s to Succeeded (sustained / overall)",
      value: `${fmt(toDone.sustained)} / ${fmt(toDone.overall)}${notSucceeded ? `, ${notSucceeded} not Succeeded` : ""}${stalled ? ", STALLED" : ""}`,
    });
    rows.push({
      metric: "API writes per workflow (controller's own)",
      value: `${fmt(own.perStudy, "", 2)}: ${list(own.breakdown)}`,
    });
    if (cluster)
      rows.push({
        metric: "API writes per workflow, whole cluster (API server)",
        value: `${fmt(cluster.perStudy, "", 2)}: ${list(cluster.breakdown)}`,
      });
    rows.push({
      metric: "controller CPU per workflow; RSS",
      value: `${fmt((cpu * 1000) / n, "ms", 2)}; ${fmt(mb(ctl.rss()), "MB", 0)}`,
    });
    rows.push({ metric: "machine CPU during the burst (cores)", value: coresLine(cores) });
    rows.push({ metric: "CPU per workflow in the burst (ms)", value: perStudyLine(perStudy) });
    const pr = profileRow(apiserverProfile);
    if (pr) rows.push(pr);
    return {
      scenario: "argo",
      rows,
      details: {
        namespace: ns,
        version: argoVersion(),
        controllerArgs: ctl.args().filter((a) => !a.startsWith("--kubeconfig")),
        workflows: n,
        concurrency: PEER_CONCURRENCY,
        submitMs: round(submitMs),
        submitErrors: errors,
        notSucceeded,
        workflowsPerSecondToPod: toPod,
        workflowsPerSecondToSucceeded: toDone,
        writes: { controller: own, cluster },
        controllerCpuMsPerWorkflow: round((cpu * 1000) / n, 2),
        controllerRssMB: round(mb(ctl.rss())),
        cpuCores: cores,
        cpuMsPerStudy: perStudy,
        apiserverProfile,
        stalled,
      },
      profiles: [],
    };
  } finally {
    pods.stop();
    wfs.stop();
    await ctl.stop();
  }
}
