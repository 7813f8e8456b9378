// The operator image's Dockerfile, checked without a Docker engine (none runs here, and Debian
// has no hadolint package): the rules hadolint and a hospital's image policy would apply, read
// from the file itself. That the entry point starts the operator from the build output, with
// production dependencies only, a read-only root and a numeric non-root user, is shown on the
// local cluster by test/integration/helm.test.ts.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const read = (f: string) => readFileSync(path.join(ROOT, f), "utf8");

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line.startsWith("#") || (!pending && line === "")) return;
    if (!pending) start = i + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trimEnd()} `;
      return;
    }
    const full = pending + line;
    pending = "";
    const m = /^(\w+)\s+(.*)$/.exec(full);
    if (!m) throw new Error(`Dockerfile:${start}: cannot read ${JSON.stringify(full)}`);
    const op = (m[1] as string).toUpperCase();
    const args = m[2] as string;
    if (op === "FROM") {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`Dockerfile:${start}: cannot read FROM ${args}`);
      stages.push({ from: f[1] as string, name: f[2], steps: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile:${start}: ${op} before the first FROM`);
      stage.steps.push({ op, args, line: start });
    }
  });
  return stages;
}

const stages = parseDockerfile(read("Dockerfile"));
const runtime = stages.at(-1) as Stage;
const stageNames = new Set(stages.map((s) => s.name).filter(Boolean));
const baseImages = stages.filter((s) => !stageNames.has(s.from)).map((s) => s.from);
const all = stages.flatMap((s) => s.steps);
const ops = (s: Stage, op: string) => s.steps.filter((x) => x.op === op);

describe("Dockerfile", () => {
  it("builds in stages and runs the last one", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(runtime.name).toBeUndefined();
  });

  it("pins every base image to an exact Node 24 release on Debian slim (the version hack/node.sh uses)", () => {
    const nodeVersion = /^NODE_VERSION="([\d.]+)"/m.exec(read("hack/node.sh"))?.[1];
    expect(nodeVersion).toMatch(/^24\.\d+\.\d+$/);
    expect(baseImages.length).toBeGreaterThan(0);
    for (const image of baseImages) {
      // a moving tag (latest, 24, 24-slim) would rebuild a different image from the same file
      expect(image, image).toMatch(/^node:\d+\.\d+\.\d+(-[a-z]+)?-slim(@sha256:[a-f0-9]{64})?$/);
      expect(image.startsWith(`node:${nodeVersion}-`), `${image}: not Node ${nodeVersion}`).toBe(true);
    }
  });

  it("runs as a numeric non-root user, set in the runtime stage", () => {
    const users = ops(runtime, "USER");
    expect(users).toHaveLength(1);
    const user = (users[0] as Instruction).args;
    // numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(":")[0])).toBeGreaterThan(0);
    // and matching the chart's pod securityContext
    const values = read("helm/radflow/values.yaml");
    expect(values).toContain(`runAsUser: ${user.split(":")[0]}`);
    // nothing after USER needs root
    const after = runtime.steps.slice(runtime.steps.indexOf(users[0] as Instruction) + 1);
    expect(after.filter((s) => s.op === "RUN")).toEqual([]);
  });

  it("fetches nothing with ADD (no remote URLs, no archives unpacked implicitly)", () => {
    expect(all.filter((s) => s.op === "ADD")).toEqual([]);
    expect(all.filter((s) => /\b(curl|wget)\b/.test(s.args))).toEqual([]);
  });

  it("installs with npm ci from the lock file; the runtime gets production dependencies only", () => {
    const installs = all.filter((s) => s.op === "RUN" && /\bnpm (install|i)\b/.test(s.args));
    expect(installs, "npm install ignores the lock file's exactness: use npm ci").toEqual([]);
    // node_modules in the runtime stage come from a stage that ran npm ci --omit=dev
    const copies = ops(runtime, "COPY");
    const modules = copies.filter((c) => /node_modules/.test(c.args));
    expect(modules).toHaveLength(1);
    const fromStage = /--from=(\S+)/.exec((modules[0] as Instruction).args)?.[1];
    const source = stages.find((s) => s.name === fromStage);
    expect(source, `node_modules copied from ${fromStage}`).toBeDefined();
    const ci = ops(source as Stage, "RUN").filter((r) => /\bnpm ci\b/.test(r.args));
    expect(ci).toHaveLength(1);
    expect((ci[0] as Instruction).args).toMatch(/--omit=dev/);
    // the build stage (with dev dependencies) hands over dist/ only
    const build = stages.find((s) => ops(s, "RUN").some((r) => /npm run build/.test(r.args)));
    expect(build).toBeDefined();
    const fromBuild = copies.filter((c) => c.args.includes(`--from=${build?.name}`));
    expect(fromBuild.map((c) => c.args.replace(/--from=\S+\s+/, ""))).toEqual(["/src/dist ./dist"]);
    expect(ops(runtime, "RUN").filter((r) => /\bnpm\b/.test(r.args))).toEqual([]);
  });

  it("starts the compiled operator: ENTRYPOINT node /app/dist/cmd/radflow.js, CMD operator", () => {
    expect(ops(runtime, "ENTRYPOINT").map((s) => JSON.parse(s.args))).toEqual([["node", "/app/dist/cmd/radflow.js"]]);
    expect(ops(runtime, "CMD").map((s) => JSON.parse(s.args))).toEqual([["operator"]]);
    expect(ops(runtime, "WORKDIR").map((s) => s.args)).toEqual(["/app"]);
    // /app/dist/cmd/radflow.js is where tsc puts src/cmd/radflow.ts
    const build = JSON.parse(read("tsconfig.build.json")) as { compilerOptions: { outDir: string; rootDir: string } };
    expect(build.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "src" });
    expect(read("src/cmd/radflow.ts")).toContain('case "operator"');
    const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string>; type: string };
    expect(pkg.scripts.build).toBe("tsc -p tsconfig.build.json");
    // dist/ is ESM: package.json ("type": "module") must sit above it
    expect(pkg.type).toBe("module");
    expect(ops(runtime, "COPY").map((c) => c.args)).toContain("package.json ./");
  });

  it("uses the exec form for ENTRYPOINT and CMD, absolute WORKDIRs, and no sudo or apt-get", () => {
    for (const s of all.filter((x) => x.op === "ENTRYPOINT" || x.op === "CMD")) {
      expect(s.args.startsWith("["), `line ${s.line}: shell form`).toBe(true);
    }
    for (const s of all.filter((x) => x.op === "WORKDIR")) expect(s.args.startsWith("/")).toBe(true);
    expect(all.filter((s) => /\b(sudo|apt-get|apt)\b/.test(s.args))).toEqual([]);
  });

  it("sends the build only what it copies (.dockerignore)", () => {
    const ignore = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    expect(ignore[0]).toBe("*");
    const allowed = new Set(ignore.filter((l) => l.startsWith("!")).map((l) => l.slice(1).replace(/\/$/, "")));
    const contextCopies = all.filter((s) => s.op === "COPY" && !s.args.includes("--from="));
    for (const c of contextCopies) {
      const sources = c.args.split(/\s+/).slice(0, -1);
      for (const src of sources) expect(allowed.has(src.replace(/\/$/, "")), `COPY ${src}`).toBe(true);
    }
    // and never node_modules or dist from the host
    expect(allowed.has("node_modules")).toBe(false);
    expect(allowed.has("dist")).toBe(false);
  });

  it("the parser reads continuation lines and refuses what it cannot read", () => {
    const s = parseDockerfile("FROM node:24.1.0-slim AS a\n# c\nRUN a \\\n  b\nFROM a\nUSER 1000\n");
    expect(s).toEqual([
      { from: "node:24.1.0-slim", name: "a", steps: [{ op: "RUN", args: "a b", line: 3 }] },
      { from: "a", name: undefined, steps: [{ op: "USER", args: "1000", line: 6 }] },
    ]);
    expect(() => parseDockerfile("RUN x\n")).toThrow(/before the first FROM/);
  });
});
