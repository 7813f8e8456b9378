// CustomResourceDefinitions from the zod schemas, so the API server validates with the same rules
// the operator parses with. zod's JSON Schema (OpenAPI 3.0 flavour, input side so defaults do
// not make fields required) is rewritten into the *structural* subset the API server accepts:
// https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
// Anything this file does not know how to express is a generation error, never a silent drop.
import { z } from "zod";
import { AIWorkflow } from "./aiworkflow.ts";
import { GROUP, VERSION } from "./common.ts";
import { DICOMDestination } from "./dicomdestination.ts";
import { InferenceTask } from "./inferencetask.ts";

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps radflow emits. */
export interface JSONSchemaProps {
  description?: string;
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  format?: string;
  default?: unknown;
  nullable?: boolean;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  items?: JSONSchemaProps;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  additionalProperties?: JSONSchemaProps;
  anyOf?: JSONSchemaProps[];
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-map-type"?: "atomic" | "granular";
  "x-kubernetes-validations"?: { rule: string; message?: string; messageExpression?: string; reason?: string }[];
}

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  /** the kind's zod schema; its `spec` and `status` become the CRD schema, `metadata` stays the API server's */
  schema: z.ZodObject<{ spec: z.ZodType; status: z.ZodType }>;
  printerColumns: PrinterColumn[];
}

const CATEGORY = "radflow";

export const kinds: KindDefinition[] = [
  {
    kind: "AIWorkflow",
    plural: "aiworkflows",
    singular: "aiworkflow",
    shortNames: ["aiwf"],
    schema: AIWorkflow,
    printerColumns: [
      { name: "Priority", type: "string", jsonPath: ".spec.priority", description: "Clinical priority." },
      { name: "Steps", type: "integer", jsonPath: ".status.stepCount", description: "Number of steps." },
      {
        name: "Ready",
        type: "string",
        jsonPath: '.status.conditions[?(@.type=="Ready")].status',
        description: "Whether the workflow is valid and starts tasks.",
      },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
  {
    kind: "InferenceTask",
    plural: "inferencetasks",
    singular: "inferencetask",
    shortNames: ["itask"],
    schema: InferenceTask,
    printerColumns: [
      { name: "Workflow", type: "string", jsonPath: ".spec.workflowRef.name", description: "The AIWorkflow run." },
      { name: "Phase", type: "string", jsonPath: ".status.phase", description: "Phase of the task." },
      { name: "Step", type: "string", jsonPath: ".status.currentStep", description: "Step(s) in progress." },
      {
        name: "Review",
        type: "string",
        jsonPath: '.status.conditions[?(@.type=="AwaitingReview")].reason',
        description: "AwaitingReview while a review step waits; then Accepted, Rejected or ReviewTimeout.",
      },
      { name: "Duration", type: "string", jsonPath: ".status.duration", description: "Run time so far." },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
  {
    kind: "DICOMDestination",
    plural: "dicomdestinations",
    singular: "dicomdestination",
    shortNames: ["dcmdest"],
    schema: DICOMDestination,
    printerColumns: [
      { name: "Host", type: "string", jsonPath: ".spec.dimse.host", description: "DIMSE host." },
      { name: "Port", type: "integer", jsonPath: ".spec.dimse.port", description: "DIMSE port." },
      { name: "AE", type: "string", jsonPath: ".spec.dimse.calledAETitle", description: "Called AE title." },
      { name: "URL", type: "string", jsonPath: ".spec.dicomweb.url", description: "DICOMweb base URL." },
      {
        name: "Reachable",
        type: "string",
        jsonPath: '.status.conditions[?(@.type=="Reachable")].status',
        description: "Whether the last check succeeded.",
      },
      { name: "Checked", type: "date", jsonPath: ".status.lastCheckTime", description: "When it was last checked." },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
];

export class GenerationError extends Error {}

// String formats the API server validates with the same meaning as zod; anything else would be
// logged as "unrecognized format" (int32/int64 included) or mean something else ("duration" is a
// Go duration there and ISO 8601 in zod), so it is dropped.
const KNOWN_FORMATS = new Set(["date-time", "date", "uuid", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uri"]);

// zod writes the JavaScript safe-integer range on every .int(); Kubernetes integers are int64
// already, so these bounds say nothing and only clutter `kubectl explain`.
const SAFE = Number.MAX_SAFE_INTEGER;

const VALUE_KEYS = [
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
] as const;

const PASSED_THROUGH = new Set<string>([
  ...VALUE_KEYS,
  "description",
  "default",
  "nullable",
  "enum",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-validations",
]);
const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean"]);

type Json = Record<string, unknown>;

/**
 * Rewrites one node of zod's JSON Schema into structural JSONSchemaProps. `path` is the field
 * path for error messages (spec.steps[].name); problems are collected, not thrown, so one run
 * reports every missing description at once.
 */
function structural(node: Json, path: string, problems: string[]): JSONSchemaProps {
  const out: JSONSchemaProps = {};
  const o = out as Record<string, unknown>;
  // an empty schema (z.unknown(), z.any()) holds any JSON value
  if (Object.keys(node).filter((k) => k !== "description" && k !== "default").length === 0) {
    copy(node, o, ["description", "default"]);
    out["x-kubernetes-preserve-unknown-fields"] = true;
    return ordered(out);
  }
  if (Array.isArray(node.anyOf)) return union(node, path, problems);
  for (const [k, v] of Object.entries(node)) {
    if (k === "type") {
      if (typeof v !== "string" || !TYPES.has(v)) problems.push(`${path}: unsupported type ${JSON.stringify(v)}`);
      else out.type = v as JSONSchemaProps["type"];
    } else if (k === "format") {
      if (typeof v === "string" && KNOWN_FORMATS.has(v)) out.format = v;
    } else if ((k === "minimum" && v === -SAFE) || (k === "maximum" && v === SAFE)) {
      // zod's safe-integer bounds: dropped (see SAFE)
    } else if (k === "properties" || k === "required" || k === "additionalProperties" || k === "items") {
      // handled below, once the type is known
    } else if (k === "propertyNames") {
      // CRDs cannot constrain map keys; zod still checks them when the operator parses
    } else if (PASSED_THROUGH.has(k)) {
      o[k] = v;
    } else {
      problems.push(`${path}: JSON Schema keyword "${k}" has no structural equivalent`);
    }
  }
  if (out.type === undefined && !out["x-kubernetes-preserve-unknown-fields"]) {
    problems.push(`${path}: no type`);
  }
  if (out.type === "array") {
    const items = node.items as Json | undefined;
    if (!items) problems.push(`${path}: array without items`);
    else out.items = structural(items, `${path}[]`, problems);
    const keys = out["x-kubernetes-list-map-keys"];
    if (keys && out.items) {
      for (const key of keys) {
        const field = out.items.properties?.[key];
        if (!field || !(out.items.required?.includes(key) || field.default !== undefined)) {
          problems.push(`${path}: list-map key "${key}" must be a required (or defaulted) field of the items`);
        }
      }
    }
  }
  if (out.type === "object") objectFields(node, out, path, problems);
  return ordered(out);
}

// One key order for every node, so the YAML reads the same way throughout (description first,
// then the type and its constraints, then children, then the Kubernetes extensions).
const KEY_ORDER = [
  "description",
  "type",
  "format",
  "enum",
  "default",
  "nullable",
  ...VALUE_KEYS,
  "x-kubernetes-int-or-string",
  "anyOf",
  "required",
  "properties",
  "additionalProperties",
  "items",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-validations",
];

function ordered(s: JSONSchemaProps): JSONSchemaProps {
  const o = s as Record<string, unknown>;
  const keys = Object.keys(o).sort((a, b) => KEY_ORDER.indexOf(a) - KEY_ORDER.indexOf(b));
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as JSONSchemaProps;
}

function objectFields(node: Json, out: JSONSchemaProps, path: string, problems: string[]) {
  const props = node.properties as Record<string, Json> | undefined;
  const extra = node.additionalProperties as Json | boolean | undefined;
  if (props && Object.keys(props).length > 0) {
    out.properties = {};
    for (const [name, child] of Object.entries(props)) {
      const field = structural(child, path ? `${path}.${name}` : name, problems);
      if (!field.description) problems.push(`${path ? `${path}.` : ""}${name}: no description`);
      out.properties[name] = field;
    }
    const required = (node.required as string[] | undefined) ?? [];
    if (required.length > 0) out.required = [...required];
    // a passthrough object keeps fields it does not declare
    if (extra && typeof extra === "object" && Object.keys(extra).length === 0) {
      out["x-kubernetes-preserve-unknown-fields"] = true;
    } else if (extra && typeof extra === "object") {
      problems.push(`${path}: an object with both properties and additionalProperties is not structural`);
    }
    return;
  }
  // a record: `additionalProperties: {schema}` — unless the node keeps whatever it is given
  if (out["x-kubernetes-preserve-unknown-fields"]) return;
  if (extra && typeof extra === "object") out.additionalProperties = structural(extra, `${path}{}`, problems);
}

// Unions the API server can express: enums of strings and int-or-string. (X | null needs no
// union: the OpenAPI 3.0 target writes it as nullable: true.)
function union(node: Json, path: string, problems: string[]): JSONSchemaProps {
  const branches = (node.anyOf as Json[]).map((b) => structural(b, path, []));
  const rest: Json = { ...node };
  delete rest.anyOf;
  const outer = structural({ type: "string", ...rest }, path, problems);
  delete outer.type;
  const types = branches.map((b) => b.type);
  if (
    branches.every((b) => b.type === "string" && b.enum && Object.keys(b).every((k) => k === "type" || k === "enum"))
  ) {
    return ordered({ ...outer, type: "string", enum: branches.flatMap((b) => b.enum ?? []) });
  }
  if (types.length === 2 && types.includes("integer") && types.includes("string")) {
    // int-or-string (e.g. a quantity): the anyOf must be exactly [{integer}, {string}], so each
    // branch's value validations move up; the API server applies each to the values it fits
    const merged: JSONSchemaProps = { ...outer };
    for (const b of [branches[types.indexOf("integer")], branches[types.indexOf("string")]]) {
      for (const k of VALUE_KEYS) {
        if (b?.[k] === undefined) continue;
        if (merged[k] !== undefined) problems.push(`${path}: int-or-string branches both set ${k}`);
        (merged as Record<string, unknown>)[k] = b[k];
      }
    }
    return ordered({ ...merged, "x-kubernetes-int-or-string": true, anyOf: [{ type: "integer" }, { type: "string" }] });
  }
  problems.push(`${path}: a union of ${JSON.stringify(types)} has no structural equivalent`);
  return outer;
}

function copy(from: Json, to: Record<string, unknown>, keys: string[]) {
  for (const k of keys) if (from[k] !== undefined) to[k] = from[k];
}

/** The openAPIV3Schema of one kind, or a GenerationError listing every problem. */
export function openAPISchema(def: KindDefinition): JSONSchemaProps {
  const problems: string[] = [];
  const description = def.schema.description;
  if (!description) problems.push(`${def.kind}: no description`);
  const root: JSONSchemaProps = {
    description,
    type: "object",
    properties: {
      apiVersion: {
        description: `API version of the object: ${GROUP}/${VERSION}.`,
        type: "string",
      },
      kind: { description: `Kind of the object: ${def.kind}.`, type: "string" },
      // the API server owns metadata's schema; anything more here is ignored or rejected
      metadata: { type: "object" },
    },
    required: ["spec"],
  };
  for (const part of ["spec", "status"] as const) {
    const node = z.toJSONSchema(def.schema.shape[part], {
      io: "input",
      target: "openapi-3.0",
      unrepresentable: "throw",
    }) as Json;
    const s = structural(node, part, problems);
    if (!s.description) problems.push(`${part}: no description`);
    root.properties![part] = s;
  }
  // rules on the kind itself: the only place a rule may read metadata.name (e.g. AIWorkflow's)
  const rules = def.schema.meta()?.["x-kubernetes-validations"];
  if (rules !== undefined) root["x-kubernetes-validations"] = rules as JSONSchemaProps["x-kubernetes-validations"];
  if (problems.length > 0) {
    throw new GenerationError(`${def.kind}: the schema cannot become a CRD:\n  ${problems.join("\n  ")}`);
  }
  return root;
}

/** The CustomResourceDefinition object of one kind. */
export function customResourceDefinition(def: KindDefinition) {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${def.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind,
        listKind: `${def.kind}List`,
        plural: def.plural,
        singular: def.singular,
        shortNames: def.shortNames,
        categories: [CATEGORY],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: def.printerColumns,
          schema: { openAPIV3Schema: openAPISchema(def) },
        },
      ],
    },
  };
}
