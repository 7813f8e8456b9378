// The path of a tool the unit project's global setup built (test/unit/global-setup.ts); fails
// loudly, with the build's error, when it could not.
import path from "node:path";
import { inject } from "vitest";

export function tool(name: string): string {
  const bin = inject("toolsBin");
  if (!bin) throw new Error(inject("toolsError") || `${name} was not built (test/unit/global-setup.ts)`);
  return path.join(bin, name);
}
