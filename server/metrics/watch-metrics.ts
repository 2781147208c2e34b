// Blocking metadata queries: how many wait now, read from the registry at scrape time.
import type { WatchRegistry } from '../watch/registry.js';
import type { CofferMetrics } from './coffer-metrics.js';

export function registerWatchMetrics(m: CofferMetrics, watch: Pick<WatchRegistry, 'waiting' | 'index'>): void {
  m.registry.gauge({
    name: 'coffer_watch_waiting_queries',
    help: 'Blocking metadata queries (GET /v1/watch) waiting for a change on this node.',
    collect: () => watch.waiting,
  });
  m.registry.gauge({
    name: 'coffer_watch_index',
    help: 'The change index blocking metadata queries are answered with on this node (monotonic).',
    collect: () => watch.index,
  });
}
