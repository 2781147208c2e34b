// The sync controller's Prometheus metrics. Labels carry outcomes only: never
// a CofferSecret's values, and not its name either (cardinality).
import { Registry, type Counter, type Histogram } from '../common/prometheus.js';
import { READY_REASONS } from './api/schema.js';

export const SYNC_OUTCOMES = ['written', 'unchanged', ...READY_REASONS.filter((r) => r !== 'Synced')] as const;
export type SyncOutcome = (typeof SYNC_OUTCOMES)[number];

export interface SyncMetrics {
  registry: Registry;
  syncs: Counter<'outcome'>;
  /** Coffer version created -> target Secret written, rotations only. */
  propagation: Histogram;
}

export interface SyncGauges {
  watchedNames(): number;
  waitingQueries(): number;
  cofferSecrets(): number;
  isLeader(): boolean;
}

export function createSyncMetrics(gauges: SyncGauges): SyncMetrics {
  const registry = new Registry();
  const syncs = registry.counter({
    name: 'coffer_sync_syncs_total',
    help: 'CofferSecret reconciles by outcome: written (the Secret was written), unchanged, or the Ready reason of a failure.',
    labelNames: ['outcome'],
  });
  for (const outcome of SYNC_OUTCOMES) syncs.inc({ outcome }, 0);
  const propagation = registry.histogram({
    name: 'coffer_sync_propagation_seconds',
    help: 'From a Coffer version being created to the target Secret holding it (rotations seen by the controller).',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
  });
  registry.gauge({ name: 'coffer_sync_watched_names', help: 'Coffer names followed by blocking queries.', collect: gauges.watchedNames });
  registry.gauge({ name: 'coffer_sync_waiting_queries', help: 'Blocking queries waiting on Coffer now.', collect: gauges.waitingQueries });
  registry.gauge({ name: 'coffer_sync_coffersecrets', help: 'CofferSecrets this replica knows (0 while not leading).', collect: gauges.cofferSecrets });
  registry.gauge({ name: 'coffer_sync_leader', help: '1 while this replica holds the Lease.', collect: () => (gauges.isLeader() ? 1 : 0) });
  return { registry, syncs, propagation };
}
