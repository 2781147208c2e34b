// Lease-based reads (server/raft/lease.ts) in the randomized simulation:
// leaders answer linearizable reads from a lease while machine clocks run at
// different rates, processes stall, networks partition and drop, nodes crash
// and restart, membership changes and leadership moves. The linearizability
// check (a read must see every write acknowledged before it began) stays
// green with the proven lease length. The staged cases below drive the two
// ways a lease could outlive its leadership (a stalled leader, a voter that
// restarts) step by step: safe with the proven bound and the restart rule,
// caught by the same check without them or just past the bound.
// RAFT_LEASE_SEEDS=<n> raises the seed count of the randomized runs.
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from './sim/checker.js';
import { Cluster, type LeaseOptions } from './sim/cluster.js';
import { CALM } from './sim/network.js';
import { runSeed, type SeedResult } from './sim/scenario.js';

const SEEDS = Number(process.env.RAFT_LEASE_SEEDS ?? 150);
const ELECTION_TICKS = 10; // the simulation's electionTick
const STEPS_PER_TICK = 3;
const CHAOS_STEPS = 3000;

function run(lease: LeaseOptions, seeds = SEEDS): SeedResult[] {
  return Array.from({ length: seeds }, (_, seed) => runSeed(seed, { lease, chaosSteps: CHAOS_STEPS, maxHealSteps: 6000 }));
}

const total = (rs: SeedResult[], k: string) => rs.reduce((s, r) => s + (r.stats[k] ?? 0), 0);

describe('lease-based reads in the simulation', () => {
  it(`stay linearizable with clocks drifting up to the 10 % bound (${SEEDS} seeds)`, () => {
    const results = run({ rho: 0.1, drift: 0.1, stepsPerTick: STEPS_PER_TICK });
    const failed = results.filter((r) => !r.ok);
    expect(failed.map((r) => `seed ${r.seed}: ${r.error}\n${r.trace}`).slice(0, 1)).toEqual([]);
    console.log(`lease sim: ${total(results, 'leaseReads')} reads from a lease, ${total(results, 'readsServed')} reads in all, ${total(results, 'leaders')} leaders, ${total(results, 'crashes')} crashes, ${total(results, 'confChanges')} conf changes`);
    // Most reads on a leader come from the lease, or the run proved little.
    expect(total(results, 'leaseReads')).toBeGreaterThan(total(results, 'readsServed') / 10);
  }, 600_000);
});

// ---- the two ways a lease could outlive its leadership, staged step by step --------------------

const STAGED_STEPS_PER_TICK = 10;

function stagedCluster(lease: Partial<LeaseOptions>, seed: number): Cluster {
  const c = new Cluster({ seed, size: 3, faults: CALM, persistChance: 1, lease: { rho: 0.1, drift: 0, stepsPerTick: STAGED_STEPS_PER_TICK, ...lease } });
  stepUntil(c, 'a leader with its no-op applied everywhere', () => c.converged());
  return c;
}

function stepUntil(c: Cluster, what: string, done: () => boolean, maxTicks = 200): void {
  for (let i = 0; i < maxTicks * STAGED_STEPS_PER_TICK; i++) {
    if (done()) return;
    c.step();
  }
  throw new Error(`never reached: ${what}`);
}

/** A lease read on `leader` confirmed by a quorum round; returns when the round was released. */
function confirmLease(c: Cluster, leader: string): void {
  expect(c.issueRead(leader)).toBe(true);
  stepUntil(c, 'the read round released', () => c.reads.size === 0);
}

/** After another leader acknowledged a write, a read on the old leader: 'stale' if the checker caught it. */
function readOnOldLeader(c: Cluster, old: string): 'stale' | 'lease' | 'round' {
  const before = c.leaseReads;
  try {
    c.issueRead(old);
  } catch (err) {
    if (err instanceof InvariantViolation && /linearizability/.test(err.message)) return 'stale';
    throw err;
  }
  return c.leaseReads > before ? 'lease' : 'round';
}

function newLeaderAcks(c: Cluster, old: string): void {
  stepUntil(c, 'another leader', () => c.live().some((n) => n.id !== old && n.raft?.raft.role === 'leader' && n.raft.raft.log.term(n.raft.raft.log.committed) === n.raft.raft.term));
  const next = c.live().find((n) => n.id !== old && n.raft?.raft.role === 'leader')!;
  const acked = c.acked.length;
  expect(c.proposeWrite(next.id)).toBe(true);
  stepUntil(c, 'the write acknowledged', () => c.acked.length > acked);
}

/**
 * The leader stalls right after confirming its lease (its clock runs on, its timer and
 * messages wait) while the others' clocks run 10 % fast; they elect a leader that
 * acknowledges a write; the old leader wakes and is asked to read before it hears of it.
 */
function stalledLeader(lease: Partial<LeaseOptions>, seed: number): string {
  const c = stagedCluster(lease, seed);
  const old = c.leader()!.id;
  for (const n of c.nodes.values()) n.rate = n.id === old ? 1 : 1.1;
  confirmLease(c, old);
  c.pause(old, 1e9);
  newLeaderAcks(c, old);
  c.nodes.get(old)!.pausedUntil = 0;
  return readOnOldLeader(c, old);
}

/**
 * A follower acknowledges the leader's round, crashes and restarts at once; the third
 * node, out of touch with the leader for long, asks it for votes right then.
 */
function restartedVoter(lease: Partial<LeaseOptions>, seed: number): string {
  const c = stagedCluster(lease, seed);
  const old = c.leader()!.id;
  const [f1, f2] = [...c.nodes.keys()].filter((id) => id !== old) as [string, string];
  c.net.partition([[old, f1], [f2]]);
  const r2 = () => c.nodes.get(f2)!.raft!.raft;
  // f2 times out and campaigns in vain; wait until its next campaign is two ticks away.
  stepUntil(c, `${f2} campaigning`, () => r2().role === 'preCandidate');
  stepUntil(c, `${f2} two ticks before campaigning again`, () => r2().randomizedElectionTimeout - r2().electionElapsed === 2);
  confirmLease(c, old);
  c.crash(f1);
  c.restart(f1);
  c.net.partition([[old], [f1, f2]]);
  newLeaderAcks(c, old);
  return readOnOldLeader(c, old);
}

/**
 * The leader hands leadership over (TimeoutNow: the target's campaign ignores leases) and
 * stalls right after sending it; the target wins and acknowledges a write.
 */
function transferredAway(lease: Partial<LeaseOptions>, seed: number): string {
  const c = stagedCluster(lease, seed);
  const old = c.leader()!.id;
  const to = [...c.nodes.keys()].find((id) => id !== old)!;
  confirmLease(c, old);
  c.nodes.get(old)!.raft!.transferLeadership(to);
  stepUntil(c, 'TimeoutNow sent', () => c.net.pending((m) => m.type === 'timeoutNow') > 0, 5);
  c.pause(old, 1e9);
  newLeaderAcks(c, old);
  c.nodes.get(old)!.pausedUntil = 0;
  return readOnOldLeader(c, old);
}

describe('a lease that could outlive its leadership, staged', () => {
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8];

  it('a leader that stalled past its lease asks a quorum again instead of reading stale', () => {
    expect(seeds.map((s) => stalledLeader({}, s))).toEqual(seeds.map(() => 'round'));
  });

  it('is caught when the lease is as long as two election timeouts', () => {
    expect(seeds.map((s) => stalledLeader({ unsafeTicks: 2 * ELECTION_TICKS }, s))).toEqual(seeds.map(() => 'stale'));
  });

  it('is caught just past the proven bound: 9.5 tick intervals instead of 9/1.1 (the bound is nearly tight)', () => {
    expect(seeds.map((s) => stalledLeader({ unsafeTicks: 9.5 }, s))).toContain('stale');
  });

  it('a restarted voter does not vote while the lease it vouched for may last', () => {
    expect(seeds.map((s) => restartedVoter({}, s))).not.toContain('stale');
  });

  it('is caught when restarted voters may vote at once', () => {
    expect(seeds.map((s) => restartedVoter({ unsafeNoStartWindow: true }, s))).toEqual(seeds.map(() => 'stale'));
  });

  it('a leader that sent TimeoutNow no longer reads from its lease', () => {
    expect(seeds.map((s) => transferredAway({}, s))).toEqual(seeds.map(() => 'round'));
  });

  it('is caught when the lease survives the TimeoutNow', () => {
    expect(seeds.map((s) => transferredAway({ unsafeKeepOnTransfer: true }, s))).toEqual(seeds.map(() => 'stale'));
  });
});
