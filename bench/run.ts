// radflow benchmark (npm run bench): brings up a local cluster of its own (or uses the one
// KUBECONFIG and RADFLOW_NATS_URL point at), applies crds/, runs the real operator as a child
// process and measures it:
//   1 latency     event → Job created p50/p95/p99 at fixed open-loop rates
//   2 throughput  studies/s to Job created and to task Succeeded, from a backlog
//   3 writes      Kubernetes API writes per single-step study
//   4 rss         operator memory with N InferenceTasks, and its cold start over them
//   5 stat        a STAT study's event → Job latency behind N queued batch tasks
//   noise         the same short measurement repeated: how much to trust a difference
//   baseline      plain Jobs of radflow's shape straight through the same API server
//   argo          the same single-step workload as Argo Workflows, on the same cluster
// Prints a table with each target next to its number (targets are not asserted), radflow beside
// its peers with their ratios, and writes bench/results/<timestamp>.json and .svg (the plot).
// See `node bench/run.ts --help`.
import { mkdirSync, writeFileSync } from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type ClusterOptions, down, up } from "../hack/cluster.ts";
import { sideBySide } from "./lib/compare.ts";
import { benchPortBase, type ClusterAccess, Context, log } from "./lib/context.ts";
import { formatProfile } from "./lib/cpuprofile.ts";
import { parseOptions, type Scenario, usage } from "./lib/options.ts";
import { plotSideBySide } from "./lib/plot.ts";
import { killAllProcesses, stopAllProcesses } from "./lib/process.ts";
import type { ScenarioResult } from "./lib/result.ts";
import { snapshotSources } from "./lib/snapshot.ts";

const benchDir = path.dirname(fileURLToPath(import.meta.url));

// noise first (an untouched cluster), the peers right after radflow's throughput (the same
// cluster state, as close in time as the run allows), the 10,000-task scenario last (it leaves
// etcd larger)
// Each scenario's module is loaded when it runs: one that does not load (a file being edited in
// a shared tree) fails its own scenario, not the whole run.
type ScenarioFn = (ctx: Context) => Promise<ScenarioResult>;
const ORDER: [Scenario, () => Promise<ScenarioFn>][] = [
  ["noise", async () => (await import("./scenarios/noise.ts")).noiseScenario],
  ["latency", async () => (await import("./scenarios/latency.ts")).latencyScenario],
  ["throughput", async () => (await import("./scenarios/throughput.ts")).throughputScenario],
  ["baseline", async () => (await import("./scenarios/baseline.ts")).baselineScenario],
  ["argo", async () => (await import("./scenarios/argo.ts")).argoScenario],
  ["writes", async () => (await import("./scenarios/throughput.ts")).writesScenario],
  ["stat", async () => (await import("./scenarios/stat.ts")).statScenario],
  ["rss", async () => (await import("./scenarios/rss.ts")).rssScenario],
];

function machine() {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model ?? "",
    memoryGB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

function table(results: ScenarioResult[]): string {
  const rows: string[][] = [["scenario", "metric", "value", "target", ""]];
  for (const r of results) {
    if (r.error) rows.push([r.scenario, "ERROR", r.error.split("\n")[0] as string, "", ""]);
    for (const [i, x] of r.rows.entries())
      rows.push([
        i === 0 ? r.scenario : "",
        x.metric,
        x.value,
        x.target ?? "",
        x.met === undefined ? "" : x.met ? "meets" : "MISSES",
      ]);
  }
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length))) ?? [];
  const line = (r: string[]) =>
    r
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join(" | ")
      .trimEnd();
  const sep = widths.map((w) => "-".repeat(w)).join("-|-");
  return [line(rows[0] as string[]), sep, ...rows.slice(1).map(line)].join("\n");
}

/** What an interrupted run must clean up: set as the run gets there. */
const current: { ctx?: Context; own?: ClusterOptions; keepCluster: boolean } = { keepCluster: false };
let interrupted = false;

/**
 * SIGINT/SIGTERM: stop every child this run started (operator, Argo's controller), then treat
 * the cluster as a finished run would: its own is torn down (kept with --keep-cluster), a
 * cluster it was given is left up. A second signal kills the children at once and exits.
 */
async function onSignal(signal: NodeJS.Signals): Promise<void> {
  const code = signal === "SIGINT" ? 130 : 143;
  if (interrupted) {
    log(`${signal} again: killing the benchmark's children and exiting`);
    killAllProcesses();
    process.exit(code);
  }
  interrupted = true;
  log(`${signal}: stopping the benchmark's processes`);
  const stopped = [...((await current.ctx?.stopOperators()) ?? []), ...(await stopAllProcesses())];
  log(stopped.length ? `stopped ${stopped.join(", ")}` : "no child process was running");
  await current.ctx?.close().catch(() => undefined);
  if (current.own && !current.keepCluster) {
    log(`tearing down the benchmark's cluster (${current.own.dir})`);
    await down(current.own).catch((e: Error) => log(`cluster teardown failed: ${e.message}`));
  } else if (current.own) log(`cluster left up (--keep-cluster): ${current.own.dir}`);
  process.exit(code);
}

async function cluster(): Promise<{ access: ClusterAccess; own?: ClusterOptions }> {
  if (process.env.KUBECONFIG && process.env.RADFLOW_NATS_URL) {
    log(
      `using the cluster of KUBECONFIG=${process.env.KUBECONFIG} and RADFLOW_NATS_URL=${process.env.RADFLOW_NATS_URL}`,
    );
    return {
      access: {
        KUBECONFIG: process.env.KUBECONFIG,
        RADFLOW_NATS_URL: process.env.RADFLOW_NATS_URL,
        own: false,
        dir: process.env.RADFLOW_BENCH_CLUSTER_DIR ?? path.dirname(process.env.KUBECONFIG),
      },
    };
  }
  const o: ClusterOptions = {
    dir: process.env.RADFLOW_BENCH_CLUSTER_DIR ?? "/tmp/radflow-bench-cluster",
    portBase: benchPortBase(),
  };
  log(`bringing up the benchmark's own cluster in ${o.dir} (ports ${o.portBase}…${o.portBase + 14})`);
  current.own = o; // an interrupt from here on tears it down
  const env = await up(o);
  // up() waits for the API server and the nodes; the scheduler and the Job controller must be
  // serving too, or the first scenario measures a cluster that does not run pods yet
  for (const [name, port] of [
    ["kube-controller-manager", o.portBase + 3],
    ["kube-scheduler", o.portBase + 4],
  ] as const) {
    const deadline = Date.now() + 60_000;
    while (!(await healthy(port))) {
      if (Date.now() > deadline) throw new Error(`${name} is not healthy on port ${port}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return { access: { ...env, own: true, dir: o.dir }, own: o };
}

/** GET https://127.0.0.1:<port>/healthz of a component with a self-signed serving certificate. */
function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get(
      { host: "127.0.0.1", port, path: "/healthz", rejectUnauthorized: false, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

/**
 * Waits (up to `maxMs`) until the pods of earlier scenarios have ended: on a loaded machine the
 * Job controller and KWOK still work through one scenario's backlog when the next one starts,
 * and their writes and CPU would be counted against it. Pods meant to run on (the STAT
 * scenario's hour-long batch pod) are not waited for: only pods that change phase count.
 */
async function settle(ctx: Context, maxMs = 180_000): Promise<void> {
  if (!ctx.namespaces.length) return;
  const t0 = Date.now();
  let last = -1;
  let stableSince = Date.now();
  for (;;) {
    let active = 0;
    for (const ns of ctx.namespaces) {
      const pods = await ctx.kube.core
        .listNamespacedPod({ namespace: ns, fieldSelector: "status.phase!=Succeeded,status.phase!=Failed" })
        .catch(() => undefined);
      active += pods?.items.length ?? 0;
    }
    if (active !== last) {
      last = active;
      stableSince = Date.now();
    }
    // nothing left, or what is left does not move (pods meant to run on)
    if (active === 0 || Date.now() - stableSince > 15_000 || Date.now() - t0 > maxMs) {
      if (Date.now() - t0 > 2000)
        log(`settled after ${((Date.now() - t0) / 1000).toFixed(0)} s (${active} pods of earlier scenarios not ended)`);
      return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** Other work on a 2-core machine moves every number here: wait a while for it to calm down. */
async function waitQuiet(seconds: number): Promise<void> {
  const limit = os.cpus().length / 2;
  const deadline = Date.now() + seconds * 1000;
  while ((os.loadavg()[0] as number) >= limit && Date.now() < deadline) {
    log(`waiting for a quieter machine: load ${(os.loadavg()[0] as number).toFixed(2)} ≥ ${limit}`);
    await new Promise((r) => setTimeout(r, 15_000));
  }
}

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv);
  if (opts === "help") {
    process.stdout.write(usage);
    return 0;
  }
  current.keepCluster = opts.keepCluster;
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void onSignal(signal));
  // last resort (an uncaught error on the way out): no child outlives the benchmark
  process.on("exit", killAllProcesses);
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const runId = Date.now().toString(36).slice(-6);
  const workDir = path.join(os.tmpdir(), `radflow-bench-${stamp}`);
  mkdirSync(workDir, { recursive: true });
  if (opts.waitQuietSeconds > 0) await waitQuiet(opts.waitQuietSeconds);
  const sources = snapshotSources(workDir, opts.sources);
  const compare = opts.compare ? snapshotSources(path.join(workDir, "compare"), opts.compare) : undefined;
  log(
    `operator sources: commit ${sources.commit}${sources.uncommitted.length ? ` + uncommitted ${sources.uncommitted.join(", ")}` : ""}, copied to ${sources.root}`,
  );
  const loadBefore = os.loadavg();
  const { access, own } = await cluster();
  const ctx = new Context(opts, access, runId, workDir);
  current.ctx = ctx;
  ctx.sourceRoot = sources.root;
  ctx.compareRoot = compare?.root;
  const results: ScenarioResult[] = [];
  try {
    await ctx.init();
    await ctx.kube.applyCrds();
    for (const [name, load] of ORDER) {
      if (!opts.scenarios.includes(name)) continue;
      const t0 = Date.now();
      await settle(ctx);
      log(`scenario ${name}`);
      try {
        const fn = await load();
        results.push(await fn(ctx));
      } catch (e) {
        log(`scenario ${name} failed: ${(e as Error).stack ?? e}`);
        results.push({ scenario: name, rows: [], details: {}, profiles: [], error: (e as Error).message });
      }
      log(`scenario ${name} took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  } finally {
    // radflow beside its peers: ratios, with the issue's goals
    const peers = opts.scenarios.includes("baseline") || opts.scenarios.includes("argo");
    const side = peers ? sideBySide(results) : undefined;
    if (side)
      results.push({
        scenario: "side by side",
        rows: side.rows,
        details: { figures: side.figures, ratios: side.ratios },
        profiles: [],
      });
    const loadAfter = os.loadavg();
    const report = {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: {
        ...machine(),
        loadAverageBefore: loadBefore.map((x) => Math.round(x * 100) / 100),
        loadAverageAfter: loadAfter.map((x) => Math.round(x * 100) / 100),
      },
      operatorSources: sources,
      ...(compare ? { compareSources: compare } : {}),
      cluster: access.own ? "own (torn down after)" : `reused (${access.KUBECONFIG})`,
      options: opts,
      notes: [
        "Throughput, latency, writes and memory runs use steps with resources.gpu 0 (CPU node), so the 8 fake GPUs do not cap throughput; the STAT scenario uses 1 GPU per step.",
        "Latency = arrival of the Job's ADDED watch event at the benchmark − the benchmark's publish of the study event (one clock).",
        opts.profile
          ? "The operator ran under node --cpu-prof (sampling profiler, small overhead)."
          : "The operator ran without profiling.",
        `Operator logs and CPU profiles: ${workDir}`,
      ],
      results,
    };
    const text = table(results);
    process.stdout.write(
      `\nradflow benchmark — ${report.machine.cores} cores, ${report.machine.cpuModel}, node ${report.machine.node}, load ${report.machine.loadAverageBefore.join(" ")} → ${report.machine.loadAverageAfter.join(" ")}\n\n${text}\n`,
    );
    const missed = results.filter((r) => r.rows.some((x) => x.met === false));
    for (const r of missed) {
      for (const p of r.profiles) process.stdout.write(`\n[${r.scenario}: target missed] ${formatProfile(p)}\n`);
    }
    const out = opts.out ?? path.join(benchDir, "results", `${stamp}.json`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`\nresults: ${out}\n`);
    if (side) {
      const plot = `${out.replace(/\.json$/, "")}.svg`;
      const load = `load ${report.machine.loadAverageBefore[0]} → ${report.machine.loadAverageAfter[0]}`;
      writeFileSync(
        plot,
        plotSideBySide(
          side,
          `radflow beside plain Jobs and Argo Workflows — ${started.toISOString().slice(0, 16)}Z${opts.quick ? " (--quick)" : ""}`,
          `${report.machine.cores} cores, ${report.machine.cpuModel}, ${load}; commit ${sources.commit.slice(0, 10)}; one-step studies, gpu 0; ${path.basename(out)}`,
        ),
      );
      process.stdout.write(`plot: ${plot}\n`);
    }
    process.stdout.write(`logs and profiles: ${workDir}\n`);

    if (own && !opts.keepCluster) {
      log("tearing down the benchmark's cluster");
      await ctx.close().catch(() => undefined);
      await down(own);
    } else {
      if (!access.own) {
        log("deleting the benchmark's namespaces");
        for (const ns of ctx.namespaces) await ctx.kube.deleteNamespace(ns).catch(() => undefined);
      }
      await ctx.close().catch(() => undefined);
    }
  }
  return results.some((r) => r.error) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  },
);
