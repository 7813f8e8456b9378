// The Dockerfile (for a hospital's own Docker build) and hack/images (for the local node, without
// Docker) describe the same radflow image: the same user, working directory, entry point,
// environment, ports and application files made the same way, on the same Node.js release. A
// change to one that is not made to the other fails here.
import { readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { describe, expect, it } from "vitest";
import { NODE_VERSION } from "../../../hack/images/build.ts";
import { IMAGES, type ImageSpec, USER } from "../../../hack/images/specs.ts";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const read = (f: string) => readFileSync(path.join(ROOT, f), "utf8");

interface Stage {
  from: string;
  name?: string;
  steps: { op: string; args: string }[];
}

/** Stages of the Dockerfile, continuation lines joined, comments dropped. */
function stages(text: string): Stage[] {
  const out: Stage[] = [];
  const joined = text
    .split("\n")
    .filter((l) => !l.trim().startsWith("#"))
    .join("\n")
    .replace(/\\\n/g, " ");
  for (const line of joined.split("\n").map((l) => l.trim())) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const op = (m[1] as string).toUpperCase();
    const args = m[2] as string;
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      out.push({ from: f?.[1] as string, name: f?.[2], steps: [] });
    } else out.at(-1)?.steps.push({ op, args });
  }
  return out;
}

const all = stages(read("Dockerfile"));
const runtime = all.at(-1) as Stage;
const one = (op: string) => {
  const found = runtime.steps.filter((s) => s.op === op);
  expect(found, `${op} in the runtime stage`).toHaveLength(1);
  return (found[0] as Stage["steps"][number]).args;
};
const radflow = IMAGES.radflow as ImageSpec;
const builder = read("hack/images/build.ts");

describe("the radflow image: Dockerfile and hack/images agree", () => {
  it("user, working directory, entry point and command", () => {
    expect(radflow.user).toBe(one("USER"));
    expect(radflow.workdir).toBe(one("WORKDIR"));
    expect(radflow.entrypoint).toEqual(JSON.parse(one("ENTRYPOINT")));
    expect(radflow.cmd).toEqual(JSON.parse(one("CMD")));
  });

  it("environment and ports", () => {
    for (const env of runtime.steps.filter((s) => s.op === "ENV")) {
      const [k, v] = env.args.split("=") as [string, string];
      expect(radflow.env[k], `ENV ${k}`).toBe(v);
    }
    // PATH is the only addition: the node base image sets it, an image config must say it
    expect(Object.keys(radflow.env).sort()).toEqual(
      [...runtime.steps.filter((s) => s.op === "ENV").map((s) => s.args.split("=")[0]), "PATH"].sort(),
    );
    expect(radflow.exposedPorts).toEqual(one("EXPOSE").split(/\s+/).map(Number));
  });

  it("the same Node.js release (hack/node.sh's, the Dockerfile's base images, the image's layer)", () => {
    for (const s of all)
      if (!all.some((o) => o.name === s.from))
        expect(s.from).toMatch(new RegExp(`^node:${NODE_VERSION.replaceAll(".", "\\.")}-`));
  });

  it("the same application files, made the same way", () => {
    const copies = runtime.steps
      .filter((s) => s.op === "COPY")
      .map((c) => {
        const from = /--from=(\S+)/.exec(c.args)?.[1];
        const [src, dest] = c.args.replace(/--from=\S+\s+/, "").split(/\s+/) as [string, string];
        const abs = path.posix.join(radflow.workdir, dest.endsWith("/") ? path.posix.basename(src) : dest);
        const stage = from ? all.find((s) => s.name === from) : undefined;
        const runs = (stage?.steps ?? []).filter((s) => s.op === "RUN").map((s) => s.args);
        const kind = !stage
          ? `repo:${src}`
          : runs.some((r) => /npm ci --omit=dev --ignore-scripts/.test(r))
            ? "production-dependencies"
            : runs.some((r) => /npm run build/.test(r))
              ? "compiled"
              : `stage ${from}`;
        return [abs, kind];
      });
    const spec = radflow.files.map((f) => [f.dest, f.from.kind === "repo" ? `repo:${f.from.path}` : f.from.kind]);
    expect(spec.sort()).toEqual(copies.sort());
    // the builder does what those stages do: npm ci with the same flags, tsc as npm run build does
    expect(builder).toContain('"ci", "--omit=dev", "--ignore-scripts"');
    expect(JSON.parse(read("package.json")).scripts.build).toBe("tsc -p tsconfig.build.json");
    expect(builder).toContain('"-p", "tsconfig.build.json"');
  });

  it("read-only root: both run as the chart's numeric non-root user, which owns nothing it runs", () => {
    const values = yaml.load(read("helm/radflow/values.yaml")) as {
      podSecurityContext: { runAsUser: number; runAsGroup: number };
      securityContext: { readOnlyRootFilesystem: boolean };
    };
    expect(values.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(radflow.user).toBe(`${values.podSecurityContext.runAsUser}:${values.podSecurityContext.runAsGroup}`);
    // the chart's emptyDir on /tmp is the only writable place; the layers leave /tmp to it
    expect(read("helm/radflow/templates/deployment.yaml")).toMatch(/mountPath: \/tmp/);
    // the application layer is written root-owned and not group/world-writable
    expect(builder).toContain('"--owner=0"');
    expect(builder).toContain('"--mode=a+rX,go-w"');
  });

  it("every local image runs as a numeric non-root user (a step pod sets runAsNonRoot without runAsUser)", () => {
    for (const [name, spec] of Object.entries(IMAGES)) {
      expect(spec.user, name).toBe(`${USER.uid}:${USER.gid}`);
      expect(USER.uid).toBeGreaterThan(0);
      expect(spec.ref, name).toMatch(/^radflow\.local\/[a-z0-9-]+:dev$/);
      expect(spec.entrypoint[0], name).toBe("node");
    }
  });
});
