// Which results of a finished task go to which DICOM destinations (pure). Per step: the step's
// own `export` entries, each with an optional CEL `when` over that step's outputs; the
// workflow-level `export` is sugar for an unconditional export of the last step(s) (those no
// other step depends on) to the destination of each name. Every entry ends as a request — a
// false `when` or a step that did not run is a request the gateway records as Skipped, so the
// task says why nothing was sent instead of saying nothing.
import { isForwardStep, type StepExport } from "../api/v1alpha1/aiworkflow.ts";
import type { InferenceTask } from "../api/v1alpha1/inferencetask.ts";
import { cachedBool } from "../expr/cel.ts";
import { stableId } from "../ingest/route.ts";
import { EXPORT_REQUESTED, EXPORT_SUBJECT, type ExportRequestData, type ExportRequestEvent } from "./request.ts";

export interface ExportMessage {
  subject: string;
  msgId: string;
  event: ExportRequestEvent;
}

/** Nats-Msg-Id of one export: the same task, step and destination give the same id. */
export function exportMsgId(taskUid: string, step: string, destination: string): string {
  return stableId(taskUid, "export", step, destination);
}

/** The export entries of each step, the workflow-level sugar merged in (a step's own entry wins). */
export function exportEntries(task: InferenceTask): { step: string; exp: StepExport }[] {
  const steps = task.spec.steps;
  const needed = new Set(steps.flatMap((s) => s.dependsOn ?? []));
  const out: { step: string; exp: StepExport }[] = [];
  for (const s of steps) {
    const own = s.export ?? [];
    for (const exp of own) out.push({ step: s.name, exp });
    if (needed.has(s.name)) continue;
    for (const d of task.spec.export ?? []) {
      if (own.some((e) => e.destination === d.name)) continue;
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(d.name) || d.name.length > 253) continue; // not a DICOMDestination name
      // a forwarding step has no results of its own: what it sends is the study
      out.push({ step: s.name, exp: { destination: d.name, content: isForwardStep(s) ? "study" : "auto" } });
    }
  }
  return out;
}

type Decision = Pick<ExportRequestData, "decision" | "reason" | "message">;

/** Whether one entry is sent, and if not why (a condition error is Failed, never false). */
export function decide(task: InferenceTask, step: string, exp: StepExport): Decision {
  const statuses = task.status?.steps ?? [];
  const st = statuses.find((s) => s.name === step);
  if (st?.phase === "Skipped")
    return { decision: "Skipped", reason: "StepSkipped", message: `step ${step} did not run` };
  if (st?.phase !== "Succeeded")
    return { decision: "Skipped", reason: "StepNotSucceeded", message: `step ${step} is ${st?.phase ?? "unknown"}` };
  if (exp.when) {
    let r: ReturnType<ReturnType<typeof cachedBool>>;
    try {
      r = cachedBool(exp.when)({
        outputs: st.outputs ?? {},
        study: task.spec.study,
        steps: Object.fromEntries(statuses.map((s) => [s.name, { phase: s.phase, outputs: s.outputs ?? {} }])),
      });
    } catch (e) {
      r = { ok: false, error: (e as Error).message };
    }
    if (!r.ok)
      return { decision: "Failed", reason: "ConditionError", message: `export when: ${r.error}`.slice(0, 1024) };
    if (!r.value) return { decision: "Skipped", reason: "WhenFalse", message: "export when is false" };
  }
  return { decision: "send" };
}

/** One export request per (step, destination) of a succeeded task; none for any other outcome. */
export function planExports(task: InferenceTask): ExportMessage[] {
  if (task.status?.phase !== "Succeeded") return [];
  const ns = task.metadata.namespace ?? "";
  const name = task.metadata.name ?? "";
  const uid = task.metadata.uid ?? "";
  return exportEntries(task).map(({ step, exp }) => {
    const msgId = exportMsgId(uid, step, exp.destination);
    const st = task.status?.steps?.find((s) => s.name === step);
    const data: ExportRequestData = {
      task: { namespace: ns, name, uid },
      workflow: task.spec.workflowRef.name,
      step,
      destination: exp.destination,
      content: exp.content ?? "auto",
      ...decide(task, step, exp),
      image: task.spec.steps.find((s) => s.name === step)?.image,
      outputs: st?.outputs ?? {},
      ...(task.spec.storage ? { storage: task.spec.storage } : {}),
      outputPath: `results/${name}/${step}`,
      study: {
        studyInstanceUID: task.spec.study.studyInstanceUID,
        ...(task.spec.study.accessionNumber ? { accessionNumber: task.spec.study.accessionNumber } : {}),
        ...(task.spec.study.location ? { location: task.spec.study.location } : {}),
      },
      ...(task.status?.completionTime ? { completionTime: task.status.completionTime } : {}),
    };
    return {
      subject: EXPORT_SUBJECT,
      msgId,
      event: {
        specversion: "1.0",
        id: msgId,
        source: `/apis/radflow.io/v1alpha1/namespaces/${ns}/inferencetasks/${name}`,
        type: EXPORT_REQUESTED,
        subject: name,
        time: task.status?.completionTime ?? new Date(0).toISOString(),
        datacontenttype: "application/json",
        data,
      },
    };
  });
}
