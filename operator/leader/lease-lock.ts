// LeaseLock over a coordination.k8s.io/v1 Lease with @kubernetes/client-node.
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { LeaderElectionRecord, LeaseLock, LockedRecord } from './election.js';
import { httpStatusOf } from '../reconcile/client.js';

function ms(t: Date | string | undefined): number | null {
  if (t === undefined) return null;
  const v = typeof t === 'string' ? Date.parse(t) : t.getTime();
  return Number.isNaN(v) ? null : v;
}

export class KubeLeaseLock implements LeaseLock {
  private readonly api: CoordinationV1Api;

  constructor(
    kc: KubeConfig,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
  }

  describe(): string {
    return `${this.namespace}/${this.name}`;
  }

  async get(): Promise<LockedRecord | null> {
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ namespace: this.namespace, name: this.name });
    } catch (err) {
      if (httpStatusOf(err) === 404) return null;
      throw err;
    }
    const s = lease.spec ?? {};
    return {
      version: lease.metadata?.resourceVersion ?? '',
      record: {
        holderIdentity: s.holderIdentity ?? null,
        leaseDurationSeconds: s.leaseDurationSeconds ?? 15,
        acquireTime: ms(s.acquireTime as Date | string | undefined),
        renewTime: ms(s.renewTime as Date | string | undefined),
        leaseTransitions: s.leaseTransitions ?? 0,
      },
    };
  }

  private body(record: LeaderElectionRecord, version?: string): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace, ...(version ? { resourceVersion: version } : {}) },
      spec: {
        holderIdentity: record.holderIdentity ?? '',
        leaseDurationSeconds: record.leaseDurationSeconds,
        ...(record.acquireTime !== null ? { acquireTime: new V1MicroTime(record.acquireTime) } : {}),
        ...(record.renewTime !== null ? { renewTime: new V1MicroTime(record.renewTime) } : {}),
        leaseTransitions: record.leaseTransitions,
      },
    };
  }

  async create(record: LeaderElectionRecord): Promise<void> {
    await this.api.createNamespacedLease({ namespace: this.namespace, body: this.body(record) });
  }

  async update(record: LeaderElectionRecord, version: string): Promise<void> {
    await this.api.replaceNamespacedLease({ namespace: this.namespace, name: this.name, body: this.body(record, version) });
  }
}
