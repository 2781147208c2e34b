// The membership phase: the Raft size (status.members), a live resize when
// spec.replicas differs from it (operator/resize/machine.ts, pure), and the
// size every later phase builds for.
//
// The cluster's Raft size is what status.members says; a cluster from an
// operator that did not record it takes its StatefulSet's size; a new one
// the spec's. VAULT_PEERS keeps the size the cluster was formed with, read
// back from the StatefulSet's template (so a lost status cannot change it).
import type { ResizeStatus, VaultCluster } from '../api/types.js';
import { RESIZE_PHASES } from '../api/schema.js';
import { decideResize, type ResizeDecision } from '../resize/machine.js';
import type { ObservedStatefulSet } from '../rollout/machine.js';
import type { PodsView } from './observe.js';
import type { Pass } from './pass.js';

export interface Sized {
  /** The spec with replicas at the StatefulSet size this pass applies. */
  vc: VaultCluster;
  /** Raft size the cluster was formed with: the number of VAULT_PEERS entries. */
  formedMembers: number;
  resize: ResizeDecision;
}

/** status.resize as stored, if it is well-formed enough to resume from. */
export function parseResize(raw: unknown): ResizeStatus | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  const size = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
  if (!size(o.from) || !size(o.to) || !(RESIZE_PHASES as readonly unknown[]).includes(o.phase)) return undefined;
  const out: ResizeStatus = { from: o.from as number, to: o.to as number, phase: o.phase as ResizeStatus['phase'] };
  for (const k of ['startedAt', 'lastTransitionTime', 'message'] as const) if (typeof o[k] === 'string') out[k] = o[k] as string;
  return out;
}

/**
 * What else is changing the pods, from the stored status: a release rollout
 * or a WireGuard key rotation in progress. A resize does not start while one
 * runs.
 */
export function otherChangeInProgress(pass: Pass, rolloutActive: boolean): string | null {
  if (rolloutActive) return 'the release rollout in progress (status.rollout)';
  const wg = pass.stored.wireguard as { rotatingOrdinal?: unknown } | undefined;
  if (wg && typeof wg.rotatingOrdinal === 'number') return `the WireGuard key rotation in progress (ordinal ${wg.rotatingOrdinal})`;
  return null;
}

export function planSize(
  pass: Pass, requested: VaultCluster, sts: ObservedStatefulSet | null, pods: PodsView, otherChange: string | null,
): Sized {
  const members = establishedMembers(pass.stored.members, sts, requested.spec.replicas);
  const h = pods.leaderHealth;
  const resize = decideResize({
    name: pass.name,
    target: requested.spec.replicas,
    members,
    statefulSet: sts,
    previous: parseResize(pass.stored.resize),
    leader: { id: pods.leader, answered: h !== null, voters: h?.voters ?? null, learners: h?.learners ?? null },
    otherChange,
    now: pass.now,
  });
  const formedMembers = sts?.peerCount ?? (sts ? members : requested.spec.replicas);
  // statefulSetReplicas is one of the sizes 1, 3, 5, 7 (a validated spec's, or the StatefulSet's the operator sized from one).
  const replicas = resize.statefulSetReplicas as VaultCluster['spec']['replicas'];
  return { vc: { ...requested, spec: { ...requested.spec, replicas } }, formedMembers, resize };
}

/**
 * How many Raft voters the cluster has: what status says, else (a cluster
 * from an operator that did not record it) its StatefulSet's size, else, for
 * a cluster not created yet, what the spec asks for.
 */
export function establishedMembers(recorded: unknown, sts: ObservedStatefulSet | null, requested: number): number {
  if (typeof recorded === 'number' && Number.isSafeInteger(recorded) && recorded >= 1) return recorded;
  if (sts !== null && sts.specReplicas >= 1) return sts.specReplicas;
  return requested;
}
