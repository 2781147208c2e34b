// The observe phases: the StatefulSet as the rollout reads it, and the pods
// with the release and Raft leader each one's /v1/health reports.
import type { V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { CONTAINER_NAME, podName, resourceNames, selectorLabels } from '../manifests/names.js';
import type { ObservedStatefulSet } from '../rollout/machine.js';
import type { ClusterClient } from './client.js';
import type { PodHealth, PodHealthProbe } from './health.js';
import type { Pass } from './pass.js';

/** The StatefulSet, or null before the first apply. */
export async function readStatefulSet(client: ClusterClient, pass: Pass): Promise<ObservedStatefulSet | null> {
  const sts = await client.getStatefulSet(pass.namespace, resourceNames(pass.name).statefulSet);
  return sts ? observeStatefulSet(sts) : null;
}

/** The pieces of the StatefulSet the rollout reads. */
export function observeStatefulSet(sts: V1StatefulSet): ObservedStatefulSet {
  const container = sts.spec?.template?.spec?.containers?.find((c) => c.name === CONTAINER_NAME);
  const flag = container?.env?.find((e) => e.name === 'VAULT_KMS_REWRAP_ENABLED')?.value;
  const peers = container?.env?.find((e) => e.name === 'VAULT_PEERS')?.value;
  const peerCount = peers ? peers.split(',').filter((p) => p.trim() !== '').length : 0;
  return {
    generation: sts.metadata?.generation ?? 0,
    ...(sts.status?.observedGeneration !== undefined ? { observedGeneration: sts.status.observedGeneration } : {}),
    specReplicas: sts.spec?.replicas ?? 1,
    replicas: sts.status?.replicas ?? 0,
    readyReplicas: sts.status?.readyReplicas ?? 0,
    updatedReplicas: sts.status?.updatedReplicas ?? 0,
    ...(sts.status?.currentRevision ? { currentRevision: sts.status.currentRevision } : {}),
    ...(sts.status?.updateRevision ? { updateRevision: sts.status.updateRevision } : {}),
    template: container?.image ? { image: container.image, rewrapEnabled: flag === 'true' } : null,
    ...(peerCount > 0 ? { peerCount } : {}),
  };
}

export interface PodsView {
  byName: ReadonlyMap<string, V1Pod>;
  /** The release each wanted pod runs, null when it cannot tell. */
  releases: Record<string, string | null>;
  /** The Raft leader most pods agree on. */
  leader: string | undefined;
  /** The leader's own /v1/health, when it answered and names itself leader (what a resize reads voters and learners from). */
  leaderHealth: PodHealth | null;
}

/** Every pod the spec or the StatefulSet wants, and each one's /v1/health. */
export async function observePods(
  client: ClusterClient,
  probe: PodHealthProbe,
  pass: Pass,
  vc: VaultCluster,
  sts: ObservedStatefulSet | null,
): Promise<PodsView> {
  const { namespace, name } = pass;
  const pods = await client.listPods(namespace, Object.entries(selectorLabels(name)).map(([k, v]) => `${k}=${v}`).join(','));
  const byName = new Map<string, V1Pod>(pods.map((p) => [p.metadata?.name ?? '', p]));
  const wanted = Array.from({ length: Math.max(vc.spec.replicas, sts?.specReplicas ?? 0) }, (_, i) => podName(name, i));
  const health = await Promise.all(
    wanted.map(async (pod) => {
      const p = byName.get(pod);
      if (!p || p.metadata?.deletionTimestamp) return null;
      return probe({ pod, namespace, podIP: p.status?.podIP, tls: vc.spec.tls !== undefined });
    }),
  );
  const releases: Record<string, string | null> = {};
  wanted.forEach((pod, i) => (releases[pod] = health[i]?.version ?? null));
  const leader = leaderOf(health);
  const i = leader === undefined ? -1 : wanted.indexOf(leader);
  const own = i >= 0 ? health[i] : null;
  return { byName, releases, leader, leaderHealth: own && own.leaderId === leader ? own : null };
}

function leaderOf(health: readonly (PodHealth | null)[]): string | undefined {
  const votes = new Map<string, number>();
  for (const h of health) if (h?.leaderId) votes.set(h.leaderId, (votes.get(h.leaderId) ?? 0) + 1);
  let best: string | undefined;
  let n = 0;
  for (const [id, c] of [...votes].sort()) if (c > n) [best, n] = [id, c];
  return best;
}
