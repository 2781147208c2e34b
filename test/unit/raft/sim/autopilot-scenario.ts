// One randomized autopilot run per seed: a 3- or 5-voter cluster with a
// client writing, where every node that believes it leads runs
// decideAutopilot each step (input built by the driver's own autopilotInputFrom
// from the core's status and what the simulation lets it observe) and applies the action. Meanwhile the declared member
// list changes (grow, shrink, replace, re-declare a node with stale state),
// nodes crash, pause, are partitioned, and lose their disks mid-change. After
// every step: the Checker's safety invariants plus autopilot's own (one conf
// change at a time, quorum rule, leader never removes itself, a node awaiting
// join never grants a vote). After healing, the configuration must equal the
// declared set (all voters) and every acknowledged write be on every member.

import { autopilotInputFrom, decideAutopilot, type AutopilotAction, type AutopilotInput } from '../../../../server/raft/autopilot/index.js';
import { SeededRng, type NodeId, type RaftNode } from '../../../../server/raft/core/index.js';
import { InvariantViolation } from './checker.js';
import { Cluster, type SimNode } from './cluster.js';
import { CALM } from './network.js';
import type { SeedResult } from './scenario.js';

export interface AutopilotScenarioOptions {
  readonly chaosSteps?: number;
  readonly maxHealSteps?: number;
}

const ELECTION_TICK = 10;
/** Learners must be healthy and caught up this many steps before promotion. */
const STABILIZATION = 15;
/** Ids the declared list draws from (so removed ids come back with stale state). */
const ID_POOL = 8;

interface Tracking {
  /** Leader incarnation ("id@term") the stability times belong to. */
  key: string;
  since: Map<NodeId, number>;
}

class AutopilotRun {
  readonly stats: Record<string, number> = {
    declaredChanges: 0,
    addLearner: 0,
    promote: 0,
    remove: 0,
    transferLeadership: 0,
    blocked: 0,
    wipes: 0,
    lostDataRemovals: 0,
    rejoinsAfterWipe: 0,
    staleRejoins: 0,
    convergedDuringChaos: 0,
    grantsChecked: 0,
  };
  declared: NodeId[];
  /** Data id recorded when each member was (last) added; compared with the node's current one. */
  readonly addedDataId = new Map<NodeId, number>();
  private readonly tracking = new Map<NodeId, Tracking>();
  private readonly promotionLag: number;
  private wasConverged = true;
  /** Nodes wiped and not yet re-added since. */
  private readonly wiped = new Set<NodeId>();
  /** Ids that were members once, were removed, and were declared again. */
  private readonly redeclared = new Set<NodeId>();

  constructor(
    readonly c: Cluster,
    readonly rng: SeededRng,
    size: number,
    maxMsgEntries: number,
  ) {
    this.declared = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    for (const id of this.declared) this.addedDataId.set(id, c.nodes.get(id)?.dataId ?? 0);
    this.promotionLag = maxMsgEntries; // the core's default promotionLag
    c.onGrant = (voter, m, wasAwaiting) => {
      this.stats['grantsChecked'] = (this.stats['grantsChecked'] ?? 0) + 1;
      if (wasAwaiting) {
        throw new InvariantViolation(`${voter.id} granted a ${m.type} to ${m.to} while awaiting join (data wiped)`);
      }
    };
  }

  private bump(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }

  // ---- the driver's side: build the input -------------------------------------

  /** The input the server driver would build on `leader` (autopilotInputFrom), from what the simulation lets it observe. */
  buildInput(leader: SimNode, raft: RaftNode): AutopilotInput {
    const c = this.c;
    const st = raft.status();
    const key = `${leader.id}@${st.term}`;
    let tr = this.tracking.get(leader.id);
    if (!tr || tr.key !== key) {
      tr = { key, since: new Map() };
      this.tracking.set(leader.id, tr);
    }
    const { input, stableSince } = autopilotInputFrom(st, {
      self: leader.id,
      now: c.now,
      declared: this.declared,
      member: (id) => {
        const heard = c.heard.get(`${leader.id}<${id}`);
        const node = c.nodes.get(id);
        return {
          healthy: (st.progress.get(id)?.recentActive ?? false) || (heard !== undefined && c.now - heard <= ELECTION_TICK),
          // What the leader's probe would see: the raft dir's data id differs from the one recorded at add time.
          lostData: node !== undefined && this.addedDataId.has(id) && node.dataId !== this.addedDataId.get(id),
        };
      },
      reachable: (id) => {
        const n = c.nodes.get(id);
        return n?.raft !== undefined && !c.isPaused(n) && c.net.canTalk(leader.id, id);
      },
      stableSince: tr.since,
      stabilizationMs: STABILIZATION,
      promotionLag: this.promotionLag,
    });
    tr.since = stableSince;
    return input;
  }

  /** Every node that believes it leads runs autopilot (stale leaders too: their proposals must fail safely). */
  runAutopilot(): void {
    for (const n of this.c.live()) {
      const raft = n.raft;
      if (!raft || this.c.isPaused(n) || raft.raft.role !== 'leader') continue;
      const input = this.buildInput(n, raft);
      const action = decideAutopilot(input);
      this.checkAction(input, action);
      this.apply(n, raft, input, action);
    }
  }

  private checkAction(input: AutopilotInput, a: AutopilotAction): void {
    if (a.kind === 'wait' && a.blocked) this.bump('blocked');
    if (a.kind === 'remove') {
      if (a.id === input.self) throw new InvariantViolation(`autopilot on ${input.self} removes itself`);
      if (input.voters.includes(a.id)) {
        const left = input.voters.filter((v) => v !== a.id);
        const healthy = left.filter((v) => {
          if (v === input.self) return true;
          const s = input.servers.get(v);
          return s !== undefined && s.healthy && !s.lostData;
        });
        if (left.length === 0 || healthy.length < Math.floor(left.length / 2) + 1) {
          throw new InvariantViolation(
            `quorum rule: ${input.self} removes voter ${a.id} leaving ${healthy.length} healthy of ${left.length} voters`,
          );
        }
      }
    }
  }

  private apply(n: SimNode, raft: RaftNode, input: AutopilotInput, a: AutopilotAction): void {
    const c = this.c;
    const propose = (type: 'addLearner' | 'addVoter' | 'removeNode', id: NodeId): boolean => {
      // One change at a time, checked against the log itself: nothing unapplied may be a conf change.
      const hadUnapplied = this.unappliedConfChanges(raft) > 0;
      const res = raft.proposeConfChange({ type, nodeId: id });
      if (res.ok && hadUnapplied) {
        throw new InvariantViolation(`${n.id} proposed ${type} ${id} while a conf change was unapplied in its log`);
      }
      c.trace(`autopilot ${n.id}: ${type} ${id} (${a.reason}): ${res.ok ? `index ${res.index}` : res.reason}`);
      return res.ok;
    };
    switch (a.kind) {
      case 'none':
      case 'wait':
        return;
      case 'addLearner': {
        const node = c.nodes.get(a.id);
        if (propose('addLearner', a.id)) {
          this.bump('addLearner');
          // The leader records the data id its probe returned (replicated in the real driver).
          this.addedDataId.set(a.id, node?.dataId ?? 0);
          if (this.wiped.delete(a.id)) this.bump('rejoinsAfterWipe');
          if (this.redeclared.delete(a.id)) this.bump('staleRejoins');
        }
        return;
      }
      case 'promote':
        if (propose('addVoter', a.id)) this.bump('promote');
        return;
      case 'remove':
        if (propose('removeNode', a.id)) {
          this.bump('remove');
          if (input.servers.get(a.id)?.lostData) this.bump('lostDataRemovals');
        }
        return;
      case 'transferLeadership':
        if (raft.raft.leadTransferee !== a.to) {
          raft.transferLeadership(a.to);
          this.bump('transferLeadership');
          c.trace(`autopilot ${n.id}: transfer leadership to ${a.to} (${a.reason})`);
        }
        return;
    }
  }

  /** Conf change entries in (applied, last] of a node's log. */
  unappliedConfChanges(raft: RaftNode): number {
    const log = raft.raft.log;
    const lo = Math.max(log.applied + 1, log.firstIndex());
    const hi = log.lastIndex() + 1;
    if (lo >= hi) return 0;
    const ents = log.slice(lo, hi, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) ?? [];
    return ents.filter((e) => e.type === 'confChange').length;
  }

  /** Per-step invariant: no leader's log holds two conf changes above the cluster's commit point. */
  checkStep(): void {
    let globalCommit = 0;
    for (const n of this.c.nodes.values()) globalCommit = Math.max(globalCommit, n.storage.hardState().commit);
    for (const n of this.c.live()) {
      const raft = n.raft;
      if (!raft || raft.raft.role !== 'leader') continue;
      const log = raft.raft.log;
      const lo = Math.max(globalCommit + 1, log.firstIndex());
      const hi = log.lastIndex() + 1;
      if (lo >= hi) continue;
      const ents = log.slice(lo, hi, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) ?? [];
      const ccs = ents.filter((e) => e.type === 'confChange');
      if (ccs.length > 1) {
        throw new InvariantViolation(
          `leader ${n.id} has ${ccs.length} uncommitted conf changes (at ${ccs.map((e) => e.index).join(', ')}; cluster commit ${globalCommit})`,
        );
      }
    }
  }

  // ---- the operator's side: the declared list and the processes ------------------

  changeDeclared(): void {
    const rng = this.rng;
    const pool = Array.from({ length: ID_POOL }, (_, i) => `n${i + 1}`);
    const others = pool.filter((id) => !this.declared.includes(id));
    const before = this.declared.join(',');
    const pick = (): NodeId => {
      // Prefer ids never used (fresh disks); sometimes one with stale state from an earlier membership.
      const fresh = others.filter((id) => !this.c.nodes.has(id));
      const stale = others.filter((id) => this.c.nodes.has(id));
      const from = fresh.length > 0 && (stale.length === 0 || rng.chance(0.6)) ? fresh : stale;
      const id = rng.pick(from);
      others.splice(others.indexOf(id), 1);
      if (this.c.nodes.has(id)) this.redeclared.add(id);
      return id;
    };
    const size = this.declared.length;
    const r = rng.next();
    if (r < 0.35) {
      // replace one member (maybe the leader)
      const out = rng.pick(this.declared);
      this.declared = [...this.declared.filter((id) => id !== out), pick()];
    } else {
      const target = r < 0.45 ? (size === 1 ? 3 : 1) : size === 5 ? 3 : size === 3 ? 5 : 3;
      const next = [...this.declared];
      while (next.length > target) next.splice(rng.int(next.length), 1);
      while (next.length < target) next.push(pick());
      this.declared = next;
    }
    this.declared.sort();
    this.bump('declaredChanges');
    this.c.trace(`DECLARED ${before} -> ${this.declared.join(',')}`);
  }

  /** Processes follow the declared list (like a StatefulSet): start declared ones, stop undeclared non-members. */
  manageProcesses(restartChance: number): void {
    const c = this.c;
    const l = c.leader();
    const cs = l?.raft?.basicStatus().confState;
    const members = new Set(cs ? [...cs.voters, ...cs.learners] : []);
    for (const id of this.declared) {
      const n = c.nodes.get(id);
      if (!n) c.startProcess(id);
      else if (!n.raft && this.rng.chance(restartChance)) c.startProcess(id);
    }
    for (const n of c.nodes.values()) {
      if (n.raft && !this.declared.includes(n.id) && l && !members.has(n.id) && this.rng.chance(0.05)) {
        c.crash(n.id);
        n.removed = true; // scaled down: stays stopped unless declared again
        c.trace(`${n.id} stopped (not declared, not a member)`);
      }
    }
    // Crashed pods come back, undeclared ones too: they are only scaled away once no longer members.
    for (const n of c.nodes.values()) {
      if (!n.raft && !n.removed && this.rng.chance(restartChance)) c.restart(n.id);
    }
  }

  maybeWipe(): void {
    const c = this.c;
    const l = c.leader();
    const st = l?.raft?.basicStatus();
    const cs = st?.confState;
    // One lost disk at a time, in a stable configuration of 3+ voters: a wipe while
    // a shrink to 2 voters is in flight is a double fault no automation can undo
    // (the surviving voter needs the wiped one's vote after any crash).
    if (!l || !st || !cs || cs.voters.length < 3 || st.pendingConfIndex > st.applied || this.wiped.size > 0) return;
    const candidates = [...cs.voters, ...cs.learners].filter((id) => id !== l.id);
    if (candidates.length === 0) return;
    const id = this.rng.pick(candidates);
    c.wipe(id);
    this.wiped.add(id);
    this.bump('wipes');
  }

  /** Leader's configuration equals the declared set, all voters, and nothing is in flight. */
  configConverged(): boolean {
    const l = this.c.leader();
    const st = l?.raft?.basicStatus();
    if (!st) return false;
    return (
      st.confState.learners.length === 0 &&
      st.confState.voters.join(',') === this.declared.join(',') &&
      st.pendingConfIndex <= st.applied
    );
  }

  noteConvergence(): void {
    const now = this.configConverged();
    if (now && !this.wasConverged) this.bump('convergedDuringChaos');
    this.wasConverged = now;
  }
}

export function runAutopilotSeed(seed: number, opts: AutopilotScenarioOptions = {}): SeedResult {
  const plan = new SeededRng(seed * 104729 + 31);
  const size = seed % 2 === 0 ? 3 : 5;
  const intensity = plan.next();
  const maxMsgEntries = 2 + plan.int(8);
  const c = new Cluster({
    seed,
    size,
    faults: { drop: intensity * 0.1, duplicate: plan.next() * 0.05, maxDelay: plan.int(4) },
    persistChance: 0.7 + plan.next() * 0.3,
    electionTick: ELECTION_TICK,
    maxMsgEntries,
  });
  const run = new AutopilotRun(c, plan, size, maxMsgEntries);
  const chaosSteps = opts.chaosSteps ?? 1200;
  const maxHeal = opts.maxHealSteps ?? 3000;
  const crashRate = 0.001 + intensity * 0.006;
  const partitionRate = 0.002 + intensity * 0.01;
  const writeRate = 0.2 + plan.next() * 0.4;
  const readRate = 0.05 + plan.next() * 0.15;
  const declareRate = 3 / chaosSteps;
  const wipeRate = 1.5 / chaosSteps;
  let healed = false;

  try {
    for (let s = 0; s < chaosSteps; s++) {
      if (plan.chance(declareRate)) run.changeDeclared();
      if (plan.chance(wipeRate)) run.maybeWipe();
      chaos(c, plan, { crashRate, partitionRate, writeRate, readRate });
      run.manageProcesses(0.05);
      run.runAutopilot();
      c.step();
      c.reapRemoved();
      run.checkStep();
      run.noteConvergence();
    }
    // Heal: calm network, every declared node and every member up, drivers always persist.
    healed = true;
    c.net.heal();
    c.net.faults = CALM;
    c.unpauseAll();
    c.persistChance = 1;
    c.trace(`HEAL declared=${run.declared.join(',')}`);
    let steps = 0;
    let finalWrite = false;
    for (; steps < maxHeal; steps++) {
      run.manageProcesses(1);
      run.runAutopilot();
      c.step();
      c.reapRemoved();
      run.checkStep();
      const l = c.leader();
      if (!finalWrite && l && c.proposeWrite(l.id)) finalWrite = true;
      if (finalWrite && steps > 5 && run.configConverged() && c.converged() && allDeclaredLive(c, run.declared)) break;
      if (steps % 40 === 39) finalWrite = false; // the proposal may have been lost; try again
    }
    if (!(run.configConverged() && c.converged() && allDeclaredLive(c, run.declared))) {
      const l = c.leader();
      const cs = l?.raft?.basicStatus().confState;
      const st = [...c.nodes.values()]
        .map((n) => `${n.id}:${n.raft ? `${n.raft.raft.role}/t${n.raft.raft.term}/c${n.raft.raft.log.committed}/a${n.sm.appliedIndex}/l${n.raft.raft.log.lastIndex()}${n.awaitingJoin ? '/awaiting' : ''}` : n.removed ? 'removed' : 'down'}`)
        .join(' ');
      const input = l?.raft ? decideAutopilot(run.buildInput(l, l.raft)) : undefined;
      throw new InvariantViolation(
        `no convergence ${maxHeal} steps after healing: declared ${run.declared.join(',')}, leader ${l?.id ?? 'none'} voters ${cs?.voters.join(',') ?? '-'} learners ${cs?.learners.join(',') ?? '-'}; last decision ${input ? `${input.kind}: ${input.reason}` : '-'}; ${st}`,
      );
    }
    // Every acknowledged write on every member (the live nodes are exactly the declared members).
    c.checkDurability();
    return {
      seed,
      size,
      ok: true,
      stats: {
        ...run.stats,
        steps: chaosSteps + steps,
        healSteps: steps,
        acked: c.acked.length,
        readsServed: c.readsServed,
        crashes: c.crashes,
        leaders: c.checker.leadersElected,
        snapshotsInstalled: c.snapshotsInstalled,
        confChanges: c.confChangesApplied,
        converged: 1,
      },
    };
  } catch (err) {
    const msg = err instanceof Error ? `${err.name}: ${err.message}${err instanceof InvariantViolation ? '' : `\n${err.stack ?? ''}`}` : String(err);
    return { seed, size, ok: false, error: `${healed ? '[after heal] ' : ''}${msg}`, trace: c.traceTail(), stats: run.stats };
  }
}

function allDeclaredLive(c: Cluster, declared: readonly NodeId[]): boolean {
  const live = new Set(c.live().map((n) => n.id));
  return live.size === declared.length && declared.every((id) => live.has(id));
}

interface Rates {
  crashRate: number;
  partitionRate: number;
  writeRate: number;
  readRate: number;
}

/** Client traffic, crashes, pauses, partitions and compaction (membership is autopilot's job here). */
function chaos(c: Cluster, rng: SeededRng, r: Rates): void {
  const ids = [...c.nodes.values()].filter((n) => !n.removed).map((n) => n.id);
  const leader = c.leader();
  if (rng.chance(r.writeRate)) {
    const believers = c.live().filter((n) => n.raft?.raft.role === 'leader');
    const target = believers.length > 0 && rng.chance(0.9) ? rng.pick(believers).id : ids.length > 0 ? rng.pick(ids) : undefined;
    if (target) for (let k = 1 + rng.int(3); k > 0; k--) c.proposeWrite(target);
  }
  if (rng.chance(r.readRate)) {
    // Linearizable reads (checked against acknowledged writes) while membership changes.
    const live = c.live();
    const believers = live.filter((n) => n.raft?.raft.role === 'leader');
    const pool = believers.length > 0 && rng.chance(0.5) ? believers : live;
    if (pool.length > 0) c.issueRead(rng.pick(pool).id);
  }
  if (rng.chance(r.crashRate)) {
    const live = c.live();
    const target = leader && rng.chance(0.4) ? leader : live.length > 0 ? rng.pick(live) : undefined;
    if (target) c.crash(target.id);
  }
  for (const n of c.nodes.values()) {
    if (!n.raft && !n.removed && rng.chance(0.03)) c.restart(n.id);
  }
  if (rng.chance(r.crashRate)) {
    const live = c.live();
    if (live.length > 0) c.pause(rng.pick(live).id, 5 + rng.int(30));
  }
  if (rng.chance(r.partitionRate)) {
    if (c.net.isPartitioned() && rng.chance(0.5)) {
      c.net.heal();
      c.trace('partition healed');
    } else if (ids.length > 1) {
      const shuffled = [...ids];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = shuffled[i] as NodeId;
        shuffled[i] = shuffled[j] as NodeId;
        shuffled[j] = t;
      }
      const cut = 1 + rng.int(Math.max(1, Math.floor(shuffled.length / 2)));
      const groups = [shuffled.slice(0, cut), shuffled.slice(cut)];
      c.net.partition(groups);
      c.trace(`partition ${groups.map((g) => `{${g.join(',')}}`).join(' ')}`);
    }
  } else if (c.net.isPartitioned() && rng.chance(0.03)) {
    c.net.heal();
    c.trace('partition healed');
  }
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
