// radflow import monai <workflow.json> [--namespace ns] [--name n] [--priority p] [--image task=image]...
// Prints the AIWorkflow as YAML on stdout; what cannot be translated is reported on stderr and
// nothing is printed (exit 1), so a half-translated workflow never reaches a cluster.
import { readFileSync } from "node:fs";
import path from "node:path";
import yaml from "js-yaml";
import { Priority } from "../api/v1alpha1/index.ts";
import { ImportError, type ImportOptions, importMonai } from "../monai/convert.ts";

const usage = `usage: radflow import monai <workflow.json> [--namespace ns] [--name n] [--priority stat|urgent|routine|batch]
                                       [--image <task-id>=<image>]...
Converts a MONAI Deploy Workflow Manager workflow into an AIWorkflow and prints it as YAML.
`;

export async function main(args: string[]): Promise<number> {
  const [format, ...rest] = args;
  if (format !== "monai") {
    process.stderr.write(usage);
    return format === "--help" || format === "-h" ? 0 : 2;
  }
  const opts: ImportOptions = { images: {} };
  let file: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    const value = () => {
      const v = rest[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    try {
      if (a === "--namespace" || a === "-n") opts.namespace = value();
      else if (a === "--name") opts.name = value();
      else if (a === "--priority") {
        const p = Priority.safeParse(value());
        if (!p.success) throw new UsageError(`--priority must be one of ${Priority.options.join(", ")}`);
        opts.priority = p.data;
      } else if (a === "--image") {
        const m = /^([^=]+)=(.+)$/.exec(value());
        if (!m) throw new UsageError("--image takes <task-id>=<image>");
        opts.images![m[1]!] = m[2]!;
      } else if (a === "--help" || a === "-h") {
        process.stdout.write(usage);
        return 0;
      } else if (a.startsWith("-") || file !== undefined) throw new UsageError(`unexpected argument ${a}`);
      else file = a;
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      process.stderr.write(`radflow import: ${e.message}\n${usage}`);
      return 2;
    }
  }
  if (file === undefined) {
    process.stderr.write(usage);
    return 2;
  }

  let input: unknown;
  try {
    input = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    process.stderr.write(`radflow import: ${file}: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    process.stdout.write(renderImport(input, opts, file));
    return 0;
  } catch (e) {
    if (!(e instanceof ImportError)) throw e;
    process.stderr.write(`radflow import: ${file}: ${e.message}\n`);
    return 1;
  }
}

/** The YAML document the command prints, with the notes as a leading comment. */
export function renderImport(input: unknown, opts: ImportOptions, source: string): string {
  const { workflow, notes } = importMonai(input, opts);
  const header = [
    `# Imported from the MONAI Deploy workflow ${path.basename(source)} by \`radflow import monai\`.`,
    "# Check before applying:",
    ...notes.map((n) => `#  - ${n}`),
  ];
  return `${header.join("\n")}\n${yaml.dump(workflow, { lineWidth: -1, noRefs: true })}`;
}

class UsageError extends Error {}
