// Seed selection for the simulation tests.
//   RAFT_SIM_SEED=<n>   run exactly that seed (in shard 0)
//   RAFT_SIM_SEEDS=<n>  run seeds 0..n-1 (default 1000), split across shards

import { runSeed, type SeedResult } from './scenario.js';

export const SHARDS = 2;
export const DEFAULT_SEEDS = 1000;

export function seedsForShard(shard: number, env: NodeJS.ProcessEnv = process.env): number[] {
  const one = env['RAFT_SIM_SEED'];
  if (one !== undefined && one !== '') {
    const seed = Number(one);
    if (!Number.isInteger(seed) || seed < 0) throw new Error(`RAFT_SIM_SEED must be a non-negative integer, got ${one}`);
    return shard === 0 ? [seed] : [];
  }
  const countRaw = env['RAFT_SIM_SEEDS'];
  const count = countRaw ? Number(countRaw) : DEFAULT_SEEDS;
  if (!Number.isInteger(count) || count < 1) throw new Error(`RAFT_SIM_SEEDS must be a positive integer, got ${countRaw}`);
  const out: number[] = [];
  for (let s = shard; s < count; s += SHARDS) out.push(s);
  return out;
}

export function replayHint(seed: number): string {
  return `replay with RAFT_SIM_SEED=${seed} npx vitest run test/unit/raft`;
}

export interface ShardReport {
  readonly results: SeedResult[];
  readonly failures: SeedResult[];
  readonly ms: number;
}

export function runShard(shard: number): ShardReport {
  const start = performance.now();
  const results: SeedResult[] = [];
  for (const seed of seedsForShard(shard)) results.push(runSeed(seed));
  return { results, failures: results.filter((r) => !r.ok), ms: performance.now() - start };
}

export function formatFailures(failures: readonly SeedResult[]): string {
  const shown = failures.slice(0, 3).map(
    (f) => `seed ${f.seed} (${f.size} nodes): ${f.error}\n  ${replayHint(f.seed)}\n--- trace tail ---\n${f.trace ?? ''}`,
  );
  const seeds = failures.map((f) => f.seed).join(', ');
  return `${failures.length} simulation seed(s) failed: ${seeds}\n\n${shown.join('\n\n')}\n\n${failures
    .map((f) => replayHint(f.seed))
    .slice(0, 10)
    .join('\n')}`;
}
