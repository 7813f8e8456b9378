// The shipped alert rules and dashboard: promtool accepts the rules and their unit tests pass,
// and every metric they query is one radflow exports (a renamed metric would leave a silent,
// never-firing alert or an empty panel).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { registry } from "../../src/metrics/metrics.ts";
import { tool } from "./tools.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const RULES = path.join(ROOT, "alerts/radflow.rules.yaml");
const RULE_TESTS = path.join(ROOT, "alerts/radflow.rules.test.yaml");
const DASHBOARD = path.join(ROOT, "dashboards/radflow.json");

let promtool: string;
beforeAll(() => {
  // built by the unit project's global setup (test/unit/global-setup.ts); fails loudly without it
  promtool = tool("promtool");
});

function runPromtool(args: string[]) {
  const r = spawnSync(promtool, args, { encoding: "utf8", cwd: ROOT });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Every series name radflow's registry exports, histogram/summary parts included. */
async function exported(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    const type = String(m.type);
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
    if (type === "summary") for (const s of ["_sum", "_count"]) names.add(m.name + s);
  }
  return names;
}

/** radflow_* names a PromQL expression reads (recording rules, radflow:…, are not metrics). */
const metricsIn = (expr: string) => [...expr.matchAll(/(?<![\w:])radflow_[a-zA-Z0-9_]+/g)].map((m) => m[0]);

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
}
const rules = (): Rule[] =>
  (yaml.load(readFileSync(RULES, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

interface Panel {
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: { expr: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}
const dashboard = () =>
  JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
    templating: { list: { name: string; type: string; query: string }[] };
    panels: Panel[];
  };
/** Grafana's reference to the dashboard's datasource variable. */
const DS_VAR = ["$", "{datasource}"].join("");
const panels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...panels(p.panels ?? [])]);

describe("alert rules", () => {
  it("pass promtool check rules", () => {
    const r = runPromtool(["check", "rules", RULES]);
    expect(r.out).toContain("SUCCESS");
    expect(r.status, r.out).toBe(0);
  });

  it("pass their promtool unit tests", () => {
    const r = runPromtool(["test", "rules", RULE_TESTS]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain("SUCCESS");
  });

  it("alert on what docs/ARCHITECTURE.md §6 asks for", () => {
    const alerts = rules()
      .map((r) => r.alert)
      .filter(Boolean);
    expect(alerts).toEqual(
      expect.arrayContaining([
        "RadflowStatTaskWaitingForGPU",
        "RadflowTurnaroundOverTarget",
        "RadflowConsumerLagGrowing",
        "RadflowAuditSpoolGrowing",
        "RadflowAuditSinkFailing",
        "RadflowReconcileErrors",
        "RadflowNoLeader",
      ]),
    );
  });

  it("query only metrics radflow exports", async () => {
    const have = await exported();
    const used = rules().flatMap((r) => metricsIn(r.expr));
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((n) => !have.has(n))).toEqual([]);
  });
});

describe("Grafana dashboard", () => {
  it("has a datasource variable that every panel and query uses", () => {
    const d = dashboard();
    expect(d.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }),
    );
    for (const p of panels(d.panels).filter((p) => p.type !== "row")) {
      expect(p.datasource?.uid, p.title).toBe(DS_VAR);
      for (const t of p.targets ?? []) expect(t.datasource?.uid ?? DS_VAR, p.title).toBe(DS_VAR);
    }
  });

  it("shows throughput, turnaround, GPU wait, failures, lag, audit backlog, reconciles and the leader", () => {
    const exprs = panels(dashboard().panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    for (const m of [
      "radflow_study_events_total",
      "radflow_study_turnaround_seconds_bucket",
      "radflow_gpu_wait_seconds_bucket",
      "radflow_tasks_finished_total",
      "radflow_nats_consumer_pending",
      "radflow_audit_backlog",
      "radflow_reconcile_total",
      "radflow_leader",
    ]) {
      expect(
        exprs.some((e) => metricsIn(e).includes(m)),
        m,
      ).toBe(true);
    }
  });

  it("queries only metrics radflow exports", async () => {
    const have = await exported();
    const used = panels(dashboard().panels).flatMap((p) => (p.targets ?? []).flatMap((t) => metricsIn(t.expr)));
    expect(used.length).toBeGreaterThan(10);
    expect(used.filter((n) => !have.has(n))).toEqual([]);
  });
});
