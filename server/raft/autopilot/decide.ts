// Autopilot: the leader's pure decision of the next membership change that
// moves the Raft configuration toward the declared member list. No timers,
// sockets, disk, clock or randomness: the driver gathers the input (health
// from progress and probes, stability times, the injected clock) and applies
// the returned action. At most one change is returned, and none while a
// conf change is in flight, so membership moves one step at a time.

export interface AutopilotServer {
  id: string;
  voter: boolean;
  /** The leader heard from it recently (progress.recentActive or within an election timeout). */
  healthy: boolean;
  /** When it last became healthy and caught up without interruption; null if not. */
  stableSince: number | null;
  /** Replication progress (leader's view). */
  match: number;
  /** Its raft dir's data id differs from the one recorded when it was added. */
  lostData: boolean;
}

export interface AutopilotInput {
  /** The leader running the decision. */
  self: string;
  /** Injected clock (ms). */
  now: number;
  /** Declared member ids; null or empty = nothing declared (idle, never "remove everyone"). */
  declared: readonly string[] | null;
  voters: readonly string[];
  learners: readonly string[];
  /** A conf change is proposed but not applied. */
  pendingConfChange: boolean;
  commitIndex: number;
  /** Every current member except self. */
  servers: ReadonlyMap<string, AutopilotServer>;
  /** Declared NON-members that answered an authenticated probe. */
  reachable: ReadonlySet<string>;
  stabilizationMs: number;
  promotionLag: number;
}

export type AutopilotAction =
  // `blocked` (added, optional): a change is needed but the quorum rule (or
  // the lack of a leadership target) forbids it for now.
  | { kind: 'none' | 'wait'; reason: string; blocked?: boolean }
  | { kind: 'addLearner' | 'promote' | 'remove'; id: string; reason: string }
  | { kind: 'transferLeadership'; to: string; reason: string };

/** Majority of n voters. */
function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

const byId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function decideAutopilot(input: AutopilotInput): AutopilotAction {
  const { self, servers } = input;
  // One change at a time: the next decision needs the applied configuration.
  if (input.pendingConfChange) return { kind: 'wait', reason: 'a configuration change is in progress' };
  const declaredList = input.declared ?? [];
  // An empty list means the operator declared nothing: never "remove everyone".
  if (declaredList.length === 0) return { kind: 'none', reason: 'no members declared' };
  const declared = new Set(declaredList);
  const voters = [...input.voters].sort(byId);
  const learners = [...input.learners].sort(byId);
  const members = new Set([...voters, ...learners]);

  // A voter that lost its data cannot vote (awaitingJoin) so it must not count
  // toward the healthy quorum; self is the leader and so is healthy.
  const healthy = (id: string): boolean => {
    if (id === self) return true;
    const s = servers.get(id);
    return s !== undefined && s.healthy && !s.lostData;
  };
  // Quorum rule: the healthy voters left must be a quorum of the voters left.
  const canRemoveVoter = (id: string): boolean => {
    const left = voters.filter((v) => v !== id);
    if (left.length === 0) return false;
    return left.filter(healthy).length >= quorum(left.length);
  };
  let blockedReason: string | undefined;

  // 1. Learners are not needed for quorum: drop undeclared ones at once.
  for (const id of learners) {
    if (!declared.has(id)) return { kind: 'remove', id, reason: `learner ${id} is not declared` };
  }

  // 2. A member whose data was wiped is removed so it can rejoin as a learner
  //    (a wiped voter would otherwise sit in the configuration unable to vote).
  for (const id of [...learners, ...voters]) {
    if (id === self || !servers.get(id)?.lostData) continue;
    if (learners.includes(id) || canRemoveVoter(id)) {
      return { kind: 'remove', id, reason: `${id} lost its data; it rejoins as a learner` };
    }
    blockedReason ??= `${id} lost its data but removing it would leave no healthy quorum`;
  }

  // 3. Add declared nodes that answered a probe, learners first (no quorum impact).
  for (const id of [...declaredList].sort(byId)) {
    if (!members.has(id) && input.reachable.has(id)) {
      return { kind: 'addLearner', id, reason: `declared ${id} is reachable` };
    }
  }

  // 4. Promote a declared learner that is healthy, caught up and stable.
  const isReady = (s: AutopilotServer): boolean =>
    s.healthy &&
    !s.lostData &&
    s.match + input.promotionLag >= input.commitIndex &&
    s.stableSince !== null &&
    input.now - s.stableSince >= input.stabilizationMs;
  let pendingLearner: string | undefined;
  for (const id of learners) {
    const s = servers.get(id);
    if (!s) continue;
    if (isReady(s)) return { kind: 'promote', id, reason: `learner ${id} is caught up and stable` };
    if (s.healthy && !s.lostData) pendingLearner ??= id;
  }

  // 5. Undeclared voters. Dead ones go first (dead-server cleanup, no loss of
  //    fault tolerance); a healthy one only once no declared learner is still
  //    on its way to promotion and more voters than declared remain (add
  //    before remove), and self last, by handing leadership away (a leader
  //    never removes itself).
  const undeclared = voters.filter((v) => !declared.has(v) && v !== self);
  const order = [...undeclared].sort((a, b) => {
    const ha = healthy(a) ? 1 : 0;
    const hb = healthy(b) ? 1 : 0;
    if (ha !== hb) return ha - hb;
    return (servers.get(a)?.match ?? 0) - (servers.get(b)?.match ?? 0) || byId(a, b);
  });
  // A healthy voter is only given up while more voters than declared remain:
  // replacing a node never dips below the declared size (add before remove).
  const surplus = voters.length > declared.size;
  for (const id of order) {
    if (healthy(id) && pendingLearner !== undefined) {
      return { kind: 'wait', reason: `learner ${pendingLearner} is catching up before ${id} is removed` };
    }
    if (healthy(id) && !surplus) {
      return { kind: 'wait', reason: `keeping voter ${id} until the declared members join` };
    }
    if (canRemoveVoter(id)) return { kind: 'remove', id, reason: `voter ${id} is not declared` };
    blockedReason ??= `removing voter ${id} would leave no healthy quorum`;
  }
  if (voters.includes(self) && !declared.has(self)) {
    if (pendingLearner !== undefined) {
      return { kind: 'wait', reason: `learner ${pendingLearner} is catching up before leadership is handed away` };
    }
    if (!surplus) return { kind: 'wait', reason: `keeping leader ${self} until the declared members join` };
    // Hand leadership to the healthiest caught-up declared voter; it then removes us.
    let best: string | undefined;
    let bestMatch = -1;
    for (const id of voters) {
      const s = servers.get(id);
      if (id === self || !s || !declared.has(id) || !s.healthy || s.lostData) continue;
      if (s.match + input.promotionLag < input.commitIndex) continue;
      // voters are sorted, so ties go to the smallest id
      if (s.match > bestMatch) {
        best = id;
        bestMatch = s.match;
      }
    }
    if (best !== undefined) return { kind: 'transferLeadership', to: best, reason: `leader ${self} is not declared` };
    blockedReason ??= `leader ${self} is not declared and no declared voter is caught up to take over`;
  }

  if (blockedReason !== undefined) return { kind: 'wait', reason: blockedReason, blocked: true };
  if (pendingLearner !== undefined) return { kind: 'wait', reason: `learner ${pendingLearner} is not yet caught up and stable` };
  for (const id of declaredList) {
    if (!members.has(id)) return { kind: 'wait', reason: `declared ${id} has not answered a probe` };
  }
  return { kind: 'none', reason: 'configuration matches the declared members' };
}

export type AutopilotState = 'idle' | 'converged' | 'changing' | 'blocked';

/** The state GET /v1/admin/cluster reports for a decision. */
export function autopilotState(action: AutopilotAction, declared: readonly string[] | null): AutopilotState {
  if (action.kind === 'none') return declared && declared.length > 0 ? 'converged' : 'idle';
  if (action.kind === 'wait' && action.blocked === true) return 'blocked';
  return 'changing';
}
