// The part of dcmjs radflow uses (dcmjs ships no types).
declare module "dcmjs" {
  export interface DicomJsonElement {
    vr?: string;
    Value?: unknown[];
    InlineBinary?: string;
    BulkDataURI?: string;
    _rawValue?: unknown;
  }
  export type DicomJsonDict = Record<string, DicomJsonElement>;
  export interface ReadOptions {
    untilTag?: string;
    includeUntilTagValue?: boolean;
    ignoreErrors?: boolean;
  }
  export class DicomDict {
    constructor(meta: DicomJsonDict);
    meta: DicomJsonDict;
    dict: DicomJsonDict;
    write(options?: Record<string, unknown>): ArrayBuffer;
  }
  interface Data {
    DicomDict: typeof DicomDict;
    DicomMessage: { readFile(buffer: ArrayBuffer, options?: ReadOptions): DicomDict };
    DicomMetaDictionary: {
      naturalizeDataset(dict: DicomJsonDict): Record<string, unknown>;
      denaturalizeDataset(dataset: Record<string, unknown>): DicomJsonDict;
      uid(): string;
    };
  }
  const dcmjs: { data: Data; log: { setLevel(level: string): void } };
  export default dcmjs;
}
