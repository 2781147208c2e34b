// The WireGuard part of one reconcile pass (spec.wireguard.enabled):
//
//   read the key Secret -> keys for exactly spec.replicas ordinals (new
//   ordinals get new keys, removed ones lose theirs, existing keys are kept)
//   -> decide the key rotation step (pure, operator/wireguard/rotation.ts)
//   -> write the Secret (create, or update on resourceVersion) -> hand the
//   peer ConfigMap, derived from the written keys, to the caller to apply
//   before the StatefulSet -> after the apply, evict the pod the rotation
//   names.
//
// Disabling the overlay removes the sidecar and the overlay env from the pod
// template and stops this pass; the key Secret and the peer ConfigMap are
// left as they are (owned by the VaultCluster, so they go with it): turning
// the overlay on again reuses the keys, and deleting them would need delete
// rights the operator does not otherwise have.
import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import { WIREGUARD_ROTATION_STEPS } from '../api/schema.js';
import type { VaultCluster, WireguardStatus } from '../api/types.js';
import { namespaceOf, podName, resourceNames } from '../manifests/names.js';
import type { ConditionHint, ObservedStatefulSet } from '../rollout/machine.js';
import { generatePrivateKey } from '../wireguard/keys.js';
import { peersConfigMap } from '../wireguard/peers.js';
import { decideRotation, statefulSetWaits, type ObservedPod, type RotationDecision } from '../wireguard/rotation.js';
import { keySecretFor, readKeySecret, scaleKeys } from '../wireguard/secret.js';
import type { ClusterClient } from './client.js';
import type { OperatorEvent } from './events.js';

export interface WireguardPassInput {
  vc: VaultCluster;
  statefulSet: ObservedStatefulSet | null;
  pods: ReadonlyMap<string, V1Pod>;
  rolloutActive: boolean;
  previous: WireguardStatus | undefined;
  now: string;
  clusterDomain?: string;
}

export interface WireguardPass {
  /** Apply before the StatefulSet. */
  configMap: V1ConfigMap;
  decision: RotationDecision;
  status: WireguardStatus;
  events: OperatorEvent[];
  active: boolean;
  progressing?: ConditionHint;
}

export class ConcurrentSecretError extends Error {
  override readonly name = 'ConcurrentSecretError';
}

/** The rotation's view of a pod. */
export function observePod(p: V1Pod): ObservedPod | undefined {
  const uid = p.metadata?.uid;
  if (!uid) return undefined;
  return {
    uid,
    ready: (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    terminating: !!p.metadata?.deletionTimestamp,
  };
}

/** status.wireguard as stored, if it is well-formed enough to resume from. */
export function parseWireguardStatus(raw: unknown): WireguardStatus | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  const int = (v: unknown, min: number) => (typeof v === 'number' && Number.isInteger(v) && v >= min ? v : undefined);
  const keyGeneration = int(o.keyGeneration, 1);
  if (keyGeneration === undefined) return undefined;
  const out: WireguardStatus = { keyGeneration };
  const target = int(o.targetKeyGeneration, 1);
  if (target !== undefined) out.targetKeyGeneration = target;
  const ordinal = int(o.rotatingOrdinal, 0);
  const step = (WIREGUARD_ROTATION_STEPS as readonly unknown[]).includes(o.step) ? (o.step as WireguardStatus['step']) : undefined;
  if (ordinal !== undefined && step !== undefined) {
    out.rotatingOrdinal = ordinal;
    out.step = step;
  }
  for (const k of ['podUID', 'startedAt', 'lastTransitionTime', 'message'] as const) if (typeof o[k] === 'string') out[k] = o[k] as string;
  return out;
}

/**
 * Steps 1-3 of the header: the key Secret is written here (guard() first);
 * the ConfigMap is returned for the caller's apply, and the eviction for
 * evictAfterApply().
 */
export async function wireguardPass(
  client: ClusterClient,
  guard: () => void,
  input: WireguardPassInput,
  generate: () => string = generatePrivateKey,
): Promise<WireguardPass> {
  const { vc } = input;
  const name = vc.metadata.name;
  const namespace = namespaceOf(vc);
  const secretName = resourceNames(name).wireguardKeysSecret;
  const replicas = vc.spec.replicas;
  const target = vc.spec.wireguard.keyGeneration;

  const existing: V1Secret | null = await client.getSecret(namespace, secretName);
  const state = readKeySecret(existing);
  const gensNow = [...state.keys.values()].map((k) => k.generation);
  // A new Secret is at the spec's generation. One that lost its annotation is
  // at its oldest key's: anything older than the spec then gets rotated.
  const recorded = state.recorded ?? (gensNow.length > 0 ? Math.min(...gensNow) : target);
  const scaled = scaleKeys(state, name, replicas, Math.max(target, recorded), generate);

  const pods: Record<string, ObservedPod | undefined> = {};
  for (let i = 0; i < replicas; i++) {
    const p = input.pods.get(podName(name, i));
    pods[podName(name, i)] = p ? observePod(p) : undefined;
  }
  const decision = decideRotation({
    name,
    replicas,
    target,
    recorded,
    keyGenerations: scaled.entries.map((e) => e.generation),
    previous: input.previous,
    pods,
    statefulSetWaits: statefulSetWaits(input.statefulSet, replicas),
    rolloutActive: input.rolloutActive,
    now: input.now,
  });

  const entries = [...scaled.entries];
  if (decision.replaceKey !== undefined) entries[decision.replaceKey] = { privateKey: generate(), generation: target };
  const { secret, changed } = keySecretFor(vc, existing, entries, decision.recordGeneration ?? recorded);

  const events: OperatorEvent[] = [];
  if (!existing) {
    guard();
    if ((await client.createSecret(secret)) === 'exists') {
      // Someone created it between our read and this create: start over with theirs.
      throw new ConcurrentSecretError(`Secret ${secretName} appeared while creating it; retrying`);
    }
    events.push({
      type: 'Normal',
      reason: 'WireGuardKeysGenerated',
      message: `Generated Secret ${secretName} with a WireGuard key pair for each pod (${scaled.added.join(', ')}); public keys go to ConfigMap ${resourceNames(name).wireguardPeersConfigMap}`,
    });
  } else if (changed) {
    guard();
    await client.updateSecret(secret);
    if (scaled.added.length > 0) {
      events.push({ type: 'Normal', reason: 'WireGuardKeysGenerated', message: `Generated WireGuard keys for ${scaled.added.join(', ')} in Secret ${secretName}; existing keys are unchanged` });
    }
    if (scaled.removed.length > 0) {
      events.push({ type: 'Normal', reason: 'WireGuardKeysRemoved', message: `Removed the WireGuard keys of ${scaled.removed.join(', ')} from Secret ${secretName} (scaled down)` });
    }
  }
  if (existing && scaled.regenerated.length > 0) {
    events.push({
      type: 'Warning',
      reason: 'WireGuardKeyInvalid',
      message: `Secret ${secretName} held something other than a WireGuard key for ${scaled.regenerated.join(', ')}; generated new keys`,
    });
  }
  events.push(...decision.events);

  return {
    configMap: peersConfigMap(vc, entries.map((e) => e.privateKey), input.clusterDomain),
    decision,
    status: decision.status,
    events,
    active: decision.active,
    ...(decision.progressing ? { progressing: decision.progressing } : {}),
  };
}

/** The eviction a rotation step asks for, after the Secret, ConfigMap and StatefulSet were applied. */
export async function evictAfterApply(
  client: ClusterClient,
  guard: () => void,
  namespace: string,
  decision: RotationDecision,
): Promise<OperatorEvent[]> {
  const target = decision.evict;
  if (!target) return [];
  guard();
  const result = await client.evictPod(namespace, target.pod, target.uid);
  switch (result.outcome) {
    case 'evicted':
      return [{ type: 'Normal', reason: 'WireGuardPodEvicted', message: `Evicted ${target.pod} so it restarts with its new WireGuard key` }];
    case 'refused':
      return [{ type: 'Warning', reason: 'WireGuardEvictionRefused', message: `Eviction of ${target.pod} refused (${result.message}); retrying` }];
    case 'gone':
      return [];
  }
}
