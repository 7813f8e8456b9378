// The study summary: what routing and step conditions need to know about a study, without
// reading its images. It travels in the study event and is copied into InferenceTask.spec.study,
// one of the few places PHI is allowed to live (docs/ARCHITECTURE.md §7).
import { z } from "zod";
import { AETitle, DicomUID } from "./common.ts";

/** DICOM JSON (PS3.18 F.2) attributes: 8 hex-digit tag -> { vr, Value | BulkDataURI | InlineBinary }. */
export const DicomJsonAttributes = z
  .record(
    z.string().regex(/^[0-9A-F]{8}$/, "DICOM JSON keys are 8 upper-case hex digits"),
    z
      .object({
        vr: z.string().regex(/^[A-Z]{2}$/),
        Value: z.array(z.unknown()).optional(),
        BulkDataURI: z.string().optional(),
        InlineBinary: z.string().optional(),
      })
      .passthrough(),
  )
  .describe("Selected attributes of the series in DICOM JSON form (PS3.18 F.2), keyed by tag.")
  .meta({ "x-kubernetes-preserve-unknown-fields": true });

export const SeriesSummary = z
  .object({
    seriesInstanceUID: DicomUID.describe("SeriesInstanceUID (0020,000E)."),
    modality: z.string().min(1).max(16).describe("Modality (0008,0060), e.g. CT, MR, CR, DX."),
    bodyPartExamined: z.string().max(64).optional().describe("BodyPartExamined (0018,0015), e.g. HEAD, CHEST, HAND."),
    seriesDescription: z
      .string()
      .max(256)
      .optional()
      .describe("SeriesDescription (0008,103E). Free text: may hold PHI."),
    sopClassUID: DicomUID.optional().describe("SOP Class UID of the series' instances (0008,0016)."),
    numberOfInstances: z.number().int().min(0).describe("How many instances the series holds."),
    attributes: DicomJsonAttributes.optional(),
  })
  .describe("One series of the study.");
export type SeriesSummary = z.infer<typeof SeriesSummary>;

export const Study = z
  .object({
    studyInstanceUID: DicomUID.describe("StudyInstanceUID (0020,000D)."),
    accessionNumber: z.string().max(16).optional().describe("AccessionNumber (0008,0050)."),
    studyDescription: z.string().max(256).optional().describe("StudyDescription (0008,1030). Free text: may hold PHI."),
    callingAETitle: AETitle.optional().describe("AE title of the sender (the modality or PACS)."),
    calledAETitle: AETitle.optional().describe("AE title the study was sent to (the gateway)."),
    location: z
      .string()
      .max(1024)
      .optional()
      .describe("Where the study's files are: a path under the workflow's storage, or an s3:// URI."),
    series: z.array(SeriesSummary).max(512).describe("The series of the study."),
  })
  .describe("The study, as summarised by the gateway: identifiers, AE titles, location and series.");
export type Study = z.infer<typeof Study>;
