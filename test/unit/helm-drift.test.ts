// The chart's copies (CRDs, dashboard, alert rules) and manifests/radflow.yaml are derived files:
// they must equal their sources, or the chart would install an older API than crds/ describes.
// Fix with `node hack/render-manifests.ts` (after `npm run generate`).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { chartCopies, MANIFESTS, main, sync } from "../../hack/render-manifests.ts";
import { tool } from "./tools.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
let helm: string;
beforeAll(() => {
  helm = tool("helm"); // built by the unit project's global setup
});

describe("chart copies and manifests/", () => {
  it("are up to date (node hack/render-manifests.ts --check)", () => {
    const drift = sync({ write: false, helm });
    expect(drift, "run `node hack/render-manifests.ts` and commit the result").toEqual({ differ: [], stale: [] });
  });

  it("copies every CRD of crds/, the dashboard and the alert rules byte for byte", () => {
    const copies = chartCopies();
    expect([...copies.values()].filter((s) => s.startsWith("crds/")).length).toBeGreaterThanOrEqual(2);
    for (const [dest, src] of copies) {
      expect(readFileSync(path.join(ROOT, dest), "utf8"), dest).toBe(readFileSync(path.join(ROOT, src), "utf8"));
    }
  });

  it("the check notices a changed CRD, a stale copy and hand-edited manifests, and the write repairs them", () => {
    // a scratch copy of the repository's inputs, so that the real files are never touched
    const root = mkdtempSync(path.join(tmpdir(), "radflow-drift-"));
    for (const d of ["crds", "dashboards", "alerts", "helm", "manifests"]) {
      cpSync(path.join(ROOT, d), path.join(root, d), { recursive: true });
    }
    const crd = path.join(root, "crds/radflow.io_aiworkflows.yaml");
    writeFileSync(crd, readFileSync(crd, "utf8").replace("shortNames:", "shortNames:\n      - aiw"));
    writeFileSync(path.join(root, "helm/radflow/crds/radflow.io_old.yaml"), "kind: CustomResourceDefinition\n");
    writeFileSync(path.join(root, MANIFESTS), `${readFileSync(path.join(root, MANIFESTS), "utf8")}# edited\n`);
    expect(sync({ write: false, helm, root })).toEqual({
      differ: ["helm/radflow/crds/radflow.io_aiworkflows.yaml", MANIFESTS],
      stale: ["helm/radflow/crds/radflow.io_old.yaml"],
    });
    sync({ write: true, helm, root });
    expect(sync({ write: false, helm, root })).toEqual({ differ: [], stale: [] });
    // the regenerated manifests carry the new short name through the chart's crds/ copy
    expect(readFileSync(path.join(root, MANIFESTS), "utf8")).toContain("      - aiw\n");
    rmSync(root, { recursive: true, force: true });
  });

  it("--check exits 0 when up to date; unknown arguments exit 2", () => {
    const write = process.stderr.write;
    process.stderr.write = () => true;
    try {
      process.env.RADFLOW_HELM = helm;
      expect(main(["--check"])).toBe(0);
      expect(main(["--chek"])).toBe(2);
    } finally {
      process.stderr.write = write;
      delete process.env.RADFLOW_HELM;
    }
  });
});
