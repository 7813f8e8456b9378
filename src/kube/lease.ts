// Leader election on a coordination.k8s.io/v1 Lease, with controller-runtime's defaults
// (lease 15 s, renew deadline 10 s, retry 2 s). Writes use the resourceVersion that was read,
// so two candidates racing get a 409 and only one wins. A leader that cannot renew within the
// renew deadline calls onStoppedLeading at once: the operator stops writing immediately.
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from "@kubernetes/client-node";
import { logger } from "../log/logger.ts";
import { leader as leaderGauge } from "../metrics/metrics.ts";
import { apiClient } from "./client.ts";
import { errMessage } from "./informer.ts";

const log = logger("lease");

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly o: Required<LeaderElectionOptions>;
  private leading = false;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private observed: { holder?: string; renewTime?: number; localSeenAt: number; rv?: string } = { localSeenAt: 0 };

  constructor(kc: KubeConfig, o: LeaderElectionOptions) {
    this.api = apiClient(kc, CoordinationV1Api); // Lease writes counted in radflow_kube_api_requests_total
    this.o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...o };
  }

  isLeader(): boolean {
    // between ticks, a leader whose renew deadline passed is not a leader any more
    return this.leading && Date.now() - this.lastRenew < this.o.renewDeadlineMs;
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      await this.tryAcquireOrRenew();
      if (this.leading && Date.now() - this.lastRenew >= this.o.renewDeadlineMs) this.lose("renew deadline passed");
      if (!this.stopped) this.timer = setTimeout(tick, this.o.retryPeriodMs);
    };
    void tick();
  }

  /** Stops campaigning; a leader releases the lease so a successor need not wait it out. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    leaderGauge.set(0);
    try {
      const lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      if (lease.spec?.holderIdentity === this.o.identity) {
        lease.spec.holderIdentity = undefined;
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = new V1MicroTime(Date.now());
        await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
        log.info({ identity: this.o.identity }, "released leader lease");
      }
    } catch (err) {
      log.warn({ err: errMessage(err) }, "could not release the lease");
    }
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = Date.now();
    const spec = () => ({
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      renewTime: new V1MicroTime(now),
    });
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) {
        log.warn({ err: errMessage(err) }, "reading the lease failed");
        return;
      }
      try {
        await this.api.createNamespacedLease({
          namespace: this.o.namespace,
          body: {
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { ...spec(), acquireTime: new V1MicroTime(now), leaseTransitions: 0 },
          },
        });
        this.win(now);
      } catch (e) {
        log.debug({ err: errMessage(e) }, "lease create lost the race");
      }
      return;
    }
    const holder = lease.spec?.holderIdentity;
    const rv = lease.metadata?.resourceVersion;
    // Lease expiry is judged on our own clock from when we last saw the record change,
    // as client-go does: clocks across machines need not agree.
    if (rv !== this.observed.rv) this.observed = { holder, localSeenAt: now, rv };
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
    const heldByOther = holder && holder !== this.o.identity && now - this.observed.localSeenAt < durationMs;
    if (heldByOther) {
      if (this.leading) this.lose(`lease taken by ${holder}`);
      return;
    }
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (holder === this.o.identity ? 0 : 1);
    lease.spec = {
      ...lease.spec,
      ...spec(),
      acquireTime: holder === this.o.identity ? lease.spec?.acquireTime : new V1MicroTime(now),
      leaseTransitions: transitions,
    };
    try {
      const updated = await this.api.replaceNamespacedLease({
        name: this.o.name,
        namespace: this.o.namespace,
        body: lease,
      });
      this.observed = { holder: this.o.identity, localSeenAt: Date.now(), rv: updated.metadata?.resourceVersion };
      this.win(now);
    } catch (err) {
      log.debug({ err: errMessage(err) }, "lease update failed (another candidate wrote first?)");
    }
  }

  private win(at: number): void {
    if (this.stopped) return; // a campaign in flight when stop() came: do not start leading now
    this.lastRenew = at;
    if (!this.leading) {
      this.leading = true;
      leaderGauge.set(1);
      log.info({ identity: this.o.identity }, "became leader");
      this.o.onStartedLeading();
    }
  }

  private lose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    leaderGauge.set(0);
    log.warn({ identity: this.o.identity, why }, "lost leadership");
    this.o.onStoppedLeading();
  }
}
