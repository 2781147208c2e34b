// The workload phase: the manifests for the rollout's template (the WireGuard
// sidecar included when the overlay is on), each applied server-side. A
// failed apply is reported (Degraded ApplyFailed) before it is rethrown.
import type { KubernetesObject } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { buildManifests, type BuildOptions, type PodExtension } from '../manifests/build.js';
import type { RolloutDecision } from '../rollout/machine.js';
import { wireguardPodExtension } from '../wireguard/sidecar.js';
import { describeError } from './client.js';
import { setCondition } from './conditions.js';
import { NotLeaderError, recordEvents, type Pass, type PassDeps } from './pass.js';
import { carryStatus, writeStatus } from './stored-status.js';

/** BuildOptions of the operator's caller (more pod extensions); the rest are the pass's. */
export type ExtraBuildOptions = Omit<BuildOptions, 'rewrapEnabled' | 'image' | 'clusterDomain' | 'formedMembers' | 'pdbMaxUnavailable'>;

export interface WorkloadOptions {
  extra: ExtraBuildOptions;
  nativeSidecar: boolean;
  clusterDomain?: string;
  /** See BuildOptions.formedMembers. */
  formedMembers?: number;
  /** See BuildOptions.pdbMaxUnavailable. */
  pdbMaxUnavailable?: number;
}

export function workloadObjects(vc: VaultCluster, decision: RolloutDecision, opts: WorkloadOptions): KubernetesObject[] {
  const { extra } = opts;
  const wgExtension = wireguardPodExtension(vc, {
    image: decision.template.image, nativeSidecar: opts.nativeSidecar, ...(opts.formedMembers !== undefined ? { formedMembers: opts.formedMembers } : {}),
  });
  const podExtensions: PodExtension[] = [...(extra.podExtensions ?? []), ...(wgExtension ? [wgExtension] : [])];
  return buildManifests(vc, {
    ...extra,
    podExtensions,
    rewrapEnabled: decision.template.rewrapEnabled,
    image: decision.template.image,
    ...(opts.formedMembers !== undefined ? { formedMembers: opts.formedMembers } : {}),
    ...(opts.pdbMaxUnavailable !== undefined ? { pdbMaxUnavailable: opts.pdbMaxUnavailable } : {}),
    ...(opts.clusterDomain ? { clusterDomain: opts.clusterDomain } : {}),
  }).objects;
}

/** Applies the objects in order; a Created or Updated event for each one that changed. */
export async function applyObjects(deps: PassDeps, pass: Pass, objects: readonly KubernetesObject[]): Promise<void> {
  const { client } = deps;
  try {
    for (const obj of objects) {
      const ref = { apiVersion: obj.apiVersion ?? 'v1', kind: obj.kind ?? '', namespace: pass.namespace, name: obj.metadata?.name ?? '' };
      const before = await client.getResourceVersion(ref);
      deps.guard();
      const after = await client.apply(obj);
      if (before === null) pass.events.push({ type: 'Normal', reason: 'Created', message: `Created ${ref.kind} ${ref.name}` });
      else if (after !== before) pass.events.push({ type: 'Normal', reason: 'Updated', message: `Updated ${ref.kind} ${ref.name}` });
    }
  } catch (err) {
    if (err instanceof NotLeaderError) throw err;
    const message = `server-side apply failed: ${describeError(err)}`;
    const conditions = setCondition(pass.storedConditions, { type: 'Degraded', status: 'True', reason: 'ApplyFailed', message }, pass.generation, pass.now);
    await writeStatus(deps, pass, { ...carryStatus(pass.stored), conditions }).catch(() => {});
    await recordEvents(deps, pass, [...pass.events, { type: 'Warning', reason: 'ApplyFailed', message }]);
    throw err;
  }
}
