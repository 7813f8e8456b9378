// Orthanc as the tests' PACS: the demo starts it too, so the code lives in hack/orthanc.ts.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { Orthanc } from "../../hack/orthanc.ts";

export { type Orthanc, orthancAvailable, startOrthanc } from "../../hack/orthanc.ts";

export interface PacsInstance {
  /** Orthanc's id (for orthanc.file) */
  id: string;
  sop: string;
  modality: string;
}

/** What the PACS holds of a study (by its Study Instance UID), read through Orthanc's REST API. */
export async function pacsInstances(orthanc: Orthanc, study: string): Promise<PacsInstance[]> {
  const out: PacsInstance[] = [];
  for (const id of await orthanc.get<string[]>("/studies")) {
    const s = await orthanc.get<{ MainDicomTags: { StudyInstanceUID: string } }>(`/studies/${id}`);
    if (s.MainDicomTags.StudyInstanceUID !== study) continue;
    const inst = await orthanc.get<{ ID: string; MainDicomTags: { SOPInstanceUID: string }; ParentSeries: string }[]>(
      `/studies/${id}/instances`,
    );
    for (const i of inst) {
      const series = await orthanc.get<{ MainDicomTags: { Modality: string } }>(`/series/${i.ParentSeries}`);
      out.push({ id: i.ID, sop: i.MainDicomTags.SOPInstanceUID, modality: series.MainDicomTags.Modality });
    }
  }
  return out;
}

/**
 * An instance the PACS holds, read back by dcmtk (a reader nobody here wrote): its file, kept in
 * `dir` (the test's work directory), and what `dsrdump +Pl` (an SR) or `dcmdump` (anything else) says.
 */
export async function dumpHeld(
  orthanc: Orthanc,
  held: PacsInstance | undefined,
  dir: string,
): Promise<{ file: string; text: string }> {
  if (!held) throw new Error("the PACS does not hold the instance");
  const file = path.join(dir, `${held.modality.toLowerCase()}.dcm`);
  writeFileSync(file, await orthanc.file(held.id));
  const text =
    held.modality === "SR"
      ? execFileSync("dsrdump", ["+Pl", file]).toString()
      : execFileSync("dcmdump", [file]).toString();
  return { file, text };
}
