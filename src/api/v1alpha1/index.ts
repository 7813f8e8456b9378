export * from "./aiworkflow.ts";
export * from "./common.ts";
export * from "./dicomdestination.ts";
export * from "./inferencetask.ts";
export * from "./study.ts";
