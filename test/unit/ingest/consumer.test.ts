import { TimeoutError } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { safeError } from "../../../src/ingest/consumer.ts";

describe("safeError (DLQ detail and log text of a failed delivery)", () => {
  it("withholds the message of an unexpected error: it may quote study values", () => {
    const e = new TypeError("Cannot read properties of undefined (reading 'DOE^JOHN')");
    expect(safeError(e)).toBe("TypeError (message withheld: it may quote study values)");
    expect(safeError(new SyntaxError(`Unexpected token 'A', "ACC-778899" is not valid JSON`))).not.toMatch(/778899/);
    expect(safeError("a string")).toBe("string (message withheld: it may quote study values)");
  });

  it("keeps messages that are fixed text: a stack overflow, NATS' own errors", () => {
    expect(safeError(new RangeError("Maximum call stack size exceeded"))).toBe(
      "RangeError: Maximum call stack size exceeded",
    );
    expect(safeError(new RangeError("Invalid array length 1.2.3"))).toMatch(/withheld/);
    expect(safeError(new TimeoutError())).toMatch(/timeout/i);
  });
});
