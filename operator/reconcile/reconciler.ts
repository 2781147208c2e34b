// reconcile(key): one level-triggered, idempotent pass over one VaultCluster.
// reconcile() below is the list of phases; each lives in its own file:
//
//   load ./pass.ts -> validate ./validate.ts -> observe the StatefulSet
//   ./observe.ts -> Secrets ./secrets.ts -> observe pods and their
//   /v1/health ./observe.ts -> the Raft size and a resize step
//   ./membership.ts (pure, operator/resize) -> decide the rollout step (pure,
//   operator/rollout) -> WireGuard keys, rotation and peers ./wireguard.ts ->
//   the read-allowlist and members ConfigMaps -> build and apply the workload
//   ./workload.ts -> the eviction a key rotation asks for -> status and
//   events ./status.ts.
//
// One change to the pods at a time: a resize requested while a release
// rollout or a key rotation runs waits for it (Pending); once a resize
// started, the rollout sees the StatefulSet's current image and flag as the
// spec (so it starts only after the resize), and the key rotation waits as
// it does for a rollout. Turning the rotation flag off is never held back.
//
// Every write goes through `guard()` first, which throws when this replica
// stopped being the leader: a lost lease stops acting at the next write.
import type { V1Pod } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { membersConfigMap } from '../manifests/members.js';
import { pdbMaxUnavailable, type ResizeDecision } from '../resize/machine.js';
import { decideRollout, isActivePhase, type ObservedStatefulSet, type RolloutDecision } from '../rollout/machine.js';
import { realClock, type Clock } from './clock.js';
import type { ClusterClient } from './client.js';
import type { EventRecorder } from './events.js';
import type { PodHealthProbe } from './health.js';
import { silentLogger, type Logger } from './logger.js';
import { otherChangeInProgress, planSize, type Sized } from './membership.js';
import { observePods, readStatefulSet } from './observe.js';
import { loadPass, recordEvents, type Pass, type PassDeps } from './pass.js';
import { readAllowlistPass } from './read-allowlist.js';
import { ensureSecrets } from './secrets.js';
import { closingEvents, passStatus, type Findings } from './status.js';
import { parseRollout, writeStatus } from './stored-status.js';
import { validateSpec } from './validate.js';
import { evictAfterApply, parseWireguardStatus, wireguardPass, type WireguardPass } from './wireguard.js';
import { applyObjects, workloadObjects, type ExtraBuildOptions } from './workload.js';

export interface ReconcilerOptions {
  client: ClusterClient;
  health: PodHealthProbe;
  events: EventRecorder;
  clock?: Clock;
  logger?: Logger;
  /** Throws (NotLeaderError) when this replica must not write. Called before every write. */
  guard?: () => void;
  clusterDomain?: string;
  /** Poll interval while a rollout is in progress (pod health is not watched). Default 5 s. */
  activeRequeueMs?: number;
  /** Retry interval while a Secret the pods need is missing. Default 30 s. */
  problemRequeueMs?: number;
  /** Extra BuildOptions (more pod extensions; the WireGuard sidecar is added by the reconciler itself). */
  buildOptions?: (vc: VaultCluster) => ExtraBuildOptions;
  /**
   * Run the WireGuard sidecar as a native sidecar (init container with
   * restartPolicy Always). Default: asked from the API server's version
   * once (1.29 or newer), true when it cannot tell.
   */
  nativeSidecars?: boolean;
  /** WireGuard private key source (tests). */
  generateWireguardKey?: () => string;
}

export interface ReconcileResult {
  /** Reconcile this key again after this long (on top of watches and resync). */
  requeueAfterMs?: number;
  /** What happened, for logs and tests. */
  outcome: 'deleted' | 'invalid' | 'reconciled' | 'blocked';
  decision?: RolloutDecision;
}

export class Reconciler {
  private readonly deps: PassDeps;
  private readonly clock: Clock;
  private nativeSidecars: boolean | undefined;

  constructor(private readonly opts: ReconcilerOptions) {
    this.deps = { client: opts.client, guard: opts.guard ?? (() => {}), events: opts.events, log: opts.logger ?? silentLogger };
    this.clock = opts.clock ?? realClock;
    this.nativeSidecars = opts.nativeSidecars;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { client } = this.deps;
    const pass = await loadPass(client, key, this.clock.now());
    if (!pass) return { outcome: 'deleted' };
    const requested = await validateSpec(this.deps, pass);
    if (!requested) return { outcome: 'invalid' };
    const statefulSet = await readStatefulSet(client, pass);
    const blocked = await ensureSecrets(this.deps, pass, requested, statefulSet);
    const pods = await observePods(client, this.opts.health, pass, requested, statefulSet);
    const previousRollout = parseRollout(pass.stored.rollout);
    const sized = planSize(pass, requested, statefulSet, pods, otherChangeInProgress(pass, previousRollout ? isActivePhase(previousRollout.phase) : false));
    const { vc, resize } = sized;
    const decision = decideRollout({
      name: pass.name, spec: rolloutSpec(vc, statefulSet, resize), previous: previousRollout, statefulSet, podReleases: pods.releases, now: pass.now,
    });
    const wireguard = blocked ? undefined : await this.applyWorkload(pass, sized, statefulSet, pods.byName, decision);
    const findings: Findings = { vc, resize, statefulSet, leader: pods.leader, decision, blocked, wireguard };
    const status = passStatus(pass, findings);
    await writeStatus(this.deps, pass, status);
    await recordEvents(this.deps, pass, [...pass.events, ...closingEvents(pass, status.conditions, decision, blocked, resize)]);
    this.logPass(pass, findings);
    return this.result(pass, findings);
  }

  /** WireGuard first (its ConfigMap is applied before the pods that mount it), then the workload, then the eviction a key rotation asks for. */
  private async applyWorkload(
    pass: Pass, sized: Sized, statefulSet: ObservedStatefulSet | null, pods: ReadonlyMap<string, V1Pod>, decision: RolloutDecision,
  ): Promise<WireguardPass | undefined> {
    const { client, guard } = this.deps;
    const { vc, resize, formedMembers } = sized;
    const domain = this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {};
    let wg: WireguardPass | undefined;
    if (vc.spec.wireguard.enabled) {
      // Keys and peers for every pod the StatefulSet had at the start of this pass and every declared one:
      // new ordinals get keys before their pods exist, removed ones lose theirs after the scale-down.
      const keyed = { ...vc, spec: { ...vc.spec, replicas: resize.keyReplicas as VaultCluster['spec']['replicas'] } };
      wg = await wireguardPass(
        client,
        guard,
        {
          vc: keyed, statefulSet, pods, rolloutActive: decision.active || resize.holdsOtherChanges, previous: parseWireguardStatus(pass.stored.wireguard), now: pass.now,
          ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
        },
        this.opts.generateWireguardKey,
      );
      pass.events.push(...wg.events);
    }
    const extra = this.opts.buildOptions?.(vc) ?? {};
    const objects = workloadObjects(vc, decision, {
      extra, nativeSidecar: await this.useNativeSidecars(), formedMembers, pdbMaxUnavailable: pdbMaxUnavailable(resize.protectedVoters), ...domain,
    });
    const allowlist = await readAllowlistPass(client, vc);
    // The members ConfigMap before the StatefulSet: a pod added by a scale-up finds its own entry when it starts.
    const members = membersConfigMap(vc, resize.declared, this.opts.clusterDomain);
    await applyObjects(this.deps, pass, [...(wg ? [wg.configMap] : []), ...(allowlist ? [allowlist] : []), members, ...objects]);
    if (wg) pass.events.push(...(await evictAfterApply(client, guard, pass.namespace, wg.decision)));
    return wg;
  }

  /** Native sidecars need Kubernetes 1.29 (SidecarContainers on by default). */
  private async useNativeSidecars(): Promise<boolean> {
    if (this.nativeSidecars === undefined) {
      const v = await this.deps.client.serverVersion?.().catch(() => null);
      this.nativeSidecars = !v || v.major > 1 || v.minor >= 29;
      if (v) this.deps.log.info({ kubernetes: `${v.major}.${v.minor}`, nativeSidecars: this.nativeSidecars }, 'API server version');
    }
    return this.nativeSidecars;
  }

  private logPass(pass: Pass, { decision, statefulSet, wireguard: wg, resize }: Findings): void {
    this.deps.log.info(
      {
        vaultcluster: pass.key, phase: decision.rollout.phase,
        ...(resize.resize ? { resize: { from: resize.resize.from, to: resize.resize.to, phase: resize.resize.phase } } : {}), template: decision.template, gate: decision.gate.met, waitingFor: decision.gate.waitingFor,
        readyReplicas: statefulSet?.readyReplicas ?? 0,
        problems: pass.problems.map((p) => p.reason),
        ...(wg ? { wireguard: { keyGeneration: wg.status.keyGeneration, rotatingOrdinal: wg.status.rotatingOrdinal, step: wg.status.step } } : {}),
      },
      'reconciled',
    );
  }

  /** Poll soon while a rollout or key rotation moves, later while a problem stands. */
  private result(pass: Pass, { decision, blocked, wireguard: wg, resize }: Findings): ReconcileResult {
    const requeue = [decision.active || wg?.active || resize.active ? (this.opts.activeRequeueMs ?? 5_000) : undefined, pass.problems.length > 0 ? (this.opts.problemRequeueMs ?? 30_000) : undefined]
      .filter((v): v is number => v !== undefined);
    return {
      outcome: blocked ? 'blocked' : 'reconciled',
      decision,
      ...(requeue.length > 0 ? { requeueAfterMs: Math.min(...requeue) } : {}),
    };
  }
}

/**
 * The spec the rollout machine sees: while a resize changes the pods, the
 * StatefulSet's current image and flag (a release rollout starts after the
 * resize), except that turning the flag off is never held back.
 */
function rolloutSpec(vc: VaultCluster, sts: ObservedStatefulSet | null, resize: ResizeDecision): VaultCluster['spec'] {
  if (!resize.holdsOtherChanges || !sts?.template) return vc.spec;
  const enabled = vc.spec.kms.rewrap.enabled && sts.template.rewrapEnabled;
  return { ...vc.spec, image: sts.template.image, kms: { ...vc.spec.kms, rewrap: { ...vc.spec.kms.rewrap, enabled } } };
}
