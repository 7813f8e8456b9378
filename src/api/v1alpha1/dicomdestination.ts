// DICOMDestination: a PACS (or any DICOM node) that results are sent to (docs/gateway.md,
// "Results back to PACS"). Workflows name destinations in a step's `export`; `radflow gateway`
// sends and checks them. Credentials stay in a Secret; the object holds no PHI.
import { z } from "zod";
import { AETitle, Condition, DnsLabel, keyedList, ObjectMeta } from "./common.ts";

const ONE_OF = "exactly one of dimse or dicomweb must be set";

const KeyRef = (what: string) =>
  z
    .object({
      name: DnsLabel(253).describe(`Name of the ${what} in the destination's namespace.`),
      key: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[-._a-zA-Z0-9]+$/, "must be a Secret or ConfigMap key")
        .default("ca.crt")
        .describe("Key holding the PEM certificate(s)."),
    })
    .describe(`A key of a ${what}.`);

export const DimseTls = z
  .object({
    caSecretKeyRef: KeyRef("Secret")
      .optional()
      .describe("The CA certificate(s) (PEM) that must have signed the node's certificate, from a Secret key."),
    caConfigMapKeyRef: KeyRef("ConfigMap")
      .optional()
      .describe("The same from a ConfigMap key (a CA certificate is no secret). Without either, the system's CAs."),
    clientCertificateSecretName: DnsLabel(253)
      .optional()
      .describe(
        "A kubernetes.io/tls Secret (tls.crt, tls.key) with radflow's client certificate, for nodes that require one.",
      ),
  })
  .describe(
    "DICOM TLS (PS3.15 B.1, TLS ≥ 1.2) on the association: the node's certificate must chain to the CA and name `host` (a DNS name, or an IP address in its subjectAltName).",
  )
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "!(has(self.caSecretKeyRef) && has(self.caConfigMapKeyRef))",
        message: "set caSecretKeyRef or caConfigMapKeyRef, not both",
        reason: "FieldValueInvalid",
      },
    ],
  })
  .superRefine((t, ctx) => {
    if (t.caSecretKeyRef && t.caConfigMapKeyRef)
      ctx.addIssue({ code: "custom", message: "set caSecretKeyRef or caConfigMapKeyRef, not both" });
  });
export type DimseTls = z.infer<typeof DimseTls>;

export const DimseEndpoint = z
  .object({
    host: z.string().min(1).max(253).describe("Host name or address of the DICOM node."),
    port: z.number().int().min(1).max(65535).default(104).describe("DIMSE port of the node."),
    calledAETitle: AETitle.describe("AE title of the node (the called AE title of the association)."),
    callingAETitle: AETitle.default("RADFLOW").describe(
      "AE title radflow calls with; the node must know it as a sender.",
    ),
    tls: DimseTls.optional(),
  })
  .describe("A DIMSE node: results are sent with C-STORE, checked with C-ECHO.");

export const DicomWebEndpoint = z
  .object({
    url: z
      .string()
      .max(1024)
      .regex(/^https?:\/\/[^\s]+$/, "must be an http:// or https:// URL")
      .describe("DICOMweb base URL; instances are POSTed to <url>/studies (STOW-RS)."),
    secretName: DnsLabel(253)
      .optional()
      .describe(
        "Secret in the destination's namespace with `username` and `password` (HTTP Basic) or `token` (Bearer).",
      ),
  })
  .describe("A DICOMweb server: results are sent with STOW-RS, checked with an HTTP request to the base URL.");

export const DICOMDestinationSpec = z
  .object({
    description: z.string().max(1024).optional().describe("What the destination is, for people."),
    dimse: DimseEndpoint.optional(),
    dicomweb: DicomWebEndpoint.optional(),
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(60)
      .describe("Longest time one send (an association, or one STOW-RS request) may take."),
    checkIntervalSeconds: z
      .number()
      .int()
      .min(0)
      .max(86400)
      .default(300)
      .describe("How often the gateway checks that the destination answers (C-ECHO or HTTP); 0 = never."),
  })
  .describe("DICOMDestinationSpec: where and how to send results.")
  .meta({
    "x-kubernetes-validations": [
      { rule: "has(self.dimse) != has(self.dicomweb)", message: ONE_OF, reason: "FieldValueInvalid" },
    ],
  })
  .superRefine((s, ctx) => {
    if ((s.dimse === undefined) === (s.dicomweb === undefined)) ctx.addIssue({ code: "custom", message: ONE_OF });
  });
export type DICOMDestinationSpec = z.infer<typeof DICOMDestinationSpec>;

export const DICOMDestinationStatus = z
  .object({
    conditions: keyedList(z.array(Condition), "type")
      .optional()
      .describe("Reachable: True when the last check (C-ECHO or HTTP) succeeded, False with the error."),
    lastCheckTime: z.string().optional().describe("When the gateway last checked the destination.").meta({
      format: "date-time",
    }),
  })
  .describe("DICOMDestinationStatus: what the last check found.");
export type DICOMDestinationStatus = z.infer<typeof DICOMDestinationStatus>;

export const DICOMDestination = z
  .object({
    apiVersion: z.literal("radflow.io/v1alpha1"),
    kind: z.literal("DICOMDestination"),
    metadata: ObjectMeta,
    spec: DICOMDestinationSpec,
    status: DICOMDestinationStatus.optional(),
  })
  .describe("DICOMDestination is a PACS or other DICOM node that AIWorkflows export results to.");
export type DICOMDestination = z.infer<typeof DICOMDestination>;
