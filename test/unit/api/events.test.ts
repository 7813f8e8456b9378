import { beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_MAX_EVENT_DEPTH,
  eventKey,
  MONAI_ARTIFACT_TYPES,
  MONAI_EVENT_SOURCE,
  MonaiWorkflowRequestEvent,
  monaiArtifactType,
  monaiModality,
  normalizeTime,
  STUDY_RECEIVED,
  toStudyEvent,
} from "../../../src/api/v1alpha1/events.ts";
import { readShared, withoutShared } from "../../support/shared.ts";

// read lazily: without ../shared the MONAI tests skip and the rest still run
let fixture = "";
const STUDY = "1.2.826.0.1.3680043.2.1125.1.19616861412188316212577695277886020";
const SERIES = "1.2.826.0.1.3680043.2.1125.1.34918616334750294149839565085991567";
const RECEIVED = "2025-01-02T03:04:05.000Z";

function native(over: Record<string, unknown> = {}, data: Record<string, unknown> = {}) {
  return JSON.stringify({
    specversion: "1.0",
    id: "ev-1",
    source: "/gateways/ct-east",
    type: STUDY_RECEIVED,
    time: "2025-03-01T10:00:00+01:00",
    datacontenttype: "application/json",
    data: {
      studyInstanceUID: "1.2.3.4",
      accessionNumber: "ACC123",
      callingAETitle: "CT01",
      calledAETitle: "RADFLOW",
      series: [{ seriesInstanceUID: "1.2.3.4.1", modality: "CT", bodyPartExamined: "HEAD", numberOfInstances: 120 }],
      ...data,
    },
    ...over,
  });
}

describe.skipIf(withoutShared(import.meta.filename))("MONAI WorkflowRequestEvent", () => {
  beforeAll(() => {
    fixture = readShared("fixtures/monai/workflow-request.event.json");
  });

  it("parses the fixture as it is", () => {
    expect(MonaiWorkflowRequestEvent.safeParse(JSON.parse(fixture)).success).toBe(true);
  });

  it("becomes a StudyEvent keyed by payload_id, with the study and series from the payload paths", () => {
    const r = toStudyEvent(fixture, RECEIVED);
    expect(r).toEqual({
      ok: true,
      event: {
        id: "5c1e2f1a-6b1d-4c55-9a55-1f8a1c2d3e4f",
        source: MONAI_EVENT_SOURCE,
        time: "2023-10-25T00:51:52.123Z",
        format: "monai",
        study: {
          studyInstanceUID: STUDY,
          callingAETitle: "ORTHANC",
          calledAETitle: "MONAI-DEPLOY",
          location: "s3://monaideploy/5c1e2f1a-6b1d-4c55-9a55-1f8a1c2d3e4f",
          series: [{ seriesInstanceUID: SERIES, modality: "CT", numberOfInstances: 2 }],
        },
      },
    });
  });

  it("accepts the older form with calling_aetitle / called_aetitle and restricts routing to workflows[]", () => {
    const ev = JSON.parse(fixture);
    delete ev.trigger;
    ev.calling_aetitle = "PACS1";
    ev.called_aetitle = "MIG";
    ev.workflows = ["liver-seg", ""];
    ev.timestamp = "2023-10-25T00:51:52"; // .NET DateTime without a zone: read as UTC
    const r = toStudyEvent(JSON.stringify(ev), RECEIVED);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.event.study.callingAETitle).toBe("PACS1");
    expect(r.event.study.calledAETitle).toBe("MIG");
    expect(r.event.workflows).toEqual(["liver-seg"]);
    expect(r.event.time).toBe("2023-10-25T00:51:52.000Z");
    expect(r.event.study.series[0]?.modality).toBe("OT"); // no artifactType: modality unknown
  });

  it("does not take AE titles from a non-DICOM trigger", () => {
    const ev = JSON.parse(fixture);
    ev.trigger = { dataService: 3, source: "10.0.0.7", destination: "fhir", artifactType: 30 };
    const r = toStudyEvent(JSON.stringify(ev), RECEIVED);
    expect(r.ok && r.event.study.callingAETitle).toBeUndefined();
    expect(r.ok && r.event.study.series[0]?.modality).toBe("MR");
  });

  it.each([
    ["payload with no DICOM paths", { payload: [{ path: "hl7/msg.txt", metadata: null }] }, "monai-no-dicom"],
    [
      "payload with two studies",
      { payload: [{ path: "dcm/1.2/1.2.1/1.2.1.1.dcm" }, { path: "dcm/1.3/1.3.1/1.3.1.1.dcm" }] },
      "monai-multiple-studies",
    ],
    ["a resume event", { workflow_instance_id: "wi-1" }, "monai-resume-unsupported"],
    ["payload_id not a GUID", { payload_id: "nope" }, "invalid-monai"],
    ["empty payload", { payload: [] }, "invalid-monai"],
    ["no timestamp", { timestamp: undefined }, "invalid-monai"],
  ])("rejects %s", (_what, patch, reason) => {
    const ev = { ...JSON.parse(fixture), ...patch };
    const r = toStudyEvent(JSON.stringify(ev), RECEIVED);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });

  it("maps artifact types both ways as MONAI numbers them (CT 10, MR 30)", () => {
    expect(monaiModality(10)).toBe("CT");
    expect(monaiModality(30)).toBe("MR");
    expect(monaiModality(0)).toBeUndefined();
    expect(monaiModality(1)).toBeUndefined(); // Folder
    expect(monaiModality(999)).toBeUndefined();
    expect(monaiArtifactType("ct")).toBe(10);
    expect(monaiArtifactType("XYZ")).toBe(0);
    expect(MONAI_ARTIFACT_TYPES.at(-1)).toBe("XC");
  });
});

describe("CloudEvents study event", () => {
  it("becomes a StudyEvent with the CloudEvent id and UTC time", () => {
    const r = toStudyEvent(new TextEncoder().encode(native()), RECEIVED);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.event.id).toBe("ev-1");
    expect(r.event.source).toBe("/gateways/ct-east");
    expect(r.event.time).toBe("2025-03-01T09:00:00.000Z");
    expect(r.event.format).toBe("cloudevents");
    expect(r.event.workflows).toBeUndefined();
    expect(r.event.study.series[0]?.bodyPartExamined).toBe("HEAD");
  });

  it("takes the stored time when the event has none, and allows extension attributes", () => {
    const r = toStudyEvent(native({ time: undefined, traceparent: "00-abc-def-01" }), RECEIVED);
    expect(r.ok && r.event.time).toBe(RECEIVED);
  });

  it.each([
    ["not JSON", "{nope", "malformed-json"],
    ["not UTF-8", new Uint8Array([0xff, 0xfe, 0x00]), "malformed-json"],
    ["a JSON array", "[1,2]", "unknown-format"],
    ["an object of neither format", '{"hello":"world"}', "unknown-format"],
    ["another CloudEvent type", native({ type: "com.example.other" }), "unexpected-type"],
    ["CloudEvents 0.3", native({ specversion: "0.3" }), "invalid-cloudevent"],
    ["no id", native({ id: "" }), "invalid-cloudevent"],
    ["a bad time", native({ time: "yesterday" }), "invalid-cloudevent"],
    ["a time without a zone", native({ time: "2025-03-01T10:00:00" }), "invalid-cloudevent"],
    ["XML data", native({ datacontenttype: "application/xml" }), "invalid-cloudevent"],
    ["a study UID that is not a UID", native({}, { studyInstanceUID: "DOE^JOHN" }), "invalid-cloudevent"],
    ["no series", native({}, { series: undefined }), "invalid-cloudevent"],
    ["an AE title too long", native({}, { callingAETitle: "A".repeat(17) }), "invalid-cloudevent"],
  ])("rejects %s", (_what, payload, reason) => {
    const r = toStudyEvent(payload, RECEIVED);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });

  it("never echoes field values into the rejection detail", () => {
    const r = toStudyEvent(
      native({ type: "DOE^JOHN" }, { studyInstanceUID: "SMITH^JANE", accessionNumber: "X".repeat(40) }),
      RECEIVED,
    );
    expect(r.ok).toBe(false);
    const r2 = toStudyEvent(native({}, { studyInstanceUID: "SMITH^JANE", accessionNumber: "Y".repeat(40) }), RECEIVED);
    expect(r2.ok).toBe(false);
    if (r.ok || r2.ok) return;
    for (const d of [r.detail, r2.detail]) {
      expect(d).not.toMatch(/DOE|SMITH|XXXX|YYYY/);
    }
    expect(r2.detail).toMatch(/data\.studyInstanceUID/);
    expect(r2.detail).toMatch(/data\.accessionNumber/);
  });
});

describe("normalizeTime", () => {
  it.each([
    ["2023-10-25T00:51:52.1234567Z", "2023-10-25T00:51:52.123Z"],
    ["2023-10-25T02:51:52+02:00", "2023-10-25T00:51:52.000Z"],
    ["2023-10-25T00:51:52", "2023-10-25T00:51:52.000Z"],
  ])("%s → %s", (a, b) => expect(normalizeTime(a)).toBe(b));
});

describe("event identity (CloudEvents: source + id)", () => {
  it("is the same for a resend and different for the same id from another source", () => {
    const a = toStudyEvent(native(), RECEIVED);
    const resend = toStudyEvent(native({ time: "2025-03-01T11:00:00Z" }), RECEIVED);
    const other = toStudyEvent(native({ source: "/gateways/mr-west" }, { studyInstanceUID: "9.8.7" }), RECEIVED);
    if (!a.ok || !resend.ok || !other.ok) throw new Error("events do not parse");
    expect(eventKey(resend.event)).toBe(eventKey(a.event));
    expect(eventKey(other.event)).not.toBe(eventKey(a.event));
    expect(eventKey(a.event)).toMatch(/^[0-9a-f]{32}$/);
  });

  it("does not let characters move between source and id", () => {
    expect(eventKey({ source: "/a", id: "b1" })).not.toBe(eventKey({ source: "/ab", id: "1" }));
  });
});

describe("payload limits, checked before parsing", () => {
  it("refuses an event nested 200,000 levels deep with a clear reason", () => {
    const depth = 200_000;
    const deep = `${"[".repeat(depth)}${"]".repeat(depth)}`;
    const payload = native({}).replace('"data":{', `"deep":${deep},"data":{`);
    const t0 = performance.now();
    const r = toStudyEvent(payload, RECEIVED);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(r).toEqual({ ok: false, reason: "too-deep", detail: expect.stringMatching(/more than 64 levels/) });
  });

  it("refuses deep nesting inside the study's DICOM JSON attributes too", () => {
    let v: unknown = "x";
    for (let i = 0; i < DEFAULT_MAX_EVENT_DEPTH; i++) v = { [`k${i}`]: v };
    const series = [
      {
        seriesInstanceUID: "1.2.3.4.1",
        modality: "CT",
        numberOfInstances: 1,
        attributes: { "00081032": { vr: "SQ", Value: [v] } },
      },
    ];
    const r = toStudyEvent(native({}, { series }), RECEIVED);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe("too-deep");
  });

  it("does not count brackets inside strings, escaped quotes included", () => {
    const desc = `${"[{".repeat(100)}\\" ${"[".repeat(100)}`;
    const r = toStudyEvent(native({}, { studyDescription: desc.slice(0, 256) }), RECEIVED);
    expect(r.ok).toBe(true);
  });

  it("refuses a payload over the size limit without parsing it", () => {
    const big = native({ padding: "x".repeat(2 * 1024 * 1024) });
    const r = toStudyEvent(big, RECEIVED);
    expect(r).toEqual({ ok: false, reason: "too-large", detail: expect.stringMatching(/at most 1048576/) });
    const small = toStudyEvent(native(), RECEIVED, { maxBytes: 100 });
    expect(small.ok === false && small.reason).toBe("too-large");
  });
});
