// A live resize (spec.replicas changed on a formed cluster) as a pure
// function, in the style of operator/rollout/machine.ts: no I/O, no clock.
// The reconciler observes the StatefulSet and the leader's /v1/health, calls
// decideResize(), writes the members ConfigMap and the StatefulSet size it
// returns, and persists `resize` in status.resize and `members` in
// status.members.
//
// The operator never changes Raft membership itself (it has no admin token):
// it declares the members in the `<name>-members` ConfigMap, and the leader's
// autopilot moves the Raft configuration toward that list one change at a
// time. VAULT_PEERS in the pod template stays the set the cluster was formed
// with, so a resize rolls no pod.
//
// Up (to > from): scale the StatefulSet to `to` and declare `to` members in
// the same pass (ConfigMap applied before the StatefulSet, so a new pod finds
// its own entry when it starts) -> ScalingUp until the leader's voters are
// exactly the declared ids and it has no learners -> done (status.members =
// to).
//
// Down (to < from): declare the smaller set first and keep the pods ->
// RemovingMembers; only in a LATER pass (the declaration was written before),
// once the leader's voters and learners are all declared, scale the
// StatefulSet down (PVCs kept) -> ScalingDown until its pods are gone and the
// voters are the declared set -> done.
//
// The whole state is level-triggered: the StatefulSet's size and the leader's
// configuration say where a resize is, status.resize adds the direction and
// the "declared before" fact, so an operator restarted at any point resumes.
// A target changed mid-resize starts from the size declared until then.
//
// One change at a time: a resize requested while a release rollout or a
// WireGuard key rotation is in progress waits (Pending) and changes nothing;
// once a resize started, the rollout and the key rotation wait for it (the
// reconciler holds their templates; see reconciler.ts).
import type { ResizePhase, ResizeStatus } from '../api/types.js';
import type { ConditionHint, RolloutEvent } from '../rollout/machine.js';

/** The StatefulSet as a resize reads it. */
export interface ResizeStatefulSet {
  generation: number;
  observedGeneration?: number;
  /** spec.replicas */
  specReplicas: number;
  /** status.replicas: pods that exist. */
  replicas: number;
}

/** The Raft leader as its own /v1/health describes it. */
export interface LeaderView {
  /** Node id (pod name) of the leader most pods name; undefined when none is known. */
  id: string | undefined;
  /** Whether the leader itself answered /v1/health. */
  answered: boolean;
  /** `voters` of its /v1/health; null when the server does not report it (older release). */
  voters: readonly string[] | null;
  learners: readonly string[] | null;
}

export interface ResizeInput {
  /** VaultCluster name (pods are `<name>-<ordinal>`). */
  name: string;
  /** spec.replicas. */
  target: number;
  /** status.members: the Raft size the cluster has settled at (formed with, or the last completed resize's). */
  members: number;
  /** null before the first apply. */
  statefulSet: ResizeStatefulSet | null;
  /** status.resize as persisted. */
  previous: ResizeStatus | undefined;
  leader: LeaderView;
  /** What else is changing the pods (a release rollout, a key rotation), or null. A resize does not start while it runs. */
  otherChange: string | null;
  /** RFC 3339 timestamp of this decision. */
  now: string;
}

export interface ResizeDecision {
  /** Ordinals 0..declared-1 go into the members ConfigMap. */
  declared: number;
  /** spec.replicas to write into the StatefulSet. */
  statefulSetReplicas: number;
  /** Ordinals that keep WireGuard keys and peers: every pod the StatefulSet had when this pass started, and every declared one. */
  keyReplicas: number;
  /** Size of the smallest voter set in play (the PodDisruptionBudget protects its quorum). */
  protectedVoters: number;
  /** The next status.members. */
  members: number;
  /** The next status.resize; undefined when no resize is in progress. */
  resize: ResizeStatus | undefined;
  /** A resize is in progress (including Pending): poll again soon. */
  active: boolean;
  /** A resize changes the pods now (not Pending): a release rollout and a key rotation wait. */
  holdsOtherChanges: boolean;
  /** Progressing while a resize is in progress. */
  progressing?: ConditionHint;
  /** Ready is False with this while a resize is in progress. */
  notReady?: ConditionHint;
  events: RolloutEvent[];
}

export function podNames(name: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${name}-${i}`);
}

/** Voluntary disruptions the PodDisruptionBudget allows for a voter set of `voters`: its fault tolerance, at least 1. */
export function pdbMaxUnavailable(voters: number): number {
  return Math.max(1, Math.floor((voters - 1) / 2));
}

function list(ids: readonly string[]): string {
  return ids.length === 0 ? '(none)' : ids.join(', ');
}

/** Why the leader's configuration cannot be read, or null when it can. */
function leaderProblem(l: LeaderView): string | null {
  if (l.id === undefined) return 'no Raft leader is known (no pod\'s /v1/health names one)';
  if (!l.answered) return `the Raft leader ${l.id} did not answer /v1/health`;
  if (l.voters === null || l.learners === null) {
    return `the Raft leader ${l.id} does not report voters and learners in /v1/health (a server release older than autopilot); the resize waits until the pods run a release that does`;
  }
  return null;
}

function steady(members: number, statefulSetReplicas: number, events: RolloutEvent[] = []): ResizeDecision {
  return {
    declared: members,
    statefulSetReplicas,
    keyReplicas: members,
    protectedVoters: members,
    members,
    resize: undefined,
    active: false,
    holdsOtherChanges: false,
    events,
  };
}

/** The next step of a resize. Pure: same input, same decision. */
export function decideResize(input: ResizeInput): ResizeDecision {
  const { name, target, members, statefulSet: sts, previous: prev, leader, now } = input;
  // A new cluster is formed at the size it asks for.
  if (!sts) return steady(target, target);
  const S = sts.specReplicas;
  const started = prev !== undefined && prev.phase !== 'Pending';
  if (!started && target === members && S === members) return steady(members, members);

  const status = (phase: ResizePhase, from: number, message: string): ResizeStatus => {
    const same = prev !== undefined && prev.phase === phase && prev.to === target;
    return {
      from,
      to: target,
      phase,
      startedAt: prev?.startedAt ?? now,
      lastTransitionTime: same ? (prev.lastTransitionTime ?? now) : now,
      message,
    };
  };
  const entered = (phase: ResizePhase) => !(prev !== undefined && prev.phase === phase && prev.to === target);

  // Nothing moved yet and something else is changing the pods: wait for it.
  if (!started && S === members && input.otherChange !== null) {
    const message = `spec.replicas is ${target}; the resize from ${members} starts once ${input.otherChange} finishes (one change at a time)`;
    return {
      ...steady(members, S),
      resize: status('Pending', members, message),
      active: true,
      progressing: { status: 'True', reason: 'ResizePending', message },
      events: entered('Pending') ? [{ type: 'Normal', reason: 'ResizePending', message }] : [],
    };
  }

  // Where this resize starts from: the size declared until now (a changed
  // target mid-resize starts from the previous target).
  const from = started ? (prev.to !== target ? prev.to : prev.from) : members;
  const want = podNames(name, target);
  const wanted = new Set(want);
  const events: RolloutEvent[] = [];
  if (!started) events.push({ type: 'Normal', reason: 'ResizeStarted', message: `Resizing from ${from} to ${target} Raft members (spec.replicas)` });
  else if (prev.to !== target) events.push({ type: 'Normal', reason: 'ResizeStarted', message: `spec.replicas changed to ${target} during the resize to ${prev.to}; resizing from ${from} to ${target} Raft members` });
  const problem = leaderProblem(leader);
  const voters = leader.voters ?? [];
  const learners = leader.learners ?? [];
  const base = {
    declared: target,
    protectedVoters: Math.min(from, target, members),
    members,
    active: true,
    holdsOtherChanges: true,
  };
  const inProgress = (phase: ResizePhase, statefulSetReplicas: number, waiting: string, step?: RolloutEvent): ResizeDecision => {
    const direction = phase === 'ScalingUp' ? 'ScalingUp' : 'ScalingDown';
    const message = `resizing from ${from} to ${target} Raft members: ${waiting}`;
    if (step && entered(phase)) events.push(step);
    return {
      ...base,
      statefulSetReplicas,
      keyReplicas: Math.max(S, target),
      resize: status(phase, from, message),
      progressing: { status: 'True', reason: direction, message },
      notReady: { status: 'False', reason: 'Resizing', message },
      events,
    };
  };

  if (target > S) {
    const added = podNames(name, target).slice(S);
    return inProgress('ScalingUp', target, `waiting until the leader makes ${list(added)} voters`, {
      type: 'Normal', reason: 'ScalingUp',
      message: `Scaled the StatefulSet from ${S} to ${target} pods and declared ${list(added)} in ConfigMap ${name}-members; the leader adds them as learners and promotes them once caught up`,
    });
  }

  if (target < S) {
    const extra = podNames(name, S).slice(target);
    // Declared in an earlier pass: the ConfigMap this pass applies is not the first to name the smaller set.
    const declaredBefore = started && prev.to === target && (prev.phase === 'RemovingMembers' || prev.phase === 'ScalingDown');
    const undeclared = [...voters, ...learners].filter((id) => !wanted.has(id));
    const removed = problem === null && voters.length > 0 && undeclared.length === 0;
    if (declaredBefore && removed) {
      return inProgress('ScalingDown', target, `${list(extra)} are out of the Raft configuration; waiting until their pods are gone`, {
        type: 'Normal', reason: 'ScalingDown',
        message: `${list(extra)} are no longer Raft voters or learners (leader ${leader.id}); scaled the StatefulSet from ${S} to ${target} pods (their PVCs are kept)`,
      });
    }
    const waiting = problem ?? (undeclared.length > 0
      ? `waiting until the leader ${leader.id} removes ${list(undeclared)} from the Raft configuration (voters ${list(voters)}; learners ${list(learners)}) before scaling the StatefulSet down`
      : 'the smaller set is declared; checking again before scaling the StatefulSet down');
    return inProgress('RemovingMembers', S, waiting, {
      type: 'Normal', reason: 'RemovingMembers',
      message: `Declared ${list(want)} in ConfigMap ${name}-members; the StatefulSet keeps ${list(extra)} until the leader has removed them from Raft`,
    });
  }

  // The StatefulSet has the target size: done once its pods are exactly
  // those and the leader's voters are the declared set.
  const phase: ResizePhase = target < from ? 'ScalingDown' : 'ScalingUp';
  const settled = (sts.observedGeneration ?? 0) >= sts.generation && sts.replicas === target;
  const missing = want.filter((id) => !voters.includes(id));
  const stray = [...voters, ...learners].filter((id) => !wanted.has(id));
  const pendingLearners = learners.filter((id) => wanted.has(id));
  const done = problem === null && settled && missing.length === 0 && stray.length === 0 && pendingLearners.length === 0;
  if (done) {
    return steady(target, target, [
      ...events,
      { type: 'Normal', reason: 'ResizeComplete', message: `Resized to ${target} Raft members: the leader ${leader.id} reports voters ${list(voters)}` },
    ]);
  }
  const waiting = problem ??
    (!settled
      ? `waiting until the StatefulSet has exactly ${target} pods (now ${sts.replicas})`
      : `waiting until the leader's voters are ${list(want)} (voters ${list(voters)}; learners ${list(learners)})`);
  return inProgress(phase, target, waiting);
}
