// Orthanc as the tests' PACS: the demo starts it too, so the code lives in hack/orthanc.ts.
export { type Orthanc, orthancAvailable, startOrthanc } from "../../hack/orthanc.ts";
