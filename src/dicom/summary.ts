// DICOM headers → the Study summary of the study event: instances grouped by study and series,
// with the few attributes routing needs and a small set of technical attributes (never patient
// data) in DICOM JSON form for trigger expressions.
import type { DicomJsonDict } from "dcmjs";
import { describeIssues } from "../api/v1alpha1/events.ts";
import { type SeriesSummary, Study } from "../api/v1alpha1/study.ts";
import type { DicomHeader } from "./header.ts";

/** Technical attributes copied into each series' `attributes` (tags), all classified safe in phi.ts. */
export const SUMMARY_ATTRIBUTES: readonly string[] = [
  "00080008", // ImageType
  "00080060", // Modality
  "00080070", // Manufacturer
  "00081090", // ManufacturerModelName
  "00180010", // ContrastBolusAgent
  "00180015", // BodyPartExamined
  "00180050", // SliceThickness
  "00180060", // KVP
  "00181210", // ConvolutionKernel
  "00280008", // NumberOfFrames
  "00280010", // Rows
  "00280011", // Columns
  "00280030", // PixelSpacing
];

export interface StudyContext {
  callingAETitle?: string;
  calledAETitle?: string;
  location?: string;
}

export type SummaryResult = { ok: true; study: Study } | { ok: false; studyInstanceUID: string; error: string };

const str = (v: unknown): string | undefined => {
  if (typeof v === "string") {
    const t = v.replace(/\0/g, "").trim();
    return t || undefined;
  }
  if (typeof v === "number") return String(v);
  return undefined;
};

/** The instance-level identifiers of a header, or why it cannot join a study. */
export function identify(h: DicomHeader): { study: string; series: string; sop: string } | string {
  const d = h.dataset;
  const study = str(d.StudyInstanceUID);
  const series = str(d.SeriesInstanceUID);
  const sop = str(d.SOPInstanceUID);
  if (!study) return "no StudyInstanceUID";
  if (!series) return "no SeriesInstanceUID";
  if (!sop) return "no SOPInstanceUID";
  return { study, series, sop };
}

const SUMMARY_KEYWORDS = [
  "StudyInstanceUID",
  "SeriesInstanceUID",
  "SOPInstanceUID",
  "SOPClassUID",
  "AccessionNumber",
  "StudyDescription",
  "Modality",
  "BodyPartExamined",
  "SeriesDescription",
];

/** The header cut down to what summarizeStudies reads, to keep many thousands in memory. */
export function trimHeader(h: DicomHeader): DicomHeader {
  const dataset: Record<string, unknown> = {};
  for (const k of SUMMARY_KEYWORDS) if (h.dataset[k] !== undefined) dataset[k] = h.dataset[k];
  const dict: DicomJsonDict = {};
  for (const t of SUMMARY_ATTRIBUTES) if (h.dict[t]) dict[t] = h.dict[t];
  return { dict, dataset };
}

/**
 * Groups headers by study and series and builds each study's summary, validated against the
 * Study schema. Instances seen twice (same SOP Instance UID) count once. Headers without the
 * study/series/instance UIDs are left out (use identify() to report them).
 */
export function summarizeStudies(headers: readonly DicomHeader[], ctx: StudyContext = {}): SummaryResult[] {
  const studies = new Map<string, Map<string, DicomHeader[]>>();
  const seen = new Set<string>();
  for (const h of headers) {
    const id = identify(h);
    if (typeof id === "string" || seen.has(id.sop)) continue;
    seen.add(id.sop);
    const series = studies.get(id.study) ?? new Map<string, DicomHeader[]>();
    studies.set(id.study, series);
    const list = series.get(id.series) ?? [];
    series.set(id.series, list);
    list.push(h);
  }
  const out: SummaryResult[] = [];
  for (const [studyUID, seriesMap] of studies) {
    const first = [...seriesMap.values()][0]?.[0]?.dataset ?? {};
    const series: SeriesSummary[] = [...seriesMap].map(([uid, hs]) => seriesSummary(uid, hs));
    const r = Study.safeParse({
      studyInstanceUID: studyUID,
      accessionNumber: str(first.AccessionNumber),
      studyDescription: str(first.StudyDescription),
      callingAETitle: ctx.callingAETitle,
      calledAETitle: ctx.calledAETitle,
      location: ctx.location,
      series,
    });
    out.push(
      r.success
        ? { ok: true, study: r.data }
        : { ok: false, studyInstanceUID: studyUID, error: describeIssues(r.error) },
    );
  }
  return out;
}

function seriesSummary(uid: string, hs: DicomHeader[]): SeriesSummary {
  const d = (hs[0] as DicomHeader).dataset;
  // a series may mix SOP classes (e.g. images and a localizer); report the most common
  const counts = new Map<string, number>();
  for (const h of hs) {
    const c = str(h.dataset.SOPClassUID);
    if (c) counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  const sopClassUID = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
  const attributes = pickAttributes((hs[0] as DicomHeader).dict);
  return {
    seriesInstanceUID: uid,
    modality: str(d.Modality) ?? "OT",
    ...(str(d.BodyPartExamined) ? { bodyPartExamined: str(d.BodyPartExamined) } : {}),
    ...(str(d.SeriesDescription) ? { seriesDescription: str(d.SeriesDescription) } : {}),
    ...(sopClassUID ? { sopClassUID } : {}),
    numberOfInstances: hs.length,
    ...(Object.keys(attributes).length ? { attributes } : {}),
  };
}

function pickAttributes(dict: DicomJsonDict): NonNullable<SeriesSummary["attributes"]> {
  const out: NonNullable<SeriesSummary["attributes"]> = {};
  for (const tag of SUMMARY_ATTRIBUTES) {
    const el = dict[tag];
    if (!el?.vr || !el.Value?.length) continue;
    out[tag] = { vr: el.vr, Value: el.Value };
  }
  return out;
}
