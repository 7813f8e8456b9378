// What a workflow author may reach through radflow (docs/security.md).
//
// An AIWorkflow's (or InferenceTask's) `storage` names a PersistentVolumeClaim to mount and a
// Secret to hand to the model's environment. Whoever may create those objects must not reach
// every Secret and volume of the namespace that way: only the ones the platform team listed
// for radflow (operator flags --allow-secret / --allow-pvc, chart values storageTrust.*). An
// allow-list, not a label on the Secret: checking a label would need the operator to read
// every Secret of every watched namespace; the list needs no read at all.
//
// A model sees its Secret, and may print it into the termination log, which becomes
// status.steps[].outputs, later steps' environment and the results on NATS. So the values of
// the allowed Secrets (read one by one, `get` limited by resourceNames) are cut out of every
// step's outputs, and outputs are bounded in depth as well as in bytes.
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { AIWorkflow, InferenceTask } from "../api/v1alpha1/index.ts";
import { apiClient, statusCode } from "../kube/client.ts";
import { logger } from "../log/logger.ts";

const log = logger("trust");

/** Secrets and PVCs named "namespace/name". */
export interface StorageTrust {
  secrets: ReadonlySet<string>;
  pvcs: ReadonlySet<string>;
}

const REF = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$/;

/** "ns/name" entries from flags and environment; a malformed entry stops the operator at start. */
export function parseStorageTrust(secrets: string[], pvcs: string[]): StorageTrust {
  const check = (what: string, xs: string[]) => {
    for (const x of xs) {
      if (!REF.test(x)) throw new Error(`${what} ${JSON.stringify(x)}: give namespace/name, e.g. radiology/imaging-s3`);
    }
    return new Set(xs);
  };
  return { secrets: check("--allow-secret", secrets), pvcs: check("--allow-pvc", pvcs) };
}

// One process, one policy: set once by `radflow operator` at start (before any workflow is
// validated or Job built). Nothing is allowed until then.
let policy: StorageTrust = { secrets: new Set(), pvcs: new Set() };

export function setStorageTrust(t: StorageTrust): void {
  policy = t;
}

type Storage = InferenceTask["spec"]["storage"];

/** Why `storage` in `namespace` is refused, naming the field; undefined when it is allowed. */
export function storageRefusal(namespace: string, storage: Storage, trust: StorageTrust = policy): string | undefined {
  const claim = storage?.pvc?.claimName;
  if (claim && !trust.pvcs.has(`${namespace}/${claim}`)) {
    return `storage.pvc.claimName '${claim}' is not a PersistentVolumeClaim the platform allowed for radflow (operator flag --allow-pvc ${namespace}/${claim}, chart value storageTrust.pvcs)`;
  }
  const secret = storage?.s3?.secretName;
  if (secret && !trust.secrets.has(`${namespace}/${secret}`)) {
    return `storage.s3.secretName '${secret}' is not a Secret the platform allowed for radflow (operator flag --allow-secret ${namespace}/${secret}, chart value storageTrust.secrets)`;
  }
  return undefined;
}

/** The workflow check (src/controllers/aiworkflow.ts): a refused storage keeps it from Ready. */
export function workflowStorageVerdict(
  wf: AIWorkflow,
  trust: StorageTrust = policy,
): { ok: false; reason: string; message: string } | undefined {
  const why = storageRefusal(wf.metadata.namespace as string, wf.spec.storage, trust);
  if (!why) return undefined;
  return {
    ok: false,
    reason: "StorageNotAllowed",
    message: `AIWorkflow ${wf.metadata.namespace}/${wf.metadata.name}: ${why}`,
  };
}

/** The last line before a Job is built: an InferenceTask may be created directly, with any storage. */
export function assertStorageAllowed(task: InferenceTask, trust: StorageTrust = policy): void {
  const why = storageRefusal(task.metadata.namespace as string, task.spec.storage, trust);
  if (why) throw new Error(`InferenceTask ${task.metadata.namespace}/${task.metadata.name}: ${why}`);
}

// ---- outputs ------------------------------------------------------------------------------------

/** Deeper outputs are refused: they feed CEL conditions, later steps' environment and NATS. */
export const MAX_OUTPUT_DEPTH = 16;
/** Shorter Secret values are not cut out: "1" or "true" would shred every output. */
export const MIN_SECRET_LENGTH = 6;
export const REDACTED = "[redacted]";

// Every value ever read from an allowed Secret: a rotated-out value may still sit in a pod
// that started before the rotation, so values are never forgotten (a handful of short strings).
const secretValues = new Set<string>();

/** Values to cut out of outputs, with their base64 forms (a Secret as the API shows it). */
export function addSecretValues(values: Iterable<string>): void {
  for (const v of values) {
    if (v.length < MIN_SECRET_LENGTH) continue;
    secretValues.add(v);
    secretValues.add(Buffer.from(v, "utf8").toString("base64"));
  }
}

/** For tests: forget every value. */
export function clearSecretValues(): void {
  secretValues.clear();
}

function redact(s: string, values: ReadonlySet<string>): string {
  let out = s;
  for (const v of values) if (out.includes(v)) out = out.replaceAll(v, REDACTED);
  return out;
}

/**
 * Parsed outputs → outputs without any allowed Secret's value (in keys, strings or the digits
 * of a number), or an error when they nest deeper than MAX_OUTPUT_DEPTH. Called by
 * parseOutputs (src/controllers/task-plan.ts) on every termination message.
 */
export function scrubOutputs(
  outputs: Record<string, unknown>,
  values: ReadonlySet<string> = secretValues,
): { ok: true; outputs: Record<string, unknown> } | { ok: false; error: string } {
  let tooDeep = false;
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > MAX_OUTPUT_DEPTH) {
      tooDeep = true;
      return null;
    }
    if (typeof v === "string") return values.size ? redact(v, values) : v;
    if (typeof v === "number") {
      if (!values.size) return v;
      const s = String(v);
      return redact(s, values) === s ? v : REDACTED;
    }
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    if (v && typeof v === "object") {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) o[values.size ? redact(k, values) : k] = walk(x, depth + 1);
      return o;
    }
    return v;
  };
  const out = walk(outputs, 1) as Record<string, unknown>;
  if (tooDeep) return { ok: false, error: `termination message nests deeper than ${MAX_OUTPUT_DEPTH} levels` };
  return { ok: true, outputs: out };
}

// ---- reading the allowed Secrets ----------------------------------------------------------------

/**
 * Reads every allowed Secret now and then every `everyMs`, adding its values to the scrub set.
 * A Secret the operator cannot read is logged (a missing grant: the chart gives `get` on
 * exactly these names); its values, unknown, cannot be cut out of outputs.
 */
export async function watchSecretValues(
  kc: KubeConfig,
  trust: StorageTrust = policy,
  everyMs = 30_000,
): Promise<{ stop: () => void }> {
  if (trust.secrets.size === 0) return { stop: () => {} };
  const core = apiClient(kc, CoreV1Api);
  const failing = new Set<string>();
  const readAll = async () => {
    for (const ref of trust.secrets) {
      const [namespace, name] = ref.split("/") as [string, string];
      try {
        const s = await core.readNamespacedSecret({ name, namespace });
        addSecretValues(Object.values(s.data ?? {}).map((b64) => Buffer.from(b64, "base64").toString("utf8")));
        if (failing.delete(ref)) log.info({ secret: ref }, "allowed Secret readable again");
      } catch (err) {
        if (!failing.has(ref)) {
          failing.add(ref);
          log.warn(
            { secret: ref, code: statusCode(err) },
            "cannot read an allowed Secret: its values cannot be cut out of step outputs",
          );
        }
      }
    }
  };
  await readAll();
  const timer = setInterval(() => void readAll(), everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
