// Kubernetes Events (core/v1) on the VaultCluster for each step the operator takes.
//
// Shape: involvedObject = the VaultCluster (apiVersion, kind, namespace, name,
// uid), type Normal or Warning, a CamelCase reason, a one-line message,
// source.component and reportingComponent `coffer-operator`,
// reportingInstance = the operator's identity. The same (object, reason,
// message) Warning is recorded at most once per dedupeMs, so periodic resyncs
// of a broken VaultCluster do not flood the namespace. Normal events describe
// steps, which the reconciler emits only when they happen, and are not deduplicated.
import type { CoreV1Event } from '@kubernetes/client-node';
import { API_VERSION, KIND } from '../api/schema.js';
import { realClock, type Clock } from './clock.js';
import type { ClusterClient } from './client.js';
import type { Logger } from './logger.js';

export interface EventTarget {
  namespace: string;
  name: string;
  uid?: string;
  resourceVersion?: string;
}

export interface OperatorEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface EventRecorder {
  /** Best effort: never throws. */
  record(target: EventTarget, event: OperatorEvent): Promise<void>;
}

export const EVENT_COMPONENT = 'coffer-operator';

export class KubeEventRecorder implements EventRecorder {
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly client: Pick<ClusterClient, 'createEvent'>,
    private readonly opts: {
      identity: string; clock?: Clock; logger?: Logger; dedupeMs?: number;
      /** The kind events are about and the component they come from (default: VaultCluster, coffer-operator). */
      involved?: { apiVersion: string; kind: string; component: string };
    },
  ) {}

  async record(target: EventTarget, event: OperatorEvent): Promise<void> {
    const clock = this.opts.clock ?? realClock;
    const now = clock.now();
    const dedupeMs = this.opts.dedupeMs ?? 10 * 60_000;
    const key = `${target.namespace}/${target.name}/${target.uid ?? ''}\u0000${event.type}\u0000${event.reason}\u0000${event.message}`;
    if (event.type === 'Warning') {
      const last = this.recent.get(key);
      if (last !== undefined && now - last < dedupeMs) return;
      this.recent.set(key, now);
    }
    if (this.recent.size > 1_000) {
      for (const [k, t] of this.recent) if (now - t >= dedupeMs) this.recent.delete(k);
    }
    const ts = new Date(now);
    const body: CoreV1Event = {
      metadata: { generateName: `${target.name}.`, namespace: target.namespace },
      involvedObject: {
        apiVersion: this.opts.involved?.apiVersion ?? API_VERSION,
        kind: this.opts.involved?.kind ?? KIND,
        namespace: target.namespace,
        name: target.name,
        ...(target.uid ? { uid: target.uid } : {}),
        ...(target.resourceVersion ? { resourceVersion: target.resourceVersion } : {}),
      },
      type: event.type,
      reason: event.reason,
      message: event.message.length > 1_000 ? event.message.slice(0, 999) + '…' : event.message,
      source: { component: this.opts.involved?.component ?? EVENT_COMPONENT },
      reportingComponent: this.opts.involved?.component ?? EVENT_COMPONENT,
      reportingInstance: this.opts.identity,
      firstTimestamp: ts,
      lastTimestamp: ts,
      count: 1,
    };
    try {
      await this.client.createEvent(body);
    } catch (err) {
      this.opts.logger?.warn({ err: String(err), reason: event.reason }, 'could not record event');
    }
  }
}
