// Writing an export's outcome where people look: the task's status.exports (server-side apply,
// one field manager per step and destination, so each gateway write owns exactly its entry and
// never touches the operator's fields or another export's), an Event on the task, and the
// destination's Reachable condition after a check.
import { CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { GROUP, VERSION } from "../api/v1alpha1/common.ts";
import type { DICOMDestination } from "../api/v1alpha1/dicomdestination.ts";
import type { ExportStatus } from "../api/v1alpha1/inferencetask.ts";
import { isNotFound, mergePatch } from "../kube/client.ts";
import type { Recorder } from "../kube/events.ts";
import { type Credentials, SendError } from "./send.ts";

const apply = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

/** The field manager of one export entry (≤ 128 characters). */
export function exportFieldManager(step: string, destination: string): string {
  return `radflow-export/${step}/${destination}`.slice(0, 128);
}

export interface TaskRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface ExportRecorder {
  /** Applies the entry to the task's status; false when the task is gone (nothing to record on). */
  record(task: TaskRef, entry: ExportStatus): Promise<boolean>;
}

export function kubeExportRecorder(kc: KubeConfig, events?: Recorder): ExportRecorder {
  const custom = kc.makeApiClient(CustomObjectsApi);
  return {
    async record(task, entry) {
      const body = {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "InferenceTask",
        // the uid makes the apply fail (409) on a newer task of the same name instead of writing to it
        metadata: { name: task.name, namespace: task.namespace, uid: task.uid },
        status: { exports: [entry] },
      };
      try {
        await custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace: task.namespace,
            plural: "inferencetasks",
            name: task.name,
            body,
            fieldManager: exportFieldManager(entry.step, entry.destination),
            force: true,
          },
          apply,
        );
      } catch (e) {
        if (isNotFound(e)) return false;
        throw e;
      }
      if (entry.phase !== "Pending" || (entry.attempts ?? 0) <= 1) {
        const warn = entry.phase === "Failed" || entry.phase === "Pending";
        events?.event(
          { apiVersion: `${GROUP}/${VERSION}`, kind: "InferenceTask", ...task },
          warn ? "Warning" : "Normal",
          entry.phase === "Pending" ? "ExportRetrying" : `Export${entry.phase}`,
          `step ${entry.step} → ${entry.destination}: ${entry.phase}${entry.reason ? ` (${entry.reason})` : ""}${entry.message ? `: ${entry.message}` : ""}`,
        );
      }
      return true;
    },
  };
}

export interface DestinationSource {
  get(namespace: string, name: string): Promise<DICOMDestination | undefined>;
  credentials(d: DICOMDestination): Promise<Credentials | undefined>;
  list(): Promise<DICOMDestination[]>;
  setReachable(d: DICOMDestination, problem: string | undefined, now: Date): Promise<void>;
}

export function kubeDestinations(kc: KubeConfig, namespaces?: string[]): DestinationSource {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const base = { group: GROUP, version: VERSION, plural: "dicomdestinations" };
  return {
    async get(namespace, name) {
      try {
        return (await custom.getNamespacedCustomObject({ ...base, namespace, name })) as DICOMDestination;
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    },
    async credentials(d) {
      const namespace = d.metadata.namespace as string;
      const secretValue = async (name: string, key: string) => {
        const s = await core.readNamespacedSecret({ name, namespace });
        return s.data?.[key] ? Buffer.from(s.data[key], "base64").toString("utf8") : undefined;
      };
      const tls = d.spec.dimse?.tls;
      if (tls) {
        // a missing Secret, ConfigMap or key is a configuration error the task's message names
        const need = async (what: string, v: Promise<string | undefined>) => {
          const got = await v.catch((e) => {
            if (isNotFound(e)) return undefined;
            throw e;
          });
          if (!got) throw new SendError(`DICOM TLS: ${what} not found in namespace ${namespace}`, "TLSConfigError");
          return got;
        };
        const caRef = tls.caSecretKeyRef ?? tls.caConfigMapKeyRef;
        const ca = tls.caSecretKeyRef
          ? await need(`Secret ${caRef?.name} key ${caRef?.key}`, secretValue(caRef!.name, caRef!.key ?? "ca.crt"))
          : tls.caConfigMapKeyRef
            ? await need(
                `ConfigMap ${caRef?.name} key ${caRef?.key}`,
                core
                  .readNamespacedConfigMap({ name: caRef!.name, namespace })
                  .then((c) => c.data?.[caRef!.key ?? "ca.crt"]),
              )
            : undefined;
        const client = tls.clientCertificateSecretName;
        const cert = client ? await need(`Secret ${client} key tls.crt`, secretValue(client, "tls.crt")) : undefined;
        const key = client ? await need(`Secret ${client} key tls.key`, secretValue(client, "tls.key")) : undefined;
        return { tls: { ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) } };
      }
      const secret = d.spec.dicomweb?.secretName;
      if (!secret) return undefined;
      const s = await core.readNamespacedSecret({ name: secret, namespace });
      const v = (k: string) => (s.data?.[k] ? Buffer.from(s.data[k], "base64").toString("utf8") : undefined);
      return { username: v("username"), password: v("password"), token: v("token") };
    },
    async list() {
      const lists = namespaces?.length
        ? await Promise.all(namespaces.map((namespace) => custom.listNamespacedCustomObject({ ...base, namespace })))
        : [await custom.listClusterCustomObject(base)];
      return lists.flatMap((l) => (l as { items: DICOMDestination[] }).items);
    },
    async setReachable(d, problem, now) {
      const was = d.status?.conditions?.find((c) => c.type === "Reachable");
      const status = problem ? "False" : "True";
      const condition = {
        type: "Reachable",
        status,
        reason: problem ? "CheckFailed" : "CheckSucceeded",
        message: (problem ?? (d.spec.dimse ? "C-ECHO succeeded" : "HTTP check succeeded")).slice(0, 1024),
        lastTransitionTime: was?.status === status ? was.lastTransitionTime : now.toISOString(),
        observedGeneration: d.metadata.generation,
      };
      await custom.patchNamespacedCustomObjectStatus(
        {
          ...base,
          namespace: d.metadata.namespace as string,
          name: d.metadata.name as string,
          body: { status: { conditions: [condition], lastCheckTime: now.toISOString() } },
        },
        mergePatch,
      );
    },
  };
}
