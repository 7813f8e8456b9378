// What of a DICOM header may be shown in a log, a metric or a terminal without consent
// (docs/ARCHITECTURE.md §7). Default-deny: an attribute is loggable only
// when it is listed as safe here; everything else is masked.
import type { Study } from "../api/v1alpha1/study.ts";
import { studyRef } from "../log/logger.ts";

export type PhiClass =
  | "identifier" // names, IDs, UIDs, accession, addresses, institution, station, device serial
  | "quasi-identifier" // sex, age, size, weight: identifying in combination
  | "date" // dates and times (HIPAA identifiers)
  | "free-text" // descriptions and comments may hold names
  | "safe" // technical, loggable
  | "unknown"; // not classified: treated as PHI

const T: Record<string, [keyword: string, cls: PhiClass]> = {
  "00080016": ["SOPClassUID", "safe"],
  "00020010": ["TransferSyntaxUID", "safe"],
  "00020002": ["MediaStorageSOPClassUID", "safe"],
  "00080008": ["ImageType", "safe"],
  "00080060": ["Modality", "safe"],
  "00080070": ["Manufacturer", "safe"],
  "00081090": ["ManufacturerModelName", "safe"],
  "00180010": ["ContrastBolusAgent", "safe"],
  "00180015": ["BodyPartExamined", "safe"],
  "00180050": ["SliceThickness", "safe"],
  "00180060": ["KVP", "safe"],
  "00181210": ["ConvolutionKernel", "safe"],
  "00280002": ["SamplesPerPixel", "safe"],
  "00280004": ["PhotometricInterpretation", "safe"],
  "00280008": ["NumberOfFrames", "safe"],
  "00280010": ["Rows", "safe"],
  "00280011": ["Columns", "safe"],
  "00280030": ["PixelSpacing", "safe"],
  "00280100": ["BitsAllocated", "safe"],
  "00280101": ["BitsStored", "safe"],

  "00100010": ["PatientName", "identifier"],
  "00100020": ["PatientID", "identifier"],
  "00100021": ["IssuerOfPatientID", "identifier"],
  "00101000": ["OtherPatientIDs", "identifier"],
  "00101001": ["OtherPatientNames", "identifier"],
  "00101040": ["PatientAddress", "identifier"],
  "00102154": ["PatientTelephoneNumbers", "identifier"],
  "00080050": ["AccessionNumber", "identifier"],
  "00080018": ["SOPInstanceUID", "identifier"],
  "0020000D": ["StudyInstanceUID", "identifier"],
  "0020000E": ["SeriesInstanceUID", "identifier"],
  "00200052": ["FrameOfReferenceUID", "identifier"],
  "00200010": ["StudyID", "identifier"],
  "00080080": ["InstitutionName", "identifier"],
  "00080081": ["InstitutionAddress", "identifier"],
  "00080090": ["ReferringPhysicianName", "identifier"],
  "00081050": ["PerformingPhysicianName", "identifier"],
  "00081070": ["OperatorsName", "identifier"],
  "00081010": ["StationName", "identifier"],
  "00181000": ["DeviceSerialNumber", "identifier"],

  "00100040": ["PatientSex", "quasi-identifier"],
  "00101010": ["PatientAge", "quasi-identifier"],
  "00101020": ["PatientSize", "quasi-identifier"],
  "00101030": ["PatientWeight", "quasi-identifier"],

  "00081030": ["StudyDescription", "free-text"],
  "0008103E": ["SeriesDescription", "free-text"],
  "00181030": ["ProtocolName", "free-text"],
  "00204000": ["ImageComments", "free-text"],
  "001021B0": ["AdditionalPatientHistory", "free-text"],
};

const BY_KEYWORD = new Map(Object.entries(T).map(([tag, [kw, cls]]) => [kw, { tag, cls }]));

/** Classifies an attribute by tag (8 hex digits) and VR; unlisted attributes fall back on the VR. */
export function classify(tag: string, vr?: string): PhiClass {
  const known = T[tag.toUpperCase()];
  if (known) return known[1];
  if (tag.startsWith("0010")) return "identifier"; // the Patient group
  switch (vr) {
    case "PN":
    case "UI":
      return "identifier";
    case "DA":
    case "DT":
    case "TM":
      return "date";
    case "LO":
    case "LT":
    case "SH":
    case "ST":
    case "UT":
      return "free-text";
    default:
      return "unknown";
  }
}

export function classifyKeyword(keyword: string): PhiClass {
  return BY_KEYWORD.get(keyword)?.cls ?? "unknown";
}

/** May this attribute appear in a log, a metric label or a masked printout? */
export function isLoggable(tag: string, vr?: string): boolean {
  return classify(tag, vr) === "safe";
}

export const MASK = "***";

/**
 * The study with identifiers and free text masked, for showing on a terminal: UIDs become a
 * keyed reference (`ref`, by default as in radflow's logs), other PHI becomes ***, and only
 * safe attributes keep their values.
 */
export function maskStudy(study: Study, ref: (uid: string) => string = studyRef): Study {
  return {
    ...study,
    studyInstanceUID: ref(study.studyInstanceUID),
    ...(study.accessionNumber !== undefined ? { accessionNumber: MASK } : {}),
    ...(study.studyDescription !== undefined ? { studyDescription: MASK } : {}),
    series: study.series.map((s) => ({
      ...s,
      seriesInstanceUID: ref(s.seriesInstanceUID),
      ...(s.seriesDescription !== undefined ? { seriesDescription: MASK } : {}),
      ...(s.attributes
        ? {
            attributes: Object.fromEntries(
              Object.entries(s.attributes).map(([tag, el]) =>
                isLoggable(tag, el.vr) ? [tag, el] : [tag, { vr: el.vr, Value: [MASK] }],
              ),
            ),
          }
        : {}),
    })),
  };
}
