// One autopilot simulation shard as a vitest test (see autopilot-scenario.ts).
//   AUTOPILOT_SIM_SEED=<n>   replay exactly that seed (in shard 0)
//   AUTOPILOT_SIM_SEEDS=<n>  run seeds 0..n-1 (default 1000), split across shards
import { expect, it } from 'vitest';
import { runAutopilotSeed } from './autopilot-scenario.js';
import type { SeedResult } from './scenario.js';

export const AUTOPILOT_SHARDS = 2;

export function autopilotSeeds(shard: number, env: NodeJS.ProcessEnv = process.env): number[] {
  const one = env['AUTOPILOT_SIM_SEED'];
  if (one !== undefined && one !== '') return shard === 0 ? [Number(one)] : [];
  const count = Number(env['AUTOPILOT_SIM_SEEDS'] || 1000);
  if (!Number.isInteger(count) || count < 1) throw new Error(`AUTOPILOT_SIM_SEEDS must be a positive integer`);
  const out: number[] = [];
  for (let s = shard; s < count; s += AUTOPILOT_SHARDS) out.push(s);
  return out;
}

const replay = (seed: number): string => `replay with AUTOPILOT_SIM_SEED=${seed} npx vitest run test/unit/raft/autopilot-simulation`;

export function autopilotShardTest(shard: number): void {
  it(`autopilot simulation shard ${shard}: invariants hold every step and membership converges to the declared set`, () => {
    const seeds = autopilotSeeds(shard);
    const start = performance.now();
    const results: SeedResult[] = seeds.map((s) => runAutopilotSeed(s));
    const ms = performance.now() - start;
    const failures = results.filter((r) => !r.ok);
    if (failures.length > 0) {
      const shown = failures
        .slice(0, 3)
        .map((f) => `seed ${f.seed} (${f.size} nodes): ${f.error}\n  ${replay(f.seed)}\n--- trace tail ---\n${f.trace ?? ''}`);
      throw new Error(`${failures.length} autopilot seed(s) failed: ${failures.map((f) => f.seed).join(', ')}\n\n${shown.join('\n\n')}`);
    }
    if (seeds.length === 0) return;
    const total = (k: string): number => results.reduce((s, r) => s + (r.stats[k] ?? 0), 0);
    const keys = [
      'converged', 'convergedDuringChaos', 'declaredChanges', 'addLearner', 'promote', 'remove', 'transferLeadership',
      'blocked', 'wipes', 'lostDataRemovals', 'rejoinsAfterWipe', 'staleRejoins', 'acked', 'readsServed', 'crashes', 'snapshotsInstalled', 'grantsChecked',
    ];
    const maxHeal = Math.max(...results.map((r) => r.stats['healSteps'] ?? 0));
    console.log(
      `autopilot shard ${shard}: ${seeds.length} seeds in ${(ms / 1000).toFixed(1)}s; ${keys.map((k) => `${k} ${total(k)}`).join(', ')}; slowest heal ${maxHeal} steps`,
    );
    // Every seed converged after healing, and the runs exercised what they claim to.
    expect(total('converged')).toBe(seeds.length);
    expect(total('acked')).toBeGreaterThan(0);
    expect(total('readsServed')).toBeGreaterThan(0);
    if (seeds.length >= 50) {
      for (const k of ['convergedDuringChaos', 'declaredChanges', 'addLearner', 'promote', 'remove', 'transferLeadership', 'wipes', 'lostDataRemovals', 'rejoinsAfterWipe', 'staleRejoins', 'grantsChecked']) {
        expect(total(k), k).toBeGreaterThan(0);
      }
    }
  }, 900_000);
}
