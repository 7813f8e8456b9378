// The API server profile's summary: `go tool pprof -traces` text → area shares and self frames.
import { describe, expect, it } from "vitest";
import { perStudyLine, profileRow, summarizeTraces } from "../../../bench/lib/apiserver-profile.ts";

const SEP = "-----------+-------------------------------------------------------";
const traces = [
  "File: kube-apiserver",
  "Type: cpu",
  "Duration: 8s, Total samples = 100ms ( 1.25%)",
  SEP,
  "      60ms   encoding/json.(*decodeState).object",
  "             encoding/json.Unmarshal",
  "             k8s.io/apiextensions-apiserver/pkg/apiserver/validation.ValidateCustomResource",
  "             k8s.io/apiserver/pkg/endpoints/handlers.CreateResource.createHandler.func1",
  "             net/http.serverHandler.ServeHTTP",
  SEP,
  "      30ms   crypto/tls.(*Conn).Write (inline)",
  "             k8s.io/apiserver/pkg/endpoints/handlers.(*WatchServer).HandleHTTP",
  "             net/http.serverHandler.ServeHTTP",
  SEP,
  "    1.00ms   runtime.gcBgMarkWorker",
  SEP,
  "     9ms   runtime.futex",
  "",
].join("\n");

describe("summarizeTraces", () => {
  it("adds each sample to every area its stack passes through, and to its leaf's self time", () => {
    const s = summarizeTraces(traces);
    expect(s.cpuSeconds).toBe(0.1);
    const area = (name: string) => s.areas.find((a) => a.frame === name)?.pct;
    expect(area("creates")).toBe(60);
    expect(area("JSON decode")).toBe(60);
    expect(area("CRD schema: decode, coerce, validate")).toBe(60);
    expect(area("watches (etcd → cache → encode → send)")).toBe(30);
    expect(area("TLS")).toBe(30);
    expect(area("garbage collection")).toBe(1);
    expect(area("etcd client")).toBe(0);
    expect(s.topSelf[0]).toEqual({ frame: "encoding/json.(*decodeState).object", pct: 60 });
    expect(s.topSelf.map((f) => f.frame)).toContain("crypto/tls.(*Conn).Write");
  });

  it("reads nothing from a profile without samples", () => {
    const s = summarizeTraces("File: kube-apiserver\nType: cpu\n");
    expect(s.cpuSeconds).toBe(0);
    expect(s.topSelf).toEqual([]);
    expect(profileRow({ file: "f", seconds: 8, ...s })?.value).toBe("");
  });

  it("prints the areas of 3 % or more, largest first", () => {
    const row = profileRow({ file: "f", seconds: 8, ...summarizeTraces(traces) });
    expect(row?.value.startsWith("creates 60 %")).toBe(true);
    expect(row?.value).not.toContain("garbage collection");
  });

  it("lists CPU per study largest first, without the benchmark itself", () => {
    expect(perStudyLine({ operator: 12, "kube-apiserver": 58.2, bench: 3, etcd: 0.2 })).toBe(
      "kube-apiserver 58.2, operator 12",
    );
  });
});
