// Routing (pure): which Ready AIWorkflows a study event starts, and the InferenceTask for each.
// A trigger criterion that cannot be evaluated (a CEL error, a bad pattern) is not a match, but
// it is reported: a broken rule must never look like "this study did not qualify".
import { createHash } from "node:crypto";
import { type AIWorkflow, isReady } from "../api/v1alpha1/aiworkflow.ts";
import {
  LABEL_MANAGED_BY,
  LABEL_PRIORITY,
  LABEL_WORKFLOW,
  MANAGED_BY,
  TASK_FINALIZER,
} from "../api/v1alpha1/common.ts";
import { type EventIdentity, eventKey, type StudyEvent } from "../api/v1alpha1/events.ts";
import type { InferenceTask } from "../api/v1alpha1/inferencetask.ts";
import type { SeriesSummary, Study } from "../api/v1alpha1/study.ts";
import { cachedBool } from "../expr/cel.ts";
import { cachedPattern, type Pattern } from "../expr/pattern.ts";

export type MatchOutcome = { match: true } | { match: false; why: string } | { match: false; error: string }; // the workflow's rule could not be evaluated

export interface RouteError {
  namespace: string;
  workflow: string;
  /** What failed, e.g. "trigger.expression": a field of the workflow, never a study value. */
  field: string;
  /** The error; CEL messages may quote derived study values, so it goes to logs, not to the DLQ. */
  error: string;
}

export interface RouteResult {
  tasks: InferenceTask[];
  errors: RouteError[];
}

export interface RouteOptions {
  /**
   * Routing time budget, ms. Workflows not reached within it are reported as errors (field
   * "routing-deadline") instead of evaluated, so one event's slow rules cannot hold the consumer
   * indefinitely. Default: no budget.
   */
  budgetMs?: number;
  /** Clock, ms (tests). */
  now?: () => number;
}

/** Matches the event against every workflow and builds one InferenceTask per match. */
export function route(event: StudyEvent, workflows: readonly AIWorkflow[], o: RouteOptions = {}): RouteResult {
  const tasks: InferenceTask[] = [];
  const errors: RouteError[] = [];
  const now = o.now ?? (() => performance.now());
  const deadline = o.budgetMs === undefined ? Number.POSITIVE_INFINITY : now() + o.budgetMs;
  for (const wf of workflows) {
    const at = { namespace: wf.metadata.namespace ?? "", workflow: wf.metadata.name ?? "" };
    if (now() > deadline) {
      errors.push({
        ...at,
        field: "routing-deadline",
        error: `not evaluated: routing took over ${o.budgetMs} ms`,
      });
      continue;
    }
    const m = matchWorkflow(event, wf);
    if (m.match) tasks.push(buildTask(wf, event));
    else if ("error" in m) errors.push({ ...at, field: errorField(m.error), error: m.error });
  }
  return { tasks, errors };
}

// matchWorkflow's errors begin with the workflow field that failed ("trigger.expression: …")
function errorField(error: string): string {
  const f = /^([A-Za-z.]+)[: ]/.exec(error)?.[1];
  return f?.startsWith("trigger.") ? f : "workflow";
}

export function matchWorkflow(event: StudyEvent, wf: AIWorkflow): MatchOutcome {
  const { spec } = wf;
  if (!isReady(wf)) return { match: false, why: "workflow is not Ready" };
  if (spec.suspend) return { match: false, why: "workflow is suspended" };
  if (!wf.metadata.uid) return { match: false, error: "workflow has no metadata.uid" };
  if (event.workflows?.length) {
    const names = workflowNames(wf);
    if (!event.workflows.some((w) => names.has(w.trim().toLowerCase()))) {
      return { match: false, why: "event names other workflows" };
    }
  }
  const { study } = event;
  const { sources, match, expression } = spec.trigger;

  if (sources?.callingAETitles?.length && !aeIn(study.callingAETitle, sources.callingAETitles)) {
    return { match: false, why: "calling AE title not in trigger.sources" };
  }
  if (sources?.calledAETitles?.length && !aeIn(study.calledAETitle, sources.calledAETitles)) {
    return { match: false, why: "called AE title not in trigger.sources" };
  }

  if (match) {
    let pattern: Pattern | undefined;
    if (match.seriesDescriptionPattern !== undefined) {
      const p = compilePattern(match.seriesDescriptionPattern);
      if (p instanceof Error) return { match: false, error: `trigger.match.seriesDescriptionPattern: ${p.message}` };
      pattern = p;
    }
    if (!study.series.some((s) => seriesMatches(s, match, pattern))) {
      return { match: false, why: "no series meets trigger.match" };
    }
  }

  if (expression !== undefined) {
    let r: ReturnType<ReturnType<typeof cachedBool>>;
    try {
      r = cachedBool(expression)({ study: celStudy(study) });
    } catch (e) {
      return { match: false, error: `trigger.expression does not compile: ${(e as Error).message}` };
    }
    if (!r.ok) return { match: false, error: `trigger.expression: ${r.error}` };
    if (!r.value) return { match: false, why: "trigger.expression is false" };
  }
  return { match: true };
}

export const ANNOTATION_IMPORTED_FROM = "radflow.io/imported-from";
export const ANNOTATION_MONAI_WORKFLOW_IDS = "radflow.io/monai-workflow-ids";

/**
 * The names a MONAI WorkflowRequestEvent's workflows[] may use for this workflow (lower-case):
 * its own name, the MONAI workflow name it was imported from (`monai-deploy:<name>@<version>`),
 * and the MONAI Workflow Manager ids listed in radflow.io/monai-workflow-ids (comma-separated).
 */
export function workflowNames(wf: AIWorkflow): Set<string> {
  const names = new Set<string>([(wf.metadata.name ?? "").toLowerCase()]);
  const a = wf.metadata.annotations ?? {};
  const imported = /^monai-deploy:(.+?)(@[^@]*)?$/.exec(a[ANNOTATION_IMPORTED_FROM] ?? "")?.[1];
  if (imported) names.add(imported.toLowerCase());
  for (const id of (a[ANNOTATION_MONAI_WORKFLOW_IDS] ?? "").split(","))
    if (id.trim()) names.add(id.trim().toLowerCase());
  return names;
}

// AE titles are case-sensitive in DICOM; leading and trailing spaces are padding.
function aeIn(ae: string | undefined, list: readonly string[]): boolean {
  if (ae === undefined) return false;
  const t = ae.trim();
  return list.some((x) => x.trim() === t);
}

type Match = NonNullable<AIWorkflow["spec"]["trigger"]["match"]>;

function seriesMatches(s: SeriesSummary, m: Match, pattern: Pattern | undefined): boolean {
  if (m.modalities?.length && !m.modalities.some((x) => eqFold(x, s.modality))) return false;
  if (m.bodyParts?.length && !m.bodyParts.some((x) => eqFold(x, s.bodyPartExamined))) return false;
  if (m.sopClassUIDs?.length && !(s.sopClassUID && m.sopClassUIDs.includes(s.sopClassUID))) return false;
  if (pattern && !pattern.test(s.seriesDescription ?? "")) return false;
  return true;
}

function eqFold(a: string, b: string | undefined): boolean {
  return b !== undefined && a.trim().toUpperCase() === b.trim().toUpperCase();
}

// RE2 (linear time), cached: src/expr/pattern.ts
const compilePattern = cachedPattern;

// CEL sees the study as the event carries it, with optional fields present as "" / [] so that
// `study.series.exists(s, s.bodyPartExamined == 'HEAD')` does not fail on a series without one.
function celStudy(study: Study): Record<string, unknown> {
  return {
    ...study,
    accessionNumber: study.accessionNumber ?? "",
    studyDescription: study.studyDescription ?? "",
    callingAETitle: study.callingAETitle ?? "",
    calledAETitle: study.calledAETitle ?? "",
    location: study.location ?? "",
    series: study.series.map((s) => ({
      ...s,
      bodyPartExamined: s.bodyPartExamined ?? "",
      seriesDescription: s.seriesDescription ?? "",
      sopClassUID: s.sopClassUID ?? "",
      attributes: s.attributes ?? {},
    })),
  };
}

// --- the task ---------------------------------------------------------------------------------

/** A stable id from parts: hex of their SHA-256, 32 characters. */
export function stableId(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("hex").slice(0, 32);
}

const HASH_LEN = 16; // 64 bits: a name collision (which would drop a study as "already exists") stays negligible
const NAME_MAX = 63;

/**
 * `<workflow>-<hash(workflow uid, event source, event id)>`, at most 63 characters: a redelivered
 * event gives the same name; a new event for the same study, the same id from another source, or
 * the same event for a re-created workflow, gives a new one. The workflow part is truncated to
 * fit; nothing of the study is in it.
 */
export function taskName(workflowName: string, workflowUid: string, event: EventIdentity): string {
  const hash = createHash("sha256")
    .update(workflowUid)
    .update("\0")
    .update(eventKey(event))
    .digest("hex")
    .slice(0, HASH_LEN);
  const prefix = workflowName.slice(0, NAME_MAX - HASH_LEN - 1).replace(/[^a-z0-9]+$/, "");
  return prefix ? `${prefix}-${hash}` : hash;
}

export function buildTask(wf: AIWorkflow, event: StudyEvent): InferenceTask {
  const name = wf.metadata.name ?? "";
  const uid = wf.metadata.uid ?? "";
  const { spec } = wf;
  return {
    apiVersion: "radflow.io/v1alpha1",
    kind: "InferenceTask",
    metadata: {
      name: taskName(name, uid, event),
      namespace: wf.metadata.namespace,
      labels: {
        [LABEL_WORKFLOW]: name,
        [LABEL_PRIORITY]: spec.priority,
        [LABEL_MANAGED_BY]: MANAGED_BY,
      },
      // set now, not by the operator later: one API write less per study
      finalizers: [TASK_FINALIZER],
    },
    spec: {
      workflowRef: { name, uid, generation: wf.metadata.generation ?? 0 },
      priority: spec.priority,
      steps: spec.steps,
      ...(spec.queueTimeoutSeconds !== undefined ? { queueTimeoutSeconds: spec.queueTimeoutSeconds } : {}),
      ...(spec.ttlSecondsAfterFinished !== undefined ? { ttlSecondsAfterFinished: spec.ttlSecondsAfterFinished } : {}),
      ...(spec.storage ? { storage: spec.storage } : {}),
      ...(spec.export ? { export: spec.export } : {}),
      ...(spec.kueue ? { kueue: spec.kueue } : {}),
      study: event.study,
      eventId: event.id,
      eventSource: event.source,
      eventTime: event.time,
      cancel: false,
    },
  };
}
