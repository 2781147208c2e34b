// The status phase: what a pass found, as conditions and the status
// subresource, and the events that close the pass (the rollout's steps,
// condition flips, problems).
import type { Condition, VaultCluster, VaultClusterStatus } from '../api/types.js';
import type { ResizeDecision } from '../resize/machine.js';
import type { ObservedStatefulSet, RolloutDecision } from '../rollout/machine.js';
import { parseResize } from './membership.js';
import { getCondition, setCondition, type ConditionInput } from './conditions.js';
import type { OperatorEvent } from './events.js';
import type { Pass } from './pass.js';
import { parseRollout } from './stored-status.js';
import { parseWireguardStatus, type WireguardPass } from './wireguard.js';

/** What the phases before found and did. */
export interface Findings {
  vc: VaultCluster;
  /** The Raft size and the resize step (./membership.ts). */
  resize: ResizeDecision;
  statefulSet: ObservedStatefulSet | null;
  leader: string | undefined;
  decision: RolloutDecision;
  /** Nothing was applied (see ensureSecrets). */
  blocked: boolean;
  wireguard: WireguardPass | undefined;
}

export function passStatus(pass: Pass, f: Findings): VaultClusterStatus & { conditions: Condition[] } {
  const { vc, decision, blocked, wireguard: wg, resize } = f;
  const readyReplicas = f.statefulSet?.readyReplicas ?? 0;
  let conditions: Condition[] = pass.storedConditions;
  const set = (c: ConditionInput) => (conditions = setCondition(conditions, c, pass.generation, pass.now));
  const allReady = f.statefulSet !== null && readyReplicas >= vc.spec.replicas;
  const readiness = `${readyReplicas}/${vc.spec.replicas} replicas ready${f.leader ? `; Raft leader ${f.leader}` : '; no Raft leader known'}`;
  set({
    type: 'Ready',
    ...(!blocked && resize.notReady
      ? { ...resize.notReady, message: `${resize.notReady.message} (${readiness})` }
      : { status: allReady ? 'True' : 'False', reason: allReady ? 'AllReplicasReady' : 'ReplicasNotReady', message: readiness }),
  });
  set({
    type: 'Progressing',
    ...(blocked
      ? { status: 'False', reason: 'Blocked', message: pass.problems.map((p) => p.message).join('; ') }
      : decision.active
        ? decision.progressing
        : resize.progressing
          ? resize.progressing
          : wg?.progressing
            ? wg.progressing
            : decision.progressing),
  });
  set(
    pass.problems.length > 0
      ? { type: 'Degraded', status: 'True', reason: pass.problems[0]!.reason, message: pass.problems.map((p) => p.message).join('; ') }
      : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no problems found' },
  );
  set({ type: 'RewrapEnabled', ...decision.rewrapEnabled });
  // A blocked pass keeps what it did not get to recompute.
  const keptWireguard = blocked && vc.spec.wireguard.enabled ? parseWireguardStatus(pass.stored.wireguard) : undefined;
  const keptMembers = typeof pass.stored.members === 'number' ? pass.stored.members : resize.members;
  const resizeStatus = blocked ? parseResize(pass.stored.resize) : resize.resize;
  return {
    observedGeneration: pass.generation,
    readyReplicas,
    members: blocked ? keptMembers : resize.members,
    ...(resizeStatus ? { resize: resizeStatus } : {}),
    ...(f.leader ? { leader: f.leader } : {}),
    rollout: blocked ? (parseRollout(pass.stored.rollout) ?? decision.rollout) : decision.rollout,
    ...(wg ? { wireguard: wg.status } : keptWireguard ? { wireguard: keptWireguard } : {}),
    conditions,
  };
}

/** The rollout's steps (unless blocked), Ready and Degraded flips, and one Warning per problem. */
export function closingEvents(
  pass: Pass, conditions: readonly Condition[], decision: RolloutDecision, blocked: boolean, resize?: ResizeDecision,
): OperatorEvent[] {
  const events: OperatorEvent[] = blocked ? [] : [...decision.events, ...(resize?.events ?? [])];
  const before = (type: 'Ready' | 'Degraded') => getCondition(pass.storedConditions, type);
  const flip = (type: 'Ready' | 'Degraded') => {
    const after = getCondition(conditions, type);
    return after && before(type)?.status !== after.status ? after : undefined;
  };
  const ready = flip('Ready');
  if (ready?.status === 'True') events.push({ type: 'Normal', reason: 'Ready', message: ready.message });
  // A resize says what it does in events of its own (ResizeStarted, ScalingUp, …).
  else if (ready && before('Ready')?.status === 'True' && ready.reason !== 'Resizing') events.push({ type: 'Warning', reason: 'NotReady', message: ready.message });
  for (const p of pass.problems) events.push({ type: 'Warning', reason: p.reason, message: p.message });
  const degraded = flip('Degraded');
  if (degraded?.status === 'False' && before('Degraded')?.status === 'True') {
    events.push({ type: 'Normal', reason: 'Recovered', message: 'no problems found any more' });
  }
  return events;
}
