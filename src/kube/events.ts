// Kubernetes Events (events.k8s.io/v1) for `kubectl describe`. Repeats of the same
// (object, reason, note) within the series window update one Event's series count instead of
// creating new ones. Notes must never carry PHI: callers pass workflow/step names only.
import { EventsV1Api, type KubeConfig, V1MicroTime } from "@kubernetes/client-node";
import { logger } from "../log/logger.ts";
import { apiClient } from "./client.ts";
import { errMessage } from "./informer.ts";

const log = logger("events");

export interface EventTarget {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
}

export interface Recorder {
  event(target: EventTarget, type: "Normal" | "Warning", reason: string, note: string, action?: string): void;
}

const SERIES_WINDOW_MS = 10 * 60_000;

export class EventRecorder implements Recorder {
  private readonly api: EventsV1Api;
  private readonly seen = new Map<string, { name: string; count: number; first: number; last: number }>();
  private readonly controller: string;
  private readonly instance: string;
  private enabled = () => true;

  constructor(kc: KubeConfig, controller: string, instance: string) {
    this.api = apiClient(kc, EventsV1Api); // counted in radflow_kube_api_requests_total
    this.controller = controller;
    this.instance = instance;
  }

  /** Only the leader writes; a follower's events are dropped. */
  gate(enabled: () => boolean): void {
    this.enabled = enabled;
  }

  event(target: EventTarget, type: "Normal" | "Warning", reason: string, note: string, action = reason): void {
    if (!this.enabled()) return;
    void this.write(target, type, reason, note.slice(0, 1024), action).catch((err) =>
      log.debug({ err: errMessage(err), reason }, "event not recorded"),
    );
  }

  private async write(t: EventTarget, type: string, reason: string, note: string, action: string): Promise<void> {
    const key = `${t.namespace}/${t.kind}/${t.name}/${t.uid}/${reason}/${note}`;
    const now = Date.now();
    const prior = this.seen.get(key);
    if (prior && now - prior.last < SERIES_WINDOW_MS) {
      prior.count += 1;
      prior.last = now;
      await this.api.patchNamespacedEvent({
        name: prior.name,
        namespace: t.namespace,
        body: [
          {
            op: "add",
            path: "/series",
            value: { count: prior.count, lastObservedTime: new V1MicroTime(now).toISOString() },
          },
        ],
      });
      return;
    }
    if (this.seen.size > 5000) this.prune();
    const name = `${t.name}.${now.toString(16)}${Math.floor(Math.random() * 0xfff).toString(16)}`.slice(0, 253);
    await this.api.createNamespacedEvent({
      namespace: t.namespace,
      body: {
        metadata: { name, namespace: t.namespace },
        eventTime: new V1MicroTime(now),
        reportingController: this.controller,
        reportingInstance: this.instance,
        action,
        reason,
        note,
        type,
        regarding: { apiVersion: t.apiVersion, kind: t.kind, namespace: t.namespace, name: t.name, uid: t.uid },
      },
    });
    this.seen.set(key, { name, count: 1, first: now, last: now });
  }

  /** Forgets the oldest quarter (a Map iterates in insertion order): O(1) per event on average. */
  private prune(): void {
    let drop = this.seen.size / 4;
    for (const k of this.seen.keys()) {
      if (drop-- <= 0) break;
      this.seen.delete(k);
    }
  }
}
