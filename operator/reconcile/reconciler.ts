// reconcile(key): one level-triggered, idempotent pass over one VaultCluster.
// reconcile() below is the list of phases; each lives in its own file:
//
//   load ./pass.ts -> validate ./validate.ts -> observe the StatefulSet
//   ./observe.ts -> keep the Raft size ./membership.ts -> Secrets
//   ./secrets.ts -> observe pods and their /v1/health ./observe.ts -> decide
//   the rollout step (pure, operator/rollout) -> WireGuard keys, rotation and
//   peers ./wireguard.ts -> the read-allowlist ConfigMap ./read-allowlist.ts ->
//   build and apply the workload ./workload.ts -> the
//   eviction a key rotation asks for -> status and events ./status.ts.
//
// Every write goes through `guard()` first, which throws when this replica
// stopped being the leader: a lost lease stops acting at the next write.
import type { V1Pod } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { decideRollout, type ObservedStatefulSet, type RolloutDecision } from '../rollout/machine.js';
import { realClock, type Clock } from './clock.js';
import type { ClusterClient } from './client.js';
import type { EventRecorder } from './events.js';
import type { PodHealthProbe } from './health.js';
import { silentLogger, type Logger } from './logger.js';
import { keepFormedSize } from './membership.js';
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
    const { vc, members } = keepFormedSize(pass, requested, statefulSet);
    const blocked = await ensureSecrets(this.deps, pass, vc, statefulSet);
    const pods = await observePods(client, this.opts.health, pass, vc, statefulSet);
    const decision = decideRollout({
      name: pass.name, spec: vc.spec, previous: parseRollout(pass.stored.rollout), statefulSet, podReleases: pods.releases, now: pass.now,
    });
    const wireguard = blocked ? undefined : await this.applyWorkload(pass, vc, statefulSet, pods.byName, decision);
    const findings: Findings = { vc, members, statefulSet, leader: pods.leader, decision, blocked, wireguard };
    const status = passStatus(pass, findings);
    await writeStatus(this.deps, pass, status);
    await recordEvents(this.deps, pass, [...pass.events, ...closingEvents(pass, status.conditions, decision, blocked)]);
    this.logPass(pass, findings);
    return this.result(pass, findings);
  }

  /** WireGuard first (its ConfigMap is applied before the pods that mount it), then the workload, then the eviction a key rotation asks for. */
  private async applyWorkload(
    pass: Pass, vc: VaultCluster, statefulSet: ObservedStatefulSet | null, pods: ReadonlyMap<string, V1Pod>, decision: RolloutDecision,
  ): Promise<WireguardPass | undefined> {
    const { client, guard } = this.deps;
    let wg: WireguardPass | undefined;
    if (vc.spec.wireguard.enabled) {
      wg = await wireguardPass(
        client,
        guard,
        {
          vc, statefulSet, pods, rolloutActive: decision.active, previous: parseWireguardStatus(pass.stored.wireguard), now: pass.now,
          ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
        },
        this.opts.generateWireguardKey,
      );
      pass.events.push(...wg.events);
    }
    const extra = this.opts.buildOptions?.(vc) ?? {};
    const objects = workloadObjects(vc, decision, {
      extra, nativeSidecar: await this.useNativeSidecars(), ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
    });
    const allowlist = await readAllowlistPass(client, vc);
    await applyObjects(this.deps, pass, [...(wg ? [wg.configMap] : []), ...(allowlist ? [allowlist] : []), ...objects]);
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

  private logPass(pass: Pass, { decision, statefulSet, wireguard: wg }: Findings): void {
    this.deps.log.info(
      {
        vaultcluster: pass.key, phase: decision.rollout.phase, template: decision.template, gate: decision.gate.met, waitingFor: decision.gate.waitingFor,
        readyReplicas: statefulSet?.readyReplicas ?? 0,
        problems: pass.problems.map((p) => p.reason),
        ...(wg ? { wireguard: { keyGeneration: wg.status.keyGeneration, rotatingOrdinal: wg.status.rotatingOrdinal, step: wg.status.step } } : {}),
      },
      'reconciled',
    );
  }

  /** Poll soon while a rollout or key rotation moves, later while a problem stands. */
  private result(pass: Pass, { decision, blocked, wireguard: wg }: Findings): ReconcileResult {
    const requeue = [decision.active || wg?.active ? (this.opts.activeRequeueMs ?? 5_000) : undefined, pass.problems.length > 0 ? (this.opts.problemRequeueMs ?? 30_000) : undefined]
      .filter((v): v is number => v !== undefined);
    return {
      outcome: blocked ? 'blocked' : 'reconciled',
      decision,
      ...(requeue.length > 0 ? { requeueAfterMs: Math.min(...requeue) } : {}),
    };
  }
}
