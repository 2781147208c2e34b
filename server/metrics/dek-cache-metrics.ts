// The DEK cache's size and hit rate. The cache keeps its own counters; their
// growth is folded into the metric counters at scrape time, so nothing here
// runs per read.
import type { DekCache } from '../kms/dek-cache.js';
import type { CofferMetrics } from './coffer-metrics.js';

export function registerDekCacheMetrics(m: CofferMetrics, cache: Pick<DekCache, 'stats'>): void {
  let seen = { hits: 0, misses: 0 };
  m.registry.gauge({
    name: 'coffer_dek_cache_entries',
    help: 'Unwrapped DEKs held in memory.',
    collect: () => {
      const s = cache.stats();
      m.dekCacheHits.inc(s.hits - seen.hits);
      m.dekCacheMisses.inc(s.misses - seen.misses);
      seen = { hits: s.hits, misses: s.misses };
      return s.size;
    },
  });
}
