// The trust checks: the storage allow-list (workflow validation and Job building), and step
// outputs without the allowed Secrets' values and bounded in depth.
import { afterEach, describe, expect, it } from "vitest";
import { AIWorkflow } from "../../../src/api/v1alpha1/index.ts";
import { validateWorkflow } from "../../../src/controllers/aiworkflow.ts";
import { parseOutputs } from "../../../src/controllers/task-plan.ts";
import {
  addSecretValues,
  clearSecretValues,
  MAX_OUTPUT_DEPTH,
  parseStorageTrust,
  REDACTED,
  scrubOutputs,
  setStorageTrust,
  storageRefusal,
} from "../../../src/jobs/trust.ts";

const trust = parseStorageTrust(["radiology/imaging-s3"], ["radiology/imaging-studies"]);

function workflow(storage: unknown) {
  return AIWorkflow.parse({
    apiVersion: "radflow.io/v1alpha1",
    kind: "AIWorkflow",
    metadata: { name: "head-ct", namespace: "radiology", generation: 1 },
    spec: {
      trigger: { match: { modality: ["CT"] } },
      steps: [{ name: "detect", image: "registry.example.org/ich:1" }],
      storage,
    },
  });
}

afterEach(() => {
  clearSecretValues();
  setStorageTrust(parseStorageTrust([], []));
});

describe("parseStorageTrust", () => {
  it.each(["imaging-s3", "radiology/", "/x", "Radiology/x", "a/b/c", "ns/UPPER"])(
    "refuses %j with the expected form",
    (bad) => {
      expect(() => parseStorageTrust([bad], [])).toThrow(/--allow-secret .*give namespace\/name/);
    },
  );
});

describe("storage allow-list", () => {
  it.each([
    ["allowed PVC", { pvc: { claimName: "imaging-studies" } }, undefined],
    ["allowed Secret", { s3: { uri: "s3://imaging/s", secretName: "imaging-s3" } }, undefined],
    ["S3 without a Secret", { s3: { uri: "s3://imaging/s" } }, undefined],
    ["no storage", undefined, undefined],
    ["other PVC", { pvc: { claimName: "finance" } }, /storage\.pvc\.claimName 'finance'/],
    ["other Secret", { s3: { uri: "s3://imaging/s", secretName: "db-root" } }, /storage\.s3\.secretName 'db-root'/],
  ])("%s", (_n, storage, want) => {
    const why = storageRefusal("radiology", storage as never, trust);
    if (want) expect(why).toMatch(want);
    else expect(why).toBeUndefined();
  });

  it("an allowed name is allowed in its namespace only", () => {
    expect(storageRefusal("research", { pvc: { claimName: "imaging-studies" } } as never, trust)).toMatch(
      /--allow-pvc research\/imaging-studies/,
    );
  });

  it("nothing is allowed until the operator sets the policy", () => {
    expect(storageRefusal("radiology", { pvc: { claimName: "imaging-studies" } } as never)).toBeDefined();
  });

  it("a workflow naming an unlisted Secret is not Ready, with the reason and the field", () => {
    setStorageTrust(trust);
    const v = validateWorkflow(workflow({ s3: { uri: "s3://imaging/s", secretName: "kube-admin-token" } }));
    expect(v).toMatchObject({ ok: false, reason: "StorageNotAllowed" });
    expect(v.message).toMatch(
      /^AIWorkflow radiology\/head-ct: storage\.s3\.secretName 'kube-admin-token' is not a Secret/,
    );
    expect(validateWorkflow(workflow({ pvc: { claimName: "imaging-studies" } }))).toMatchObject({ ok: true });
  });
});

describe("step outputs", () => {
  const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

  it("an allowed Secret's value printed by the model does not reach the outputs (nor its base64)", () => {
    addSecretValues([SECRET, "AKIAIOSFODNN7EXAMPLE"]);
    const b64 = Buffer.from(SECRET).toString("base64");
    const msg = JSON.stringify({
      score: 0.93,
      env: `AWS_SECRET_ACCESS_KEY=${SECRET}\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE`,
      nested: [{ [SECRET]: b64 }],
    });
    const r = parseOutputs(msg, 4096);
    expect(r.ok).toBe(true);
    const text = JSON.stringify(r);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(b64);
    expect(text).not.toContain("AKIAIOSFODNN7EXAMPLE");
    expect(r).toEqual({
      ok: true,
      outputs: {
        score: 0.93,
        env: `AWS_SECRET_ACCESS_KEY=${REDACTED}\nAWS_ACCESS_KEY_ID=${REDACTED}`,
        nested: [{ [REDACTED]: REDACTED }],
      },
    });
  });

  it("a value hidden by JSON escapes is found after parsing; a numeric secret in a number too", () => {
    addSecretValues(["8675309123"]);
    const r = parseOutputs('{"k":"\\u0038675309123","n":8675309123,"other":42}', 4096);
    expect(r).toEqual({ ok: true, outputs: { k: REDACTED, n: REDACTED, other: 42 } });
  });

  it("short values are not cut out (they would shred every output)", () => {
    addSecretValues(["true", "1"]);
    expect(scrubOutputs({ device: true, label: "true", n: 1 })).toEqual({
      ok: true,
      outputs: { device: true, label: "true", n: 1 },
    });
  });

  it(`outputs nesting deeper than ${MAX_OUTPUT_DEPTH} levels fail the step`, () => {
    const deep = `${"[".repeat(MAX_OUTPUT_DEPTH)}1${"]".repeat(MAX_OUTPUT_DEPTH)}`;
    expect(parseOutputs(`{"a":${deep}}`, 4096)).toEqual({
      ok: false,
      error: `termination message nests deeper than ${MAX_OUTPUT_DEPTH} levels`,
    });
    const ok = `${"[".repeat(MAX_OUTPUT_DEPTH - 2)}1${"]".repeat(MAX_OUTPUT_DEPTH - 2)}`;
    expect(parseOutputs(`{"a":${ok}}`, 4096).ok).toBe(true);
  });

  it("the byte cap still applies before anything is parsed", () => {
    expect(parseOutputs(JSON.stringify({ a: "x".repeat(5000) }), 4096)).toMatchObject({ ok: false });
  });
});
