// Autopilot's pure decision (server/raft/autopilot/decide.ts), rule by rule,
// the core's awaitingJoin (a wiped node neither campaigns nor votes until
// re-added as a learner), and what the driver (server/raft/driver/autopilot.ts)
// probes each round.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Autopilot, type AutopilotDeps } from '../../../server/raft/driver/autopilot.js';
import type { DriverContext } from '../../../server/raft/driver/context.js';
import type { Membership } from '../../../server/raft/driver/membership.js';
import type { ProbeReply } from '../../../server/raft/probe.js';
import type { Command } from '../../../server/store/commands.js';
import type { DeclaredMember } from '../../../server/store/members.js';
import {
  autopilotInputFrom, autopilotState, decideAutopilot, type AutopilotInput, type AutopilotObservations, type AutopilotServer, type AutopilotStatus,
} from '../../../server/raft/autopilot/index.js';
import { MemoryStorage, type ProgressStatus } from '../../../server/raft/core/index.js';
import { enc, TestNet } from './harness.js';

const NOW = 100_000;
const STABLE = 10_000;

interface Srv {
  voter?: boolean;
  healthy?: boolean;
  stableSince?: number | null;
  match?: number;
  lostData?: boolean;
}

/** Build an input: `servers` maps id -> overrides (default: healthy voter, caught up, stable long ago). */
function input(o: {
  self?: string;
  declared?: readonly string[] | null;
  voters: readonly string[];
  learners?: readonly string[];
  servers?: Record<string, Srv>;
  reachable?: readonly string[];
  pending?: boolean;
  commit?: number;
}): AutopilotInput {
  const self = o.self ?? 'a';
  const learners = o.learners ?? [];
  const commit = o.commit ?? 100;
  const servers = new Map<string, AutopilotServer>();
  for (const id of [...o.voters, ...learners]) {
    if (id === self) continue;
    const s = o.servers?.[id] ?? {};
    servers.set(id, {
      id,
      voter: o.voters.includes(id),
      healthy: s.healthy ?? true,
      stableSince: s.stableSince === undefined ? 0 : s.stableSince,
      match: s.match ?? commit,
      lostData: s.lostData ?? false,
    });
  }
  return {
    self,
    now: NOW,
    declared: o.declared === undefined ? [...o.voters] : o.declared,
    voters: o.voters,
    learners,
    pendingConfChange: o.pending ?? false,
    commitIndex: commit,
    servers,
    reachable: new Set(o.reachable ?? []),
    stabilizationMs: STABLE,
    promotionLag: 8,
  };
}

const kindOf = (i: AutopilotInput): string => {
  const a = decideAutopilot(i);
  return a.kind === 'transferLeadership' ? `transferLeadership:${a.to}` : 'id' in a ? `${a.kind}:${a.id}` : a.kind;
};

describe('decideAutopilot', () => {
  it('waits while a conf change is pending, whatever else is due', () => {
    const i = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b'], reachable: [], pending: true });
    expect(decideAutopilot(i)).toMatchObject({ kind: 'wait' });
  });

  it('is idle when nothing is declared (null or empty): never "remove everyone"', () => {
    for (const declared of [null, []]) {
      const a = decideAutopilot(input({ voters: ['a', 'b', 'c'], learners: ['x'], declared }));
      expect(a.kind).toBe('none');
      expect(a.reason).toMatch(/no members declared/);
    }
  });

  it('is converged (none) when the configuration equals the declared set', () => {
    const a = decideAutopilot(input({ voters: ['a', 'b', 'c'] }));
    expect(a).toMatchObject({ kind: 'none', reason: expect.stringMatching(/matches/) });
  });

  it('removes an undeclared learner first, before anything else', () => {
    const i = input({
      voters: ['a', 'b', 'c'],
      learners: ['x', 'l'],
      declared: ['a', 'b', 'l', 'n'],
      reachable: ['n'],
      servers: { c: { lostData: true } },
    });
    expect(kindOf(i)).toBe('remove:x');
  });

  it('removes a learner that lost its data, regardless of quorum', () => {
    const i = input({ voters: ['a', 'b', 'c'], learners: ['l'], declared: ['a', 'b', 'c', 'l'], servers: { l: { lostData: true }, b: { healthy: false }, c: { healthy: false } } });
    expect(kindOf(i)).toBe('remove:l');
  });

  it('removes a voter that lost its data (it is re-added later as a learner), before adding others', () => {
    const i = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b', 'c', 'd'], reachable: ['d'], servers: { c: { lostData: true } } });
    expect(kindOf(i)).toBe('remove:c');
  });

  it('refuses to remove a lost-data voter when the healthy voters left are no quorum, and says blocked', () => {
    // left {a, b}: b unhealthy -> 1 healthy of 2
    const i = input({ voters: ['a', 'b', 'c'], servers: { b: { healthy: false }, c: { lostData: true } } });
    const a = decideAutopilot(i);
    expect(a).toMatchObject({ kind: 'wait', blocked: true });
    expect(a.reason).toMatch(/lost its data/);
  });

  it('a lost-data voter does not count as healthy for the quorum rule', () => {
    // 5 voters: c lost data, d dead, e undeclared alive. Removing e leaves a,b,c,d: healthy a,b (c cannot vote) = 2 < 3.
    const i = input({
      voters: ['a', 'b', 'c', 'd', 'e'],
      declared: ['a', 'b', 'c', 'd'],
      servers: { c: { lostData: true, healthy: true }, d: { healthy: false } },
    });
    // c itself: left a,b,d,e healthy a,b,e = 3 of 4 -> allowed
    expect(kindOf(i)).toBe('remove:c');
  });

  it('adds a declared reachable non-member as a learner (sorted, one at a time)', () => {
    const i = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b', 'c', 'e', 'd'], reachable: ['e', 'd'] });
    expect(kindOf(i)).toBe('addLearner:d');
  });

  it('never adds an unreachable or undeclared node', () => {
    const i = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b', 'c', 'd'], reachable: ['z'] });
    const a = decideAutopilot(i);
    expect(a.kind).toBe('wait');
    expect(a.reason).toMatch(/d has not answered/);
  });

  it('promotes a learner only when healthy, caught up and stable for stabilizationMs', () => {
    const base = { voters: ['a', 'b', 'c'], learners: ['d'], declared: ['a', 'b', 'c', 'd'], commit: 100 };
    expect(kindOf(input({ ...base, servers: { d: { stableSince: NOW - STABLE } } }))).toBe('promote:d');
    expect(kindOf(input({ ...base, servers: { d: { stableSince: NOW - STABLE + 1 } } }))).toBe('wait');
    expect(kindOf(input({ ...base, servers: { d: { stableSince: null } } }))).toBe('wait');
    expect(kindOf(input({ ...base, servers: { d: { healthy: false } } }))).toBe('none');
    expect(kindOf(input({ ...base, servers: { d: { match: 91 } } }))).toBe('wait'); // 91 + 8 < 100
    expect(kindOf(input({ ...base, servers: { d: { match: 92 } } }))).toBe('promote:d');
  });

  it('adding a reachable learner comes before promoting another', () => {
    const i = input({ voters: ['a', 'b', 'c'], learners: ['d'], declared: ['a', 'b', 'c', 'd', 'e'], reachable: ['e'] });
    expect(kindOf(i)).toBe('addLearner:e');
  });

  it('promotes before removing an undeclared voter (replace = add, promote, then remove)', () => {
    const i = input({ voters: ['a', 'b', 'c'], learners: ['d'], declared: ['a', 'b', 'd'] });
    expect(kindOf(i)).toBe('promote:d');
  });

  it('does not remove a healthy undeclared voter while a declared learner is still catching up', () => {
    const i = input({ voters: ['a', 'b', 'c'], learners: ['d'], declared: ['a', 'b', 'd'], servers: { d: { stableSince: NOW - 1 } } });
    expect(decideAutopilot(i)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/learner d is catching up/) });
    // a dead undeclared voter is cleaned up at once
    const dead = input({ voters: ['a', 'b', 'c'], learners: ['d'], declared: ['a', 'b', 'd'], servers: { d: { stableSince: NOW - 1 }, c: { healthy: false } } });
    expect(kindOf(dead)).toBe('remove:c');
  });

  it('keeps a healthy undeclared voter while no more voters than declared remain (replace never dips below the declared size)', () => {
    // d declared but not up yet: c stays
    const i = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b', 'd'] });
    expect(decideAutopilot(i)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/keeping voter c/) });
    expect(decideAutopilot(i)).not.toHaveProperty('blocked');
    // the same for the leader itself
    const self = input({ self: 'c', voters: ['a', 'b', 'c'], declared: ['a', 'b', 'd'] });
    expect(decideAutopilot(self)).toMatchObject({ kind: 'wait', reason: expect.stringMatching(/keeping leader c/) });
    // a dead one is cleaned up anyway
    const dead = input({ voters: ['a', 'b', 'c'], declared: ['a', 'b', 'd'], servers: { c: { healthy: false } } });
    expect(kindOf(dead)).toBe('remove:c');
    // 5 -> 3 with a replacement not up yet: shrink to 3, then wait
    const five = input({ voters: ['a', 'b', 'c', 'd', 'e'], declared: ['a', 'b', 'f'] });
    expect(kindOf(five)).toBe('remove:c');
    const three = input({ voters: ['a', 'b', 'e'], declared: ['a', 'b', 'f'] });
    expect(kindOf(three)).toBe('wait');
  });

  it('removes undeclared voters, unhealthy ones first', () => {
    const i = input({ voters: ['a', 'b', 'c', 'd', 'e'], declared: ['a', 'b', 'c'], servers: { d: { match: 5 }, e: { healthy: false } } });
    expect(kindOf(i)).toBe('remove:e');
    const j = input({ voters: ['a', 'b', 'c', 'd'], declared: ['a', 'b', 'c'] });
    expect(kindOf(j)).toBe('remove:d');
  });

  it('quorum rule: 5 voters, 2 dead declared, 1 undeclared alive -> refuse', () => {
    const i = input({ voters: ['a', 'b', 'c', 'd', 'e'], declared: ['a', 'b', 'c', 'd'], servers: { c: { healthy: false }, d: { healthy: false } } });
    // removing e leaves a,b,c,d with healthy a,b: 2 < 3
    const a = decideAutopilot(i);
    expect(a).toMatchObject({ kind: 'wait', blocked: true });
    expect(a.reason).toMatch(/removing voter e/);
  });

  it('quorum rule: an undeclared dead voter is removed first, then the alive one is allowed', () => {
    const i = input({ voters: ['a', 'b', 'c', 'd', 'e'], declared: ['a', 'b', 'c'], servers: { c: { healthy: false }, d: { healthy: false } } });
    // d (dead, undeclared): left a,b,c,e healthy a,b,e = 3 of 4 -> ok
    expect(kindOf(i)).toBe('remove:d');
    const after = input({ voters: ['a', 'b', 'c', 'e'], declared: ['a', 'b', 'c'], servers: { c: { healthy: false } } });
    // e: left a,b,c healthy a,b = 2 of 3 -> ok
    expect(kindOf(after)).toBe('remove:e');
  });

  it('quorum rule: never removes the last voter', () => {
    const i = input({ self: 'a', voters: ['a', 'b'], declared: ['a'], servers: { b: { healthy: false } } });
    expect(kindOf(i)).toBe('remove:b'); // left {a}: 1 of 1
    const two = input({ self: 'a', voters: ['a', 'b'], declared: ['a'], servers: { b: { lostData: true } } });
    expect(kindOf(two)).toBe('remove:b');
  });

  it('the leader never removes itself: it hands leadership to the healthiest caught-up declared voter', () => {
    const i = input({
      self: 'a',
      voters: ['a', 'b', 'c', 'd'],
      declared: ['b', 'c', 'd'],
      commit: 100,
      servers: { b: { match: 95 }, c: { match: 99 }, d: { match: 99, healthy: false } },
    });
    expect(decideAutopilot(i)).toMatchObject({ kind: 'transferLeadership', to: 'c' });
  });

  it('other undeclared voters are removed before the leader hands itself away', () => {
    const i = input({ self: 'a', voters: ['a', 'b', 'c', 'd', 'e'], declared: ['b', 'c', 'd'] });
    expect(kindOf(i)).toBe('remove:e');
  });

  it('an undeclared leader with no caught-up declared voter is blocked', () => {
    const i = input({ self: 'a', voters: ['a', 'b', 'c'], declared: ['b', 'c'], commit: 100, servers: { b: { match: 10 }, c: { healthy: false } } });
    expect(decideAutopilot(i)).toMatchObject({ kind: 'wait', blocked: true });
  });

  it('lost data: remove, then (once a non-member that answers) re-add as a learner, then promote', () => {
    let i = input({ voters: ['a', 'b', 'c'], servers: { c: { lostData: true } } });
    expect(kindOf(i)).toBe('remove:c');
    i = input({ voters: ['a', 'b'], declared: ['a', 'b', 'c'], reachable: ['c'] });
    expect(kindOf(i)).toBe('addLearner:c');
    i = input({ voters: ['a', 'b'], learners: ['c'], declared: ['a', 'b', 'c'], servers: { c: { stableSince: NOW - STABLE } } });
    expect(kindOf(i)).toBe('promote:c');
  });

  it('never returns two changes: each call is one action', () => {
    const i = input({ voters: ['a', 'b', 'c', 'd', 'e'], learners: ['x'], declared: ['a', 'b', 'f'], reachable: ['f'] });
    const seen: string[] = [];
    // Apply actions one by one as a leader would and check each is a single change.
    let voters = ['a', 'b', 'c', 'd', 'e'];
    let learners = ['x'];
    for (let k = 0; k < 10; k++) {
      const a = decideAutopilot(input({ voters, learners, declared: ['a', 'b', 'f'], reachable: voters.includes('f') || learners.includes('f') ? [] : ['f'], servers: {} }));
      seen.push(kindOf(input({ voters, learners, declared: ['a', 'b', 'f'], reachable: voters.includes('f') || learners.includes('f') ? [] : ['f'] })));
      if (a.kind === 'remove') {
        voters = voters.filter((v) => v !== a.id);
        learners = learners.filter((v) => v !== a.id);
      } else if (a.kind === 'addLearner') learners = [...learners, a.id];
      else if (a.kind === 'promote') {
        learners = learners.filter((v) => v !== a.id);
        voters = [...voters, a.id];
      } else break;
    }
    expect(i).toBeDefined();
    expect(seen).toEqual(['remove:x', 'addLearner:f', 'promote:f', 'remove:c', 'remove:d', 'remove:e', 'none']);
    expect(voters.sort()).toEqual(['a', 'b', 'f']);
  });
});

describe('autopilotState', () => {
  it('maps a decision to idle / converged / changing / blocked', () => {
    expect(autopilotState({ kind: 'none', reason: '' }, [])).toBe('idle');
    expect(autopilotState({ kind: 'none', reason: '' }, null)).toBe('idle');
    expect(autopilotState({ kind: 'none', reason: '' }, ['a'])).toBe('converged');
    expect(autopilotState({ kind: 'wait', reason: '', blocked: true }, ['a'])).toBe('blocked');
    expect(autopilotState({ kind: 'wait', reason: '' }, ['a'])).toBe('changing');
    expect(autopilotState({ kind: 'remove', id: 'b', reason: '' }, ['a'])).toBe('changing');
    expect(autopilotState({ kind: 'transferLeadership', to: 'b', reason: '' }, ['b'])).toBe('changing');
  });
});

describe('core: awaitingJoin', () => {
  it('a node awaiting join never campaigns (ticks, explicit campaign or timeoutNow)', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const c = net.get('c');
    c.storage = new MemoryStorage();
    net.restart('c', { awaitingJoin: true });
    expect(net.raft('c').basicStatus().awaitingJoin).toBe(true);
    net.isolate('c');
    for (let i = 0; i < 100; i++) net.tick('c');
    net.raft('c').campaign();
    net.recover();
    net.stabilize();
    expect(net.sent.some((m) => m.from === 'c' && (m.type === 'preVote' || m.type === 'vote'))).toBe(false);
    // Leadership transfer to c does nothing either.
    net.raft('a').transferLeadership('c');
    net.stabilize();
    expect(net.raft('c').raft.role).toBe('follower');
    expect(net.leaderId()).toBe('a');
  });

  it('a node awaiting join rejects votes and pre-votes, so a wiped voter cannot elect a stale leader', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    // c is wiped and comes back empty, awaiting join; a crashes; b cannot win without c.
    net.get('c').storage = new MemoryStorage();
    net.restart('c', { awaitingJoin: true });
    net.isolate('a');
    const from = net.sent.length;
    for (let i = 0; i < 60; i++) net.tickAll();
    const asked = net.sent.slice(from).filter((m) => m.from === 'b' && m.to === 'c' && m.type === 'preVote');
    expect(asked.length).toBeGreaterThan(0);
    const grants = net.sent.slice(from).filter((m) => m.from === 'c' && (m.type === 'voteResp' || m.type === 'preVoteResp') && !m.reject);
    expect(grants).toEqual([]);
    expect(net.raft('b').raft.role).not.toBe('leader');
  });

  it('clears once it applies its own addLearner (removed, then re-added), and then votes', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.get('c').storage = new MemoryStorage();
    net.restart('c', { awaitingJoin: true });
    net.stabilize();
    expect(net.raft('a').proposeConfChange({ type: 'removeNode', nodeId: 'c' }).ok).toBe(true);
    net.stabilize();
    expect(net.raft('c').basicStatus().awaitingJoin).toBe(true);
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'c' }).ok).toBe(true);
    net.stabilize();
    net.tickAll(3);
    expect(net.raft('c').basicStatus().awaitingJoin).toBe(false);
    expect(net.raft('c').basicStatus().confState.learners).toEqual(['c']);
    expect(net.raft('a').proposeConfChange({ type: 'addVoter', nodeId: 'c' }).ok).toBe(true);
    net.stabilize();
    // Now c may campaign and win (it has the whole log).
    net.raft('a').transferLeadership('c');
    net.stabilize();
    expect(net.leaderId()).toBe('c');
    net.raft('c').propose(enc('y'));
    net.stabilize();
    expect(net.appliedData('a')).toEqual(['x', 'y']);
  });

  it('clears when it restores a snapshot listing it as a learner (also at restart from such a snapshot)', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'd' }).ok).toBe(true);
    net.stabilize();
    net.propose('a', 'x');
    const a = net.get('a');
    const st = a.node.basicStatus();
    a.node.compact(st.applied, a.node.raft.log.term(st.applied) as number, st.confState, enc('[]'));
    net.add('d');
    net.restart('d', { awaitingJoin: true });
    net.tickAll(3);
    expect(net.get('d').storage.snapshot().meta.confState.learners).toEqual(['d']);
    expect(net.raft('d').basicStatus().awaitingJoin).toBe(false);
    net.restart('d', { awaitingJoin: true });
    expect(net.raft('d').basicStatus().awaitingJoin).toBe(false);
  });

  it('a snapshot listing it as a voter does not clear it', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const st = net.raft('a').basicStatus();
    for (const id of ['a', 'b']) {
      const n = net.raft(id);
      n.compact(st.applied, n.raft.log.term(st.applied) as number, st.confState, enc('[]'));
    }
    net.get('c').storage = new MemoryStorage();
    net.restart('c', { awaitingJoin: true });
    // a's progress for c is stale (match from before the wipe): heartbeats must not make c commit.
    net.tickAll(3);
    expect(net.raft('c').basicStatus().commit).toBe(0);
    // A new leader starts c's progress from scratch and sends the snapshot, which lists c as a voter.
    net.raft('a').transferLeadership('b');
    net.stabilize();
    net.tickAll(3);
    expect(net.leaderId()).toBe('b');
    expect(net.get('c').storage.snapshot().meta.index).toBe(st.applied);
    expect(net.raft('c').basicStatus().awaitingJoin).toBe(true);
  });

  it('pendingConfIndex is exposed so a driver knows a conf change is in flight', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('b');
    net.isolate('c');
    const r = net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'd' });
    expect(r.ok).toBe(true);
    net.stabilize();
    const st = net.raft('a').basicStatus();
    expect(st.pendingConfIndex).toBe(r.ok ? r.index : -1);
    expect(st.pendingConfIndex > st.applied).toBe(true);
  });
});

describe('Autopilot driver: probes', () => {
  const dataIdOf = (id: string) => id.charCodeAt(id.length - 1).toString(16).padStart(32, '0');

  /** The leader `n1` of n1..n3 with fakes for the core, the store and the transport; counts probes per round. */
  function leaderAutopilot(o: { declared?: DeclaredMember[]; recorded?: string[]; answers?: boolean } = {}) {
    const recorded = new Map((o.recorded ?? []).map((id) => [id, dataIdOf(id)]));
    const probes: string[] = [];
    const proposed: string[] = [];
    const status = {
      confState: { voters: ['n1', 'n2', 'n3'], learners: [] as string[] },
      term: 2,
      commit: 10,
      applied: 10,
      pendingConfIndex: 0,
      progress: new Map([['n2', { match: 10 }], ['n3', { match: 10 }]]),
    };
    const ctx = {
      nodeId: 'n1',
      node: { basicStatus: () => ({ role: 'leader', lead: 'n1' }), status: () => status },
      logger: pino({ level: 'silent' }),
      writeGuard: undefined,
      schedule: () => {},
      throwIfStopped: () => {},
    } as unknown as DriverContext;
    const reply = (id: string): ProbeReply => ({ node_id: id, data_id: dataIdOf(id), term: 2, last_index: 10, commit_index: 10, awaiting_join: false, your_data_id: null });
    const autopilot = new Autopilot({
      ctx,
      membership: {} as Membership,
      reader: { declaredMembers: () => o.declared ?? [], memberDataIds: () => new Map(recorded) },
      transport: {
        probe: async (id: string) => {
          probes.push(id);
          return o.answers === false ? null : reply(id);
        },
        setPeer: () => {},
        address: () => undefined,
      } as unknown as AutopilotDeps['transport'],
      propose: async (cmd: Command) => {
        const c = cmd as unknown as { id: string; data_id: string };
        proposed.push(c.id);
        recorded.set(c.id, c.data_id);
        return { ok: true };
      },
      dataId: dataIdOf('n1'),
      stabilizationMs: 10_000,
    });
    /** Runs `n` rounds (one a second on a leader) and returns how many probes each sent. */
    const rounds = async (n: number): Promise<number[]> => {
      const counts: number[] = [];
      for (let i = 0; i < n; i++) {
        const before = probes.length;
        await autopilot.round();
        counts.push(probes.length - before);
      }
      return counts;
    };
    return { autopilot, rounds, probes, proposed };
  }

  it('with nothing declared, probes only members without a recorded data id, then no one', async () => {
    const a = leaderAutopilot();
    // Round 1 probes n2 and n3 and records all three ids (n1 its own, no probe); every later round probes no one.
    expect(await a.rounds(10)).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(a.proposed.sort()).toEqual(['n1', 'n2', 'n3']);
    expect(a.autopilot.report().state).toBe('idle');
  });

  it('with nothing declared and every id recorded, never probes', async () => {
    const a = leaderAutopilot({ recorded: ['n1', 'n2', 'n3'] });
    expect(await a.rounds(5)).toEqual([0, 0, 0, 0, 0]);
    expect(a.proposed).toEqual([]);
  });

  it('with nothing declared, keeps probing only a member that has not answered yet', async () => {
    const a = leaderAutopilot({ recorded: ['n1', 'n2'], answers: false });
    expect(await a.rounds(3)).toEqual([1, 1, 1]);
    expect(a.probes).toEqual(['n3', 'n3', 'n3']);
  });

  it('with members declared, probes every member and declared node each round (health and stability need it)', async () => {
    const declared = ['n1', 'n2', 'n3', 'n4'].map((id) => ({ id, address: `127.0.0.1:${8200 + Number(id[1])}` }));
    const a = leaderAutopilot({ declared, recorded: ['n1', 'n2', 'n3'] });
    expect(await a.rounds(3)).toEqual([3, 3, 3]);
  });
});

describe('autopilotInputFrom (the input the driver and the simulation both build)', () => {
  const status = (o: { voters?: string[]; learners?: string[]; match?: Record<string, number>; commit?: number; pending?: boolean } = {}): AutopilotStatus => ({
    commit: o.commit ?? 100,
    applied: 100,
    pendingConfIndex: o.pending ? 101 : 90,
    confState: { voters: o.voters ?? ['a', 'b', 'c'], learners: o.learners ?? [], votersOutgoing: [], learnersNext: [], autoLeave: false } as unknown as AutopilotStatus['confState'],
    progress: new Map(Object.entries(o.match ?? { b: 100, c: 100 }).map(([id, match]) => [id, { match } as unknown as ProgressStatus])),
  });
  const observe = (o: Partial<AutopilotObservations> & { healthy?: string[]; lost?: string[]; answers?: string[] } = {}): AutopilotObservations => ({
    self: 'a',
    now: NOW,
    declared: ['a', 'b', 'c'],
    member: (id) => ({ healthy: (o.healthy ?? ['b', 'c']).includes(id), lostData: (o.lost ?? []).includes(id) }),
    reachable: (id) => (o.answers ?? []).includes(id),
    stableSince: new Map(),
    stabilizationMs: STABLE,
    promotionLag: 8,
    ...o,
  });

  it("lists every member but self, with the core's match, and the conf change in flight", () => {
    const { input } = autopilotInputFrom(status({ learners: ['d'], match: { b: 100, c: 50, d: 7 }, pending: true }), observe({ healthy: ['b', 'd'], lost: ['d'] }));
    expect([...input.servers.keys()]).toEqual(['b', 'c', 'd']);
    expect(input.servers.get('d')).toEqual({ id: 'd', voter: false, healthy: true, stableSince: null, match: 7, lostData: true });
    expect(input.servers.get('c')).toMatchObject({ voter: true, healthy: false, match: 50 });
    expect(input).toMatchObject({ self: 'a', now: NOW, voters: ['a', 'b', 'c'], learners: ['d'], pendingConfChange: true, commitIndex: 100 });
  });

  it('a member is stable from the first round it is healthy and caught up, kept while it stays so, reset when not', () => {
    const st = status({ learners: ['d'], match: { b: 100, c: 100, d: 95 } });
    const first = autopilotInputFrom(st, observe({ healthy: ['b', 'c', 'd'], stableSince: new Map([['b', 5]]) }));
    expect(first.input.servers.get('b')!.stableSince).toBe(5); // kept
    expect(first.input.servers.get('d')!.stableSince).toBe(NOW); // new: within promotionLag (8) of the commit
    expect(first.stableSince).toEqual(new Map([['b', 5], ['c', NOW], ['d', NOW]]));
    // Falls behind (match + lag < commit) or stops answering: stability starts over.
    const behind = autopilotInputFrom(status({ learners: ['d'], match: { b: 100, c: 100, d: 80 } }), observe({ healthy: ['b', 'd'], now: NOW + 1, stableSince: first.stableSince }));
    expect(behind.stableSince).toEqual(new Map([['b', 5]]));
    // A member no longer in the configuration drops out.
    expect(autopilotInputFrom(status({ voters: ['a', 'b'] }), observe({ stableSince: new Map([['b', 5], ['gone', 1]]) })).stableSince).toEqual(new Map([['b', 5]]));
  });

  it('reachable: only declared non-members that answered', () => {
    const { input } = autopilotInputFrom(status(), observe({ declared: ['a', 'b', 'c', 'd', 'e'], answers: ['b', 'd', 'x'] }));
    expect([...input.reachable]).toEqual(['d']);
    expect(autopilotInputFrom(status(), observe({ declared: null, answers: ['d'] })).input.reachable.size).toBe(0);
  });
});
