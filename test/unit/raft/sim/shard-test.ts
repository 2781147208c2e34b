// One simulation shard as a vitest test; each shard file calls this so vitest
// runs the shards in parallel. RAFT_SIM_SEEDS=<n> raises the seed count;
// RAFT_SIM_SEED=<n> replays exactly one seed (in shard 0).
import { expect, it } from 'vitest';
import { formatFailures, runShard, seedsForShard } from './seeds.js';

export function simulationShardTest(shard: number): void {
  it(`simulation shard ${shard}: safety invariants hold and no acknowledged write is lost`, () => {
    const seeds = seedsForShard(shard);
    const report = runShard(shard);
    expect(report.results).toHaveLength(seeds.length);
    if (report.failures.length > 0) throw new Error(formatFailures(report.failures));
    if (seeds.length === 0) return;
    const total = (k: string): number => report.results.reduce((s, r) => s + (r.stats[k] ?? 0), 0);
    console.log(
      `shard ${shard}: ${seeds.length} seeds in ${(report.ms / 1000).toFixed(1)}s; acked writes ${total('acked')}, reads ${total('readsServed')}, leaders ${total('leaders')}, crashes ${total('crashes')}, truncations ${total('truncations')}, snapshots installed ${total('snapshotsInstalled')}, conf changes ${total('confChanges')}`,
    );
    // The runs must actually exercise the features, or passing means little.
    expect(total('acked')).toBeGreaterThan(0);
    expect(total('readsServed')).toBeGreaterThan(0);
    if (seeds.length >= 50) {
      expect(total('crashes')).toBeGreaterThan(0);
      expect(total('snapshotsInstalled')).toBeGreaterThan(0);
      expect(total('confChanges')).toBeGreaterThan(0);
      expect(total('truncations')).toBeGreaterThan(0);
    }
  }, 600_000);
}
