// The DICOM SR radflow writes for a step whose model wrote no DICOM files: a Comprehensive SR
// (PS3.3 A.35.3) in the source study. Patient and study attributes are copied from a received
// instance's header, the source series and instances are referenced (Current Requested Procedure
// Evidence), the model is the observer device (TID 1004: name, model = image, UID), and each key
// of the step's outputs is one content item: a boolean as CODE (Yes/No), a number as NUM, text
// as TEXT. The SOP Instance and Series UIDs are derived from the task's uid and the step, and the
// content's time from the task's completion, so a retry after a crash sends the same instance
// again (same bytes) and the PACS keeps one.
import { createHash } from "node:crypto";
import dcmjs, { type DicomJsonDict } from "dcmjs";

const { DicomDict, DicomMetaDictionary } = dcmjs.data;

export const COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33";
const EXPLICIT_LE = "1.2.840.10008.1.2.1";
/** radflow's implementation class UID (the gateway's, src/gateway/part10.ts). */
const IMPLEMENTATION_CLASS_UID = "2.25.190285853337459428516839735785196473162";
/** Output keys that are plumbing, not findings. */
const NOT_FINDINGS = new Set(["files", "resultLocation"]);
const MAX_REFERENCES = 20_000;
const MAX_FINDINGS = 64;

/** Patient and general study attributes copied from the source (PS3.3 C.7.1.1, C.7.2.1). */
export const COPIED_TAGS = [
  "00100010", // PatientName
  "00100020", // PatientID
  "00100021", // IssuerOfPatientID
  "00100030", // PatientBirthDate
  "00100040", // PatientSex
  "0020000D", // StudyInstanceUID
  "00080020", // StudyDate
  "00080030", // StudyTime
  "00080090", // ReferringPhysicianName
  "00200010", // StudyID
  "00080050", // AccessionNumber
  "00081030", // StudyDescription
] as const;

export interface SourceInstance {
  seriesInstanceUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
}

export interface SrInput {
  taskUid: string;
  workflow: string;
  step: string;
  /** the model's container image */
  image?: string;
  outputs: Record<string, unknown>;
  studyInstanceUID: string;
  /** a received instance's header (DICOM JSON), for patient and study attributes */
  source?: DicomJsonDict;
  references: SourceInstance[];
  /** when the finding was made (the task's completion); the content date and time */
  time: Date;
}

export interface BuiltSR {
  bytes: Uint8Array;
  sopClassUID: string;
  sopInstanceUID: string;
  seriesInstanceUID: string;
}

/** A UID under 2.25 (PS3.5 B.2) from a hash of the parts: the same parts, the same UID. */
export function derivedUID(...parts: string[]): string {
  const h = createHash("sha256").update(parts.join("\0")).digest();
  return `2.25.${BigInt(`0x${h.subarray(0, 16).toString("hex")}`).toString(10)}`;
}

const code = (value: string, scheme: string, meaning: string) => ({
  CodeValue: value,
  CodingSchemeDesignator: scheme,
  CodeMeaning: meaning,
});

// A finding's concept: radflow's private coding scheme with the output key as its meaning (a
// CodeValue holds 16 characters; longer keys get a short hash).
function keyConcept(key: string) {
  const value = key.length <= 16 ? key : createHash("sha256").update(key).digest("hex").slice(0, 16);
  return code(value, "99RADFLOW", key.slice(0, 64));
}

function dicomDate(d: Date): string {
  return d.toISOString().slice(0, 10).replaceAll("-", "");
}
function dicomTime(d: Date): string {
  return d.toISOString().slice(11, 19).replaceAll(":", "");
}

function findingItem(key: string, value: unknown): Record<string, unknown> {
  const base = { RelationshipType: "CONTAINS", ConceptNameCodeSequence: [keyConcept(key)] };
  if (typeof value === "boolean") {
    return {
      ...base,
      ValueType: "CODE",
      ConceptCodeSequence: [value ? code("373066001", "SCT", "Yes") : code("373067005", "SCT", "No")],
    };
  }
  if (typeof value === "number" && Number.isFinite(value)) {
    return {
      ...base,
      ValueType: "NUM",
      MeasuredValueSequence: [
        {
          // DS holds 16 characters
          NumericValue: Number(value.toPrecision(10)).toString().slice(0, 16),
          MeasurementUnitsCodeSequence: [code("1", "UCUM", "no units")],
        },
      ],
    };
  }
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return { ...base, ValueType: "TEXT", TextValue: text.slice(0, 4096) };
}

/** Builds the SR as a Part-10 file (explicit VR little endian). */
export function buildSR(input: SrInput): BuiltSR {
  const sopInstanceUID = derivedUID("radflow-sr", input.taskUid, input.step);
  const seriesInstanceUID = derivedUID("radflow-sr-series", input.taskUid, input.step);
  const observerUID = derivedUID("radflow-observer", input.workflow, input.step, input.image ?? "");
  const bySeries = new Map<string, SourceInstance[]>();
  for (const r of input.references.slice(0, MAX_REFERENCES)) {
    bySeries.set(r.seriesInstanceUID, [...(bySeries.get(r.seriesInstanceUID) ?? []), r]);
  }
  const findings = Object.entries(input.outputs)
    .filter(([k]) => !NOT_FINDINGS.has(k))
    .slice(0, MAX_FINDINGS);
  const observer = (concept: ReturnType<typeof code>, item: Record<string, unknown>) => ({
    RelationshipType: "HAS OBS CONTEXT",
    ConceptNameCodeSequence: [concept],
    ...item,
  });
  const dataset: Record<string, unknown> = {
    SpecificCharacterSet: "ISO_IR 192",
    SOPClassUID: COMPREHENSIVE_SR,
    SOPInstanceUID: sopInstanceUID,
    InstanceCreationDate: dicomDate(input.time),
    InstanceCreationTime: dicomTime(input.time),
    Modality: "SR",
    SeriesInstanceUID: seriesInstanceUID,
    SeriesNumber: "9901",
    SeriesDescription: `radflow ${input.workflow}/${input.step}`.slice(0, 64),
    InstanceNumber: "1",
    Manufacturer: "radflow",
    ManufacturerModelName: (input.image ?? input.step).slice(0, 64),
    SoftwareVersions: "radflow",
    ReferencedPerformedProcedureStepSequence: [],
    PerformedProcedureCodeSequence: [],
    ContentDate: dicomDate(input.time),
    ContentTime: dicomTime(input.time),
    CompletionFlag: "COMPLETE",
    VerificationFlag: "UNVERIFIED",
    ValueType: "CONTAINER",
    ConceptNameCodeSequence: [code("18748-4", "LN", "Diagnostic imaging report")],
    ContinuityOfContent: "SEPARATE",
    CurrentRequestedProcedureEvidenceSequence: [
      {
        StudyInstanceUID: input.studyInstanceUID,
        ReferencedSeriesSequence: [...bySeries].map(([series, refs]) => ({
          SeriesInstanceUID: series,
          ReferencedSOPSequence: refs.map((r) => ({
            ReferencedSOPClassUID: r.sopClassUID,
            ReferencedSOPInstanceUID: r.sopInstanceUID,
          })),
        })),
      },
    ],
    ContentSequence: [
      observer(code("121005", "DCM", "Observer Type"), {
        ValueType: "CODE",
        ConceptCodeSequence: [code("121007", "DCM", "Device")],
      }),
      observer(code("121012", "DCM", "Device Observer UID"), { ValueType: "UIDREF", UID: observerUID }),
      observer(code("121013", "DCM", "Device Observer Name"), {
        ValueType: "TEXT",
        TextValue: `${input.workflow}/${input.step}`,
      }),
      observer(code("121014", "DCM", "Device Observer Manufacturer"), { ValueType: "TEXT", TextValue: "radflow" }),
      observer(code("121015", "DCM", "Device Observer Model Name"), {
        ValueType: "TEXT",
        TextValue: input.image ?? input.step,
      }),
      ...findings.map(([k, v]) => findingItem(k, v)),
    ],
  };
  const dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  // patient and study attributes exactly as received (no re-encoding of names or dates)
  for (const tag of COPIED_TAGS) {
    const el = input.source?.[tag];
    if (el) dict[tag] = { vr: el.vr, ...(el.Value !== undefined ? { Value: el.Value } : {}) };
  }
  // type 2 attributes that must be present, empty when the source had none
  for (const [tag, vr] of [
    ["00100010", "PN"],
    ["00100020", "LO"],
    ["00100030", "DA"],
    ["00100040", "CS"],
    ["00080020", "DA"],
    ["00080030", "TM"],
    ["00080090", "PN"],
    ["00200010", "SH"],
    ["00080050", "SH"],
  ] as const) {
    dict[tag] ??= { vr, Value: [] };
  }
  dict["0020000D"] = { vr: "UI", Value: [input.studyInstanceUID] };
  const meta: DicomJsonDict = DicomMetaDictionary.denaturalizeDataset({
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: COMPREHENSIVE_SR,
    MediaStorageSOPInstanceUID: sopInstanceUID,
    TransferSyntaxUID: EXPLICIT_LE,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: "RADFLOW_01",
  });
  const file = new DicomDict(meta);
  file.dict = dict;
  return {
    bytes: new Uint8Array(file.write()),
    sopClassUID: COMPREHENSIVE_SR,
    sopInstanceUID,
    seriesInstanceUID,
  };
}
