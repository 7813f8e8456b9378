// A step's outputs are its model's termination message: a bounded JSON object, scrubbed.
import { scrubOutputs } from "../../jobs/trust.ts";

/** A step's termination message → outputs: a JSON object of at most maxBytes, or an error. */
export function parseOutputs(
  message: string | undefined,
  maxBytes: number,
): { ok: true; outputs: Record<string, unknown> } | { ok: false; error: string } {
  const m = (message ?? "").trim();
  if (m === "") return { ok: true, outputs: {} };
  if (Buffer.byteLength(m, "utf8") > maxBytes) {
    return { ok: false, error: `termination message is larger than ${maxBytes} bytes` };
  }
  let v: unknown;
  try {
    v = JSON.parse(m);
  } catch (e) {
    // V8's message quotes the text around the error, and a model may print patient data there;
    // this error goes to status, an Event and an audit description (no PHI): keep the position only
    const where = /at position \d+/.exec((e as Error).message)?.[0];
    return { ok: false, error: `termination message is not valid JSON${where ? ` (${where})` : ""}` };
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    return { ok: false, error: "termination message must be a JSON object" };
  }
  return scrubOutputs(v as Record<string, unknown>); // no allowed Secret value, bounded depth (src/jobs/trust.ts)
}
