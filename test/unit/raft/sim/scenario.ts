// One randomized simulation run per seed: a chaos phase (network faults,
// partitions, crashes with loss of unsynced state, restarts, membership
// changes, leadership transfers, compaction) while a client writes and
// reads, then a healing phase after which every acknowledged write must be
// on every live node.

import { SeededRng, type NodeId } from '../../../../server/raft/core/index.js';
import { InvariantViolation } from './checker.js';
import { Cluster, type LeaseOptions } from './cluster.js';
import { CALM } from './network.js';

export interface SeedResult {
  readonly seed: number;
  readonly size: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly trace?: string;
  readonly stats: Record<string, number>;
}

export interface ScenarioOptions {
  readonly chaosSteps?: number;
  readonly maxHealSteps?: number;
  readonly trace?: boolean;
  /** Lease-based reads with drifting clocks (steps are then a fraction of a tick). */
  readonly lease?: LeaseOptions;
}

/** Cluster size for a seed: 3 or 5 voters. */
export function sizeForSeed(seed: number): number {
  return seed % 4 < 2 ? 3 : 5;
}

export function runSeed(seed: number, opts: ScenarioOptions = {}): SeedResult {
  const plan = new SeededRng(seed * 7919 + 17);
  const size = sizeForSeed(seed);
  // Fault intensity varies per seed: some runs are calm, some brutal.
  const intensity = plan.next();
  const faults = {
    drop: intensity * 0.2,
    duplicate: plan.next() * 0.1,
    maxDelay: plan.int(5),
  };
  const c = new Cluster({
    seed,
    size,
    faults,
    persistChance: 0.6 + plan.next() * 0.4,
    maxMsgEntries: plan.chance(0.5) ? 1 + plan.int(2) : 1 + plan.int(16),
    trace: opts.trace ?? false,
    ...(opts.lease ? { lease: opts.lease } : {}),
  });
  const chaosSteps = opts.chaosSteps ?? 1000;
  const maxHeal = opts.maxHealSteps ?? 2000;
  const crashRate = 0.002 + intensity * 0.01;
  const partitionRate = 0.005 + intensity * 0.02;
  const writeRate = 0.1 + plan.next() * 0.4;
  const readRate = 0.1 + plan.next() * 0.2;
  const stats: Record<string, number> = {};
  let healed = false;

  try {
    for (let s = 0; s < chaosSteps; s++) {
      chaos(c, plan, { crashRate, partitionRate, writeRate, readRate, leaseRun: opts.lease !== undefined, stepsPerTick: opts.lease?.stepsPerTick ?? 1 });
      c.step();
      c.reapRemoved();
    }
    // Heal: calm network, everyone (except removed nodes) back up, drivers always persist.
    healed = true;
    c.net.heal();
    c.net.faults = CALM;
    c.unpauseAll();
    c.persistChance = 1;
    for (const n of c.nodes.values()) if (!n.raft && !n.removed) c.restart(n.id);
    c.trace('HEAL');
    let steps = 0;
    let finalWrite = false;
    for (; steps < maxHeal; steps++) {
      c.step();
      c.reapRemoved();
      const l = c.leader();
      if (!finalWrite && l && c.proposeWrite(l.id)) finalWrite = true;
      if (finalWrite && steps > 5 && c.converged()) break;
      if (steps % 40 === 39) finalWrite = false; // the proposal may have been lost; try again
    }
    if (!c.converged()) {
      const l = c.leader();
      const st = [...c.nodes.values()]
        .map((n) => `${n.id}:${n.raft ? `${n.raft.raft.role}/t${n.raft.raft.term}/c${n.raft.raft.log.committed}/a${n.sm.appliedIndex}/l${n.raft.raft.log.lastIndex()}` : n.removed ? 'removed' : 'down'}`)
        .join(' ');
      throw new InvariantViolation(`no convergence ${maxHeal} steps after healing (leader ${l?.id ?? 'none'}): ${st}`);
    }
    c.checkDurability();
    Object.assign(stats, {
      steps: chaosSteps + steps,
      acked: c.acked.length,
      readsServed: c.readsServed,
      leaseReads: c.leaseReads,
      leaders: c.checker.leadersElected,
      truncations: c.checker.truncations,
      truncatedEntries: c.checker.truncatedEntries,
      crashes: c.crashes,
      snapshotsInstalled: c.snapshotsInstalled,
      compactions: c.compactions,
      confChanges: c.confChangesApplied,
      messages: c.net.sent,
    });
    return { seed, size, ok: true, stats };
  } catch (err) {
    const msg = err instanceof Error ? `${err.name}: ${err.message}${err instanceof InvariantViolation ? '' : `\n${err.stack ?? ''}`}` : String(err);
    return { seed, size, ok: false, error: `${healed ? '[after heal] ' : ''}${msg}`, trace: c.traceTail(), stats };
  }
}

interface Rates {
  crashRate: number;
  partitionRate: number;
  writeRate: number;
  readRate: number;
  /** Lease runs read from every node that believes it leads (a deposed one included), to find a stale lease. */
  leaseRun: boolean;
  /** Simulation steps per tick: stalls are scaled so they still span several election timeouts. */
  stepsPerTick: number;
}

function chaos(c: Cluster, rng: SeededRng, r: Rates): void {
  const nodes = [...c.nodes.values()].filter((n) => !n.removed);
  const ids = nodes.map((n) => n.id);
  const leader = c.leader();

  // client traffic: bursts of writes to whoever believes it leads (possibly a stale leader)
  if (rng.chance(r.writeRate)) {
    const believers = c.live().filter((n) => n.raft?.raft.role === 'leader');
    const target = believers.length > 0 && rng.chance(0.9) ? rng.pick(believers).id : rng.pick(ids);
    const burst = 1 + rng.int(3);
    for (let k = 0; k < burst; k++) c.proposeWrite(target);
  }
  if (rng.chance(r.readRate)) {
    // Half the reads go to whoever believes it leads (possibly a stale leader), half anywhere.
    const live = c.live().filter((n) => !n.removed);
    const believers = live.filter((n) => n.raft?.raft.role === 'leader');
    const pool = believers.length > 0 && rng.chance(0.5) ? believers : live;
    if (pool.length > 0) c.issueRead(rng.pick(pool).id);
    if (r.leaseRun) for (const b of believers) if (rng.chance(0.5)) c.issueRead(b.id);
  }

  // crashes and restarts
  if (rng.chance(r.crashRate)) {
    // Leaders crash more often than others: that is what makes logs diverge.
    const live = c.live();
    const target = leader && rng.chance(0.5) ? leader : live.length > 0 ? rng.pick(live) : undefined;
    if (target) c.crash(target.id);
  }
  for (const n of nodes) {
    if (!n.raft && rng.chance(0.03)) c.restart(n.id);
  }

  // process pauses (a stalled node wakes up believing its stale view)
  if (rng.chance(r.crashRate)) {
    const live = c.live();
    if (live.length > 0) c.pause(rng.pick(live).id, (5 + rng.int(40)) * r.stepsPerTick);
  }

  // partitions
  if (rng.chance(r.partitionRate)) {
    if (c.net.isPartitioned() && rng.chance(0.5)) {
      c.net.heal();
      c.trace('partition healed');
    } else {
      const shuffled = [...ids].sort(() => 0); // stable copy
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = shuffled[i] as NodeId;
        shuffled[i] = shuffled[j] as NodeId;
        shuffled[j] = t;
      }
      if (leader && rng.chance(0.6)) {
        // Cut the leader off (alone or with one follower) while it keeps accepting writes.
        const k = shuffled.indexOf(leader.id);
        shuffled[k] = shuffled[0] as NodeId;
        shuffled[0] = leader.id;
      }
      const cut = rng.chance(0.6) ? 1 + rng.int(Math.floor(shuffled.length / 2)) : 1 + rng.int(Math.max(1, shuffled.length - 1));
      const groups = [shuffled.slice(0, cut), shuffled.slice(cut)];
      c.net.partition(groups);
      c.trace(`partition ${groups.map((g) => `{${g.join(',')}}`).join(' ')}`);
    }
  } else if (c.net.isPartitioned() && rng.chance(0.04)) {
    c.net.heal();
    c.trace('partition healed');
  }

  if (!leader?.raft) return;
  const raft = leader.raft;

  // leadership transfer
  if (rng.chance(0.01)) {
    const voters = raft.status().confState.voters.filter((v) => v !== leader.id);
    if (voters.length > 0) {
      const to = rng.pick(voters);
      raft.transferLeadership(to);
      c.trace(`transfer leadership ${leader.id} -> ${to}`);
    }
  }

  // membership changes
  if (rng.chance(0.01)) {
    const cs = raft.status().confState;
    const choice = rng.int(3);
    if (choice === 0 && cs.voters.length + cs.learners.length < 7) {
      const id = c.nextSpareId();
      if (!c.nodes.has(id)) {
        const res = raft.proposeConfChange({ type: 'addLearner', nodeId: id });
        c.trace(`propose addLearner ${id}: ${res.ok ? `index ${res.index}` : res.reason}`);
      }
    } else if (choice === 1 && cs.learners.length > 0) {
      const id = rng.pick(cs.learners);
      const res = raft.proposeConfChange({ type: 'addVoter', nodeId: id });
      c.trace(`propose promote ${id}: ${res.ok ? `index ${res.index}` : res.reason}`);
    } else if (choice === 2 && cs.voters.length >= 3) {
      const pool = [...cs.voters, ...cs.learners];
      const id = rng.pick(pool);
      const res = raft.proposeConfChange({ type: 'removeNode', nodeId: id });
      c.trace(`propose remove ${id}: ${res.ok ? `index ${res.index}` : res.reason}`);
    }
  }

  // compaction on a random live node
  if (rng.chance(0.03)) {
    const live = c.live();
    if (live.length > 0) {
      const n = rng.pick(live);
      const sm = n.sm;
      if (n.raft && sm.appliedIndex - n.storage.firstIndex() >= 5 && n.raft.raft.log.applied >= sm.appliedIndex) {
        if (n.raft.compact(sm.appliedIndex, sm.appliedTerm, sm.confState, sm.serialize())) {
          c.compactions++;
          c.trace(`${n.id} compacted to ${sm.appliedIndex}`);
        }
      }
    }
  }
}
