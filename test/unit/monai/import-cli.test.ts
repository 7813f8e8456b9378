// `radflow import monai`: YAML on stdout that parses back to the AIWorkflow; errors on stderr
// with nothing on stdout, so a pipe into kubectl never applies half a workflow.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import yaml from "js-yaml";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/index.ts";
import { main } from "../../../src/cmd/import.ts";
import { sharedPath, withoutShared } from "../../support/shared.ts";

const fixture = sharedPath("fixtures/monai/liver-lung-seg.workflow.json");
const noShared = withoutShared(import.meta.filename);
let out = "";
let err = "";

beforeEach(() => {
  out = "";
  err = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err += String(s);
    return true;
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("radflow import monai", () => {
  it.skipIf(noShared)("prints the AIWorkflow as YAML with the notes as a leading comment", async () => {
    expect(
      await main(["monai", fixture, "--namespace", "radiology", "--name", "liver-lung", "--priority", "urgent"]),
    ).toBe(0);
    expect(out.startsWith("# Imported from the MONAI Deploy workflow liver-lung-seg.workflow.json")).toBe(true);
    expect(out).toContain("spec.storage is not set");
    const wf = AIWorkflow.parse(yaml.load(out));
    expect(wf.metadata).toMatchObject({ name: "liver-lung", namespace: "radiology" });
    expect(wf.spec.priority).toBe("urgent");
    expect(wf.spec.steps).toHaveLength(2);
    expect(err).toBe("");
  });

  it("fails with the problem on stderr and nothing on stdout", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "radflow-import-"));
    const file = path.join(dir, "bad.json");
    writeFileSync(
      file,
      JSON.stringify({
        name: "bad",
        informatics_gateway: { ae_title: "GW" },
        tasks: [
          {
            id: "r",
            type: "router",
            task_destinations: [{ name: "a", conditions: ["{{ context.input.dicom }} == 'x'"] }],
          },
          { id: "a", type: "docker", args: { container_image: "x:1" } },
        ],
      }),
    );
    const status = await main(["monai", file]);
    rmSync(dir, { recursive: true, force: true });
    expect(status).toBe(1);
    expect(out).toBe("");
    expect(err).toContain('task "r": condition "{{ context.input.dicom }} == \'x\'"');
  });

  it("rejects bad usage", async () => {
    expect(await main(["monai"])).toBe(2);
    expect(await main(["monai", fixture, "--priority", "asap"])).toBe(2);
    expect(err).toContain("--priority must be one of stat, urgent, routine, batch");
    expect(await main(["argo", fixture])).toBe(2);
  });
});
