// Benchmark options: flags, then RADFLOW_BENCH_* environment variables, then defaults (full or
// --quick sizes).
import { parseArgs } from "node:util";

export const SCENARIOS = ["latency", "throughput", "writes", "rss", "stat", "noise", "baseline", "argo"] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface Options {
  quick: boolean;
  scenarios: Scenario[];
  rates: number[];
  latencySeconds: number[]; // one per rate
  throughputStudies: number;
  writesStudies: number;
  writesRate: number;
  /** task counts for the memory scenario, measured one after the other in one namespace (ascending) */
  rssTasks: number[];
  /** operator starts measured per size: 2 = a first start and a restart, 1 = the first only */
  rssStarts: number;
  /** carry on in this namespace (filled by an earlier run, kept afterwards) */
  rssNamespace?: string;
  /** run the operator from this git revision's sources instead of the working tree's */
  sources?: string;
  /** the rss scenario also measures the operator of this git revision, on the same objects */
  compare?: string;
  batchTasks: number;
  statStudies: number;
  noiseRepeats: number;
  noiseStudies: number; // per repeat, at 50/s
  workers?: number;
  profile: boolean;
  /** seconds of API server CPU profile taken at the start of each peer's burst; 0: none */
  apiserverProfileSeconds: number;
  keepCluster: boolean;
  out?: string;
  /** wait up to this many seconds for the 1-minute load average to drop below the core count / 2 */
  waitQuietSeconds: number;
}

export const usage = `npm run bench -- [flags]      (node bench/run.ts)

Runs radflow's operator against a local cluster (its own, or the one KUBECONFIG and
RADFLOW_NATS_URL point at) and measures it. Every flag has an environment variable
RADFLOW_BENCH_<FLAG> (e.g. RADFLOW_BENCH_RATES=10,50).

  --quick                   small sizes: finishes in a few minutes
  --scenarios a,b           ${SCENARIOS.join(",")} (default: all)
  --rates 10,50,200         event rates for the latency scenario (events/s)
  --latency-seconds 30,30,20  publishing time per rate (one value, or one per rate)
  --throughput-studies N    studies published at once for the throughput scenario (3000); also
                            the number of plain Jobs (baseline) and Argo Workflows (argo)
  --writes-studies N        studies for the API-writes scenario (300), at --writes-rate/s (20)
  --rss-tasks N,M           finished InferenceTasks (each with its Job and pod) present for the
                            memory / cold-start scenario, grown in steps (10000,20000)
  --rss-namespace NS        rss: carry on in namespace NS, which an earlier run filled (its
                            finished studies count; only the rest is created; NS is kept)
  --rss-starts 1|2          operator starts measured per size: first start and restart (2), or
                            the first only (1, half the time)
  --batch-tasks N           batch study events queued in the stream in front of a STAT one
                            while the operator is stopped; they stay as Queued tasks in front
                            of the next STAT studies (2000, --quick too)
  --stat-studies N          STAT studies measured behind them (20)
  --noise-repeats N         repeats of the short noise measurement (3)
  --noise-studies N         studies per repeat, at 50/s (250)
  --workers N               operator --workers (its default when unset)
  --no-profile              run the operator without --cpu-prof
  --apiserver-profile SECS  the API server's CPU profile over the first SECS of each burst
                            (throughput, baseline, argo), read by \`go tool pprof\`; 0: none (8)
  --keep-cluster            leave the benchmark's own cluster up
  --out FILE                result JSON (default bench/results/<timestamp>.json)
  --sources REV             run the operator from git revision REV (e.g. a before/after pair of
                            commits) instead of the working tree's src/
  --compare REV             rss scenario: also measure the operator of git revision REV, on the
                            same objects right beside this one (a before/after in one run)
  --wait-quiet SECONDS      before starting, wait up to this long for the machine's 1-minute load
                            average to fall below half its cores (0 = do not wait; default)

Peers: baseline = plain Jobs of radflow's shape through the same API server (the machine's
limit); argo = Argo Workflows' workflow-controller (hack/tools/argo, built on first use). With
either, the run ends with a side-by-side table and writes an SVG plot beside the JSON.

Cluster: RADFLOW_BENCH_CLUSTER_DIR (/tmp/radflow-bench-cluster), RADFLOW_BENCH_PORT_BASE (21300).
`;

function list(s: string): number[] {
  return s
    .split(",")
    .map((x) => Number(x.trim()))
    .filter((x) => Number.isFinite(x) && x > 0);
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): Options | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: "boolean" },
      quick: { type: "boolean" },
      scenarios: { type: "string" },
      rates: { type: "string" },
      "latency-seconds": { type: "string" },
      "throughput-studies": { type: "string" },
      "writes-studies": { type: "string" },
      "writes-rate": { type: "string" },
      "rss-tasks": { type: "string" },
      "rss-starts": { type: "string" },
      "rss-namespace": { type: "string" },
      "batch-tasks": { type: "string" },
      "stat-studies": { type: "string" },
      "noise-repeats": { type: "string" },
      "noise-studies": { type: "string" },
      workers: { type: "string" },
      "no-profile": { type: "boolean" },
      "apiserver-profile": { type: "string" },
      "keep-cluster": { type: "boolean" },
      out: { type: "string" },
      sources: { type: "string" },
      compare: { type: "string" },
      "wait-quiet": { type: "string" },
    },
    allowPositionals: false,
  });
  if (values.help) return "help";
  const get = (flag: keyof typeof values): string | undefined => {
    const v = values[flag];
    if (typeof v === "string") return v;
    return env[`RADFLOW_BENCH_${flag.toUpperCase().replaceAll("-", "_")}`];
  };
  const bool = (flag: keyof typeof values) => values[flag] === true || /^(1|true|yes)$/i.test(get(flag) ?? "");
  const quick = bool("quick");
  const num = (flag: keyof typeof values, full: number, small: number) => {
    const v = get(flag);
    const n = v === undefined ? (quick ? small : full) : Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${flag}: ${JSON.stringify(v)} is not a positive number`);
    return n;
  };
  const scenarios = (get("scenarios") ?? SCENARIOS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of scenarios)
    if (!(SCENARIOS as readonly string[]).includes(s))
      throw new Error(`--scenarios: unknown scenario ${JSON.stringify(s)} (one of ${SCENARIOS.join(", ")})`);
  const rates = list(get("rates") ?? "10,50,200");
  const secs = list(get("latency-seconds") ?? (quick ? "5,4,2" : "30,30,20"));
  const latencySeconds = rates.map((_, i) => secs[Math.min(i, secs.length - 1)] as number);
  const workers = get("workers");
  const rssTasks = [...new Set(list(get("rss-tasks") ?? (quick ? "1000" : "10000,20000")))].sort((a, b) => a - b);
  if (!rssTasks.length) throw new Error(`--rss-tasks: ${JSON.stringify(get("rss-tasks"))} names no positive count`);
  return {
    quick,
    scenarios: scenarios as Scenario[],
    rates,
    latencySeconds,
    throughputStudies: num("throughput-studies", 3000, 300),
    writesStudies: num("writes-studies", 300, 60),
    writesRate: num("writes-rate", 20, 20),
    rssTasks,
    rssStarts: Math.min(2, num("rss-starts", 2, 2)),
    rssNamespace: get("rss-namespace"),
    batchTasks: num("batch-tasks", 2000, 2000), // the goal is stated at 2,000
    statStudies: num("stat-studies", 20, 5),
    noiseRepeats: num("noise-repeats", 3, 3),
    noiseStudies: num("noise-studies", 250, 100),
    workers: workers ? Number(workers) : undefined,
    profile: !bool("no-profile"),
    apiserverProfileSeconds: Math.max(0, Number(get("apiserver-profile") ?? 8) || 0),
    keepCluster: bool("keep-cluster"),
    out: get("out"),
    sources: get("sources"),
    compare: get("compare"),
    waitQuietSeconds: Number(get("wait-quiet") ?? 0) || 0,
  };
}
