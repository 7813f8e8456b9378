// Mandatory outputs (a step's outputs.required; MONAI's mandatory output artifacts): a model run
// that succeeds without reporting one of them fails the step with MissingOutput, so a later step
// or an export never proceeds on a result that is not there. Pure.
import type { Step } from "../api/v1alpha1/index.ts";

export const MISSING_OUTPUT = "MissingOutput";

/** The required output keys a step's outputs lack (absent or null), in the order the step lists them. */
export function missingOutputs(step: Pick<Step, "outputs">, outputs: Record<string, unknown> | undefined): string[] {
  return (step.outputs?.required ?? []).filter((k) => outputs?.[k] === undefined || outputs[k] === null);
}

/** The step's failure message for missing outputs: names the keys (workflow-defined, never study data). */
export function missingOutputMessage(missing: readonly string[]): string {
  const list = missing.map((k) => JSON.stringify(k)).join(", ");
  return `the model succeeded without reporting required output${missing.length === 1 ? "" : "s"} ${list} (outputs.required) in its termination message`.slice(
    0,
    1024,
  );
}
