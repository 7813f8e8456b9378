// Writes real DICOM Part-10 files for tests (dcmjs's writer): explicit VR little endian, with
// pixel data, so that reading the header must stop before it.
import { writeFileSync } from "node:fs";
import dcmjs from "dcmjs";

const { DicomDict, DicomMetaDictionary } = dcmjs.data;

export const CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2";
export const MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4";

export interface Instance {
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  SOPInstanceUID: string;
  SOPClassUID?: string;
  Modality?: string;
  [keyword: string]: unknown;
}

/** A Part-10 file as bytes; `pixels` is the pixel count (16-bit) of a square-ish image. */
export function dicomBytes(inst: Instance, pixels = 16): Uint8Array {
  const sopClass = inst.SOPClassUID ?? CT_IMAGE;
  const meta = DicomMetaDictionary.denaturalizeDataset({
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClass,
    MediaStorageSOPInstanceUID: inst.SOPInstanceUID,
    TransferSyntaxUID: "1.2.840.10008.1.2.1",
    ImplementationClassUID: "1.2.826.0.1.3680043.9.7433.1",
  });
  const dict = new DicomDict(meta);
  dict.dict = DicomMetaDictionary.denaturalizeDataset({
    PatientName: "DOE^JOHN",
    PatientID: "PID-0001",
    PatientBirthDate: "19700101",
    Modality: "CT",
    SOPClassUID: sopClass,
    Rows: 1,
    Columns: pixels,
    BitsAllocated: 16,
    BitsStored: 16,
    HighBit: 15,
    PixelRepresentation: 0,
    SamplesPerPixel: 1,
    PhotometricInterpretation: "MONOCHROME2",
    ...inst,
    PixelData: new Uint16Array(pixels).buffer,
    _vrMap: { PixelData: "OW" },
  });
  return new Uint8Array(dict.write());
}

export function writeDicom(path: string, inst: Instance, pixels = 16): void {
  writeFileSync(path, dicomBytes(inst, pixels));
}
