#!/usr/bin/env node
// radflow: the operator and the CLI, one entry point.
//   radflow operator [flags]          run the operator (controllers + study ingest)
//   radflow import monai <file.json>  MONAI Deploy workflow -> AIWorkflow YAML
//   radflow send <dir|files…>         DICOM files -> study events on NATS
//   radflow gateway [flags]           DICOM C-STORE / STOW-RS in -> study events on NATS
//   radflow review accept|reject <t> a reviewer's verdict on a task's clinical review step
const usage = `usage:
  radflow operator [--help]            run the operator
  radflow import monai <workflow.json> convert a MONAI Deploy workflow to an AIWorkflow
  radflow send <dir|files...>          publish study events for DICOM files
  radflow gateway [--help]             receive studies over DICOM and DICOMweb
  radflow review accept|reject <task>  give a verdict on a task's clinical review step
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "operator":
      return (await import("./operator.ts")).main(rest);
    case "import":
      return (await import("./import.ts")).main(rest);
    case "send":
      return (await import("./send.ts")).main(rest);
    case "gateway":
      return (await import("./gateway.ts")).main(rest);
    case "review":
      return (await import("./review.ts")).main(rest);
    default:
      process.stderr.write(usage);
      return cmd === undefined || cmd === "--help" || cmd === "-h" ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`radflow: ${e.message}\n`);
    process.exitCode = 1;
  },
);
