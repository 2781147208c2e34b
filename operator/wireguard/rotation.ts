// WireGuard key rotation through a staged rollout, as a pure function (the
// same style as operator/rollout/machine.ts: no I/O, no clock; the
// reconciler observes, calls decideRotation(), performs the actions in
// order, and persists `status` in status.wireguard).
//
// Raising spec.wireguard.keyGeneration above the generation recorded on the
// key Secret rotates ONE ordinal at a time, lowest first:
//
//   1. pick the next ordinal k whose key is older than the target; record
//      {rotatingOrdinal: k, step: ReplacingKey, podUID} (no other action);
//   2. ReplacingKey, once the cluster is fully ready (no release rollout in
//      progress, the StatefulSet fully rolled and ready, every pod Ready):
//      write k's new key pair to the Secret and its public key to the
//      ConfigMap, then evict pod k (the Eviction API, so the
//      PodDisruptionBudget still guards against a second disruption) ->
//      RestartingPod with the evicted pod's UID;
//   3. RestartingPod: wait until pod k is a new instance, Ready, and the
//      cluster fully ready again (pod k's readiness needs Raft to reach the
//      leader over the overlay, i.e. the other agents picked up k's new
//      public key); then back to 1 for the next ordinal;
//   4. no ordinal left: record the target generation on the Secret; done.
//
// Only one pod is ever out, so a cluster of 3 or more keeps quorum.
//
// Restart safety: status is written after the actions of a pass. Per-key
// generations live in the Secret itself, so every crash point resolves:
// - after step 1's status: step 2 runs;
// - after the key write, before the status: ReplacingKey sees k's key at the
//   target and does not make another one; it evicts the pod if it is still
//   the instance recorded in step 1 (podUID);
// - after the eviction, before the status: the pod's UID differs from the
//   recorded one, so it is not evicted twice;
// - in RestartingPod with the old pod still there (eviction refused by the
//   PodDisruptionBudget, or failed): evict again once the cluster is ready;
// - after the Secret annotation, before the status: recorded == target, idle.
import type { WireguardStatus } from '../api/types.js';
import type { ConditionHint, ObservedStatefulSet, RolloutEvent } from '../rollout/machine.js';

export interface ObservedPod {
  uid: string;
  /** The Ready condition is True. */
  ready: boolean;
  /** deletionTimestamp is set. */
  terminating: boolean;
}

export interface RotationInput {
  /** VaultCluster name (pods are `<name>-<ordinal>`). */
  name: string;
  replicas: number;
  /** spec.wireguard.keyGeneration. */
  target: number;
  /** The Secret's coffer.dev/wireguard-key-generation (the target, for a Secret created in this pass). */
  recorded: number;
  /** Generation of each ordinal's key, index = ordinal, 0..replicas-1 (after scaling). */
  keyGenerations: readonly number[];
  /** status.wireguard as persisted. */
  previous?: WireguardStatus | undefined;
  /** Pods by name; missing = does not exist. */
  pods: Readonly<Record<string, ObservedPod | undefined>>;
  /** Why the StatefulSet is not fully rolled and ready (statefulSetWaits()); empty when it is. */
  statefulSetWaits: readonly string[];
  /** A release or rotation-flag rollout is in progress (decideRollout().active): keys wait for it. */
  rolloutActive: boolean;
  /** RFC 3339 timestamp of this decision. */
  now: string;
}

export interface RotationDecision {
  /** Give this ordinal a new key pair at generation `target` (Secret, then ConfigMap), before evicting. */
  replaceKey?: number;
  /** Evict exactly this pod instance (after replaceKey is written). */
  evict?: { pod: string; uid: string };
  /** Write this generation into the Secret's coffer.dev/wireguard-key-generation: the rotation is complete. */
  recordGeneration?: number;
  /** The next status.wireguard (assuming the actions succeed). */
  status: WireguardStatus;
  events: RolloutEvent[];
  /** A rotation is in progress: poll again soon. */
  active: boolean;
  /** The Progressing condition while rotating. */
  progressing?: ConditionHint;
}

function podName(name: string, ordinal: number): string {
  return `${name}-${ordinal}`;
}

/** Why a StatefulSet is not fully rolled and ready for `replicas` (the StatefulSet part of the rollout gate). */
export function statefulSetWaits(sts: ObservedStatefulSet | null, replicas: number): string[] {
  if (!sts) return ['the StatefulSet does not exist yet'];
  const w: string[] = [];
  if ((sts.observedGeneration ?? 0) < sts.generation) {
    w.push(`the StatefulSet controller has not observed generation ${sts.generation} yet`);
    return w;
  }
  if (sts.specReplicas !== replicas) w.push(`the StatefulSet has ${sts.specReplicas} replicas, want ${replicas}`);
  if (!sts.updateRevision || sts.updateRevision !== sts.currentRevision) {
    w.push(`currentRevision ${sts.currentRevision ?? '(none)'} != updateRevision ${sts.updateRevision ?? '(none)'}`);
  }
  if (sts.updatedReplicas !== replicas || sts.readyReplicas !== replicas || sts.replicas !== replicas) {
    w.push(`updated ${sts.updatedReplicas}, ready ${sts.readyReplicas}, current ${sts.replicas} of ${replicas} replicas`);
  }
  return w;
}

/** The next step of a key rotation. Pure: same input, same decision. */
export function decideRotation(input: RotationInput): RotationDecision {
  const { name, replicas, target, recorded, keyGenerations, pods, now } = input;
  const prev = input.previous;
  const wasRotating = prev?.rotatingOrdinal !== undefined;
  const pod = (i: number) => podName(name, i);

  if (target <= recorded) {
    const message =
      target < recorded
        ? `spec.wireguard.keyGeneration ${target} is below ${recorded}, the generation every key has; raise it above ${recorded} to rotate`
        : `every pod's WireGuard key is at generation ${recorded}`;
    return {
      status: {
        keyGeneration: recorded,
        lastTransitionTime: wasRotating || !prev?.lastTransitionTime ? now : prev.lastTransitionTime,
        message,
      },
      // Still marked rotating: the operator stopped after recording the
      // generation (complete), or the generation was lowered (stopped).
      events: !wasRotating
        ? []
        : target === recorded
          ? [{ type: 'Normal', reason: 'WireGuardKeyRotationComplete', message: `WireGuard key rotation complete: ${message}` }]
          : [{ type: 'Normal', reason: 'WireGuardKeyRotationStopped', message: `Stopped the WireGuard key rotation: ${message}` }],
      active: false,
    };
  }

  // ---- a rotation to `target` is due
  const startedAt = wasRotating && prev?.startedAt ? prev.startedAt : now;
  const nextOrdinal = () => {
    for (let i = 0; i < replicas; i++) if ((keyGenerations[i] ?? 0) < target) return i;
    return undefined;
  };
  const clusterWaits = (): string[] => {
    const w = [...(input.rolloutActive ? ['a release rollout is in progress'] : []), ...input.statefulSetWaits];
    for (let i = 0; i < replicas; i++) {
      const p = pods[pod(i)];
      if (!p) w.push(`pod ${pod(i)} does not exist`);
      else if (p.terminating) w.push(`pod ${pod(i)} is terminating`);
      else if (!p.ready) w.push(`pod ${pod(i)} is not Ready`);
    }
    return w;
  };
  const rotating = (ordinal: number, step: 'ReplacingKey' | 'RestartingPod', podUID: string | undefined, message: string): WireguardStatus => {
    const same = prev?.rotatingOrdinal === ordinal && prev.step === step && prev.targetKeyGeneration === target;
    return {
      keyGeneration: recorded,
      targetKeyGeneration: target,
      rotatingOrdinal: ordinal,
      step,
      ...(podUID ? { podUID } : {}),
      startedAt,
      lastTransitionTime: same && prev?.lastTransitionTime ? prev.lastTransitionTime : now,
      message,
    };
  };
  const active = (status: WireguardStatus, events: RolloutEvent[] = [], actions: Partial<RotationDecision> = {}): RotationDecision => ({
    ...actions,
    status,
    events,
    active: true,
    progressing: { status: 'True', reason: 'RotatingWireGuardKeys', message: `rotating WireGuard keys to generation ${target}: ${status.message ?? ''}` },
  });
  const complete = (events: RolloutEvent[]): RotationDecision => {
    const message = `every pod's WireGuard key is at generation ${target}`;
    return {
      recordGeneration: target,
      status: { keyGeneration: target, lastTransitionTime: now, message },
      events: [...events, { type: 'Normal', reason: 'WireGuardKeyRotationComplete', message: `WireGuard key rotation complete: ${message}` }],
      active: false,
    };
  };
  const begin = (ordinal: number, events: RolloutEvent[]): RotationDecision => {
    const uid = pods[pod(ordinal)]?.uid;
    return active(rotating(ordinal, 'ReplacingKey', uid, `next: a new key pair for ${pod(ordinal)} once the cluster is fully ready`), events);
  };
  const waits = (what: string, w: readonly string[]) => `${what}; waiting for: ${w.join('; ')}`;

  const cur =
    wasRotating && prev?.step && prev.rotatingOrdinal !== undefined && prev.rotatingOrdinal < replicas
      ? { ordinal: prev.rotatingOrdinal, step: prev.step, podUID: prev.podUID }
      : undefined;

  if (!cur) {
    const k = nextOrdinal();
    if (k === undefined) return complete([]);
    const events: RolloutEvent[] = wasRotating
      ? []
      : [{
          type: 'Normal',
          reason: 'WireGuardKeyRotationStarted',
          message: `Rotating WireGuard keys from generation ${recorded} to ${target}, one pod at a time, starting with ${pod(k)}`,
        }];
    return begin(k, events);
  }

  const k = cur.ordinal;
  const p = pods[pod(k)];
  const live = p && !p.terminating ? p : undefined;

  if (cur.step === 'ReplacingKey') {
    const needsKey = (keyGenerations[k] ?? 0) < target;
    // Evict the instance that runs with the old key: the live pod when the key is
    // written now; after a restart between key write and status, only the instance
    // recorded before the write (a different UID was already replaced).
    const evictUid = needsKey ? live?.uid : live && live.uid === cur.podUID ? live.uid : undefined;
    if (needsKey || evictUid) {
      const w = clusterWaits();
      if (w.length > 0) return active(rotating(k, 'ReplacingKey', cur.podUID, waits(`next: a new key pair for ${pod(k)}`, w)));
    }
    const events: RolloutEvent[] = needsKey
      ? [{
          type: 'Normal',
          reason: 'WireGuardKeyReplaced',
          message: `New WireGuard key pair for ${pod(k)} (generation ${target}); its public key is published to the peers; evicting ${pod(k)} so it restarts with the new key`,
        }]
      : [];
    const status = rotating(k, 'RestartingPod', evictUid ?? cur.podUID, `evicting ${pod(k)} to restart it with its new key`);
    return active(status, events, {
      ...(needsKey ? { replaceKey: k } : {}),
      ...(evictUid ? { evict: { pod: pod(k), uid: evictUid } } : {}),
    });
  }

  // RestartingPod
  if (p && p.uid === cur.podUID) {
    if (p.terminating) return active(rotating(k, 'RestartingPod', cur.podUID, `waiting for ${pod(k)} to terminate and come back with its new key`));
    // The old instance is still there: the eviction was refused (PodDisruptionBudget) or never happened.
    const w = clusterWaits();
    if (w.length > 0) return active(rotating(k, 'RestartingPod', cur.podUID, waits(`${pod(k)} still runs with its old key`, w)));
    return active(rotating(k, 'RestartingPod', cur.podUID, `evicting ${pod(k)} to restart it with its new key`), [], {
      evict: { pod: pod(k), uid: p.uid },
    });
  }
  const w = clusterWaits();
  if (w.length > 0) return active(rotating(k, 'RestartingPod', cur.podUID, waits(`${pod(k)} restarted with its new key`, w)));
  const j = nextOrdinal();
  const restarted: RolloutEvent = {
    type: 'Normal',
    reason: 'WireGuardPodRestarted',
    message: `${pod(k)} is Ready again with its new WireGuard key and the cluster is fully ready${j === undefined ? '' : `; next: ${pod(j)}`}`,
  };
  return j === undefined ? complete([restarted]) : begin(j, [restarted]);
}
