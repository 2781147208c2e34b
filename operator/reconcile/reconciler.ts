// reconcile(key): one level-triggered, idempotent pass over one VaultCluster.
//
//   get VaultCluster -> validate (invalid: Degraded condition + Warning event, nothing applied)
//   -> keep a formed cluster at its Raft size (status.members; a changed
//      spec.replicas is Degraded, not applied: membership changes are not automated)
//   -> ensure generated Secrets (create if absent, never overwrite)
//   -> observe StatefulSet, pods and each pod's /v1/health
//   -> decide the rollout step (pure, operator/rollout)
//   -> WireGuard (spec.wireguard.enabled): key Secret, rotation step (pure,
//      operator/wireguard), peer ConfigMap (./wireguard.ts)
//   -> build manifests -> server-side apply every object -> eviction a key
//      rotation asks for -> status subresource -> events.
//
// Every write goes through `guard()` first, which throws when this replica
// stopped being the leader: a lost lease stops acting at the next write.
import type { KubernetesObject, V1Pod, V1StatefulSet } from '@kubernetes/client-node';
import { ROLLOUT_PHASES } from '../api/schema.js';
import type { Condition, RolloutStatus, VaultCluster, VaultClusterStatus } from '../api/types.js';
import { formatIssues, validateVaultCluster } from '../api/validate.js';
import { buildManifests, type BuildOptions, type PodExtension } from '../manifests/build.js';
import { CONTAINER_NAME, claimName, podName, resourceNames, selectorLabels } from '../manifests/names.js';
import { buildGeneratedSecret, secretTemplates } from '../manifests/secrets.js';
import { decideRollout, type ObservedStatefulSet, type RolloutDecision } from '../rollout/machine.js';
import { wireguardPodExtension } from '../wireguard/sidecar.js';
import { realClock, type Clock } from './clock.js';
import { describeError, type ClusterClient } from './client.js';
import { getCondition, parseConditions, setCondition, type ConditionInput } from './conditions.js';
import type { EventRecorder, EventTarget, OperatorEvent } from './events.js';
import type { PodHealth, PodHealthProbe } from './health.js';
import { silentLogger, type Logger } from './logger.js';
import { evictAfterApply, parseWireguardStatus, wireguardPass, type WireguardPass } from './wireguard.js';

export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor() {
    super('not the leader any more; not acting');
  }
}

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
  buildOptions?: (vc: VaultCluster) => Omit<BuildOptions, 'rewrapEnabled' | 'image' | 'clusterDomain'>;
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

interface Problem {
  reason: string;
  message: string;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: 'default', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** The pieces of the StatefulSet the rollout reads. */
export function observeStatefulSet(sts: V1StatefulSet): ObservedStatefulSet {
  const container = sts.spec?.template?.spec?.containers?.find((c) => c.name === CONTAINER_NAME);
  const flag = container?.env?.find((e) => e.name === 'VAULT_KMS_REWRAP_ENABLED')?.value;
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
  };
}

/** status.rollout as stored, if it is well-formed enough to resume from. */
export function parseRollout(raw: unknown): RolloutStatus | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (typeof o.phase !== 'string' || !(ROLLOUT_PHASES as readonly string[]).includes(o.phase)) return undefined;
  const out: RolloutStatus = { phase: o.phase as RolloutStatus['phase'] };
  for (const k of ['targetImage', 'targetRevision', 'startedAt', 'lastTransitionTime', 'message'] as const) {
    if (typeof o[k] === 'string') out[k] = o[k] as string;
  }
  for (const k of ['targetRewrap', 'currentRewrap'] as const) if (typeof o[k] === 'boolean') out[k] = o[k] as boolean;
  return out;
}

/** The Raft leader most pods agree on. */
function leaderOf(health: readonly (PodHealth | null)[]): string | undefined {
  const votes = new Map<string, number>();
  for (const h of health) if (h?.leaderId) votes.set(h.leaderId, (votes.get(h.leaderId) ?? 0) + 1);
  let best: string | undefined;
  let n = 0;
  for (const [id, c] of [...votes].sort()) if (c > n) [best, n] = [id, c];
  return best;
}

export class Reconciler {
  private readonly client: ClusterClient;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly guard: () => void;
  private nativeSidecars: boolean | undefined;

  constructor(private readonly opts: ReconcilerOptions) {
    this.client = opts.client;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger ?? silentLogger;
    this.guard = opts.guard ?? (() => {});
    this.nativeSidecars = opts.nativeSidecars;
  }

  /** Native sidecars need Kubernetes 1.29 (SidecarContainers on by default). */
  private async useNativeSidecars(): Promise<boolean> {
    if (this.nativeSidecars === undefined) {
      const v = await this.client.serverVersion?.().catch(() => null);
      this.nativeSidecars = !v || v.major > 1 || v.minor >= 29;
      if (v) this.log.info({ kubernetes: `${v.major}.${v.minor}`, nativeSidecars: this.nativeSidecars }, 'API server version');
    }
    return this.nativeSidecars;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const raw = await this.client.getVaultCluster(namespace, name);
    if (!raw) return { outcome: 'deleted' };
    const meta = (raw.metadata ?? {}) as { uid?: string; resourceVersion?: string; generation?: number; deletionTimestamp?: string };
    // Owned objects go with the garbage collector; PVCs per spec.storage.
    if (meta.deletionTimestamp) return { outcome: 'deleted' };
    const target: EventTarget = {
      namespace, name, ...(meta.uid ? { uid: meta.uid } : {}), ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
    };
    const generation = meta.generation ?? 0;
    const rawStatus = (raw.status ?? {}) as Record<string, unknown>;
    const prevConditions = parseConditions(rawStatus.conditions);
    const nowIso = new Date(this.clock.now()).toISOString();

    // ---- validate (status is the operator's own; a malformed one must not block the spec)
    const { status: _ignored, ...withoutStatus } = raw;
    const valid = validateVaultCluster(withoutStatus);
    if (!valid.ok) {
      const message = `invalid spec:\n${formatIssues(valid.errors)}`;
      const conditions = setCondition(prevConditions, { type: 'Degraded', status: 'True', reason: 'InvalidSpec', message }, generation, nowIso);
      const status: VaultClusterStatus = {
        ...this.carryStatus(rawStatus),
        observedGeneration: generation,
        conditions: setCondition(conditions, { type: 'Progressing', status: 'False', reason: 'InvalidSpec', message: 'nothing is applied until the spec is valid' }, generation, nowIso),
      };
      await this.writeStatus(namespace, name, rawStatus, status);
      await this.emit(target, [{ type: 'Warning', reason: 'InvalidSpec', message: message.replace(/\n\s*/g, ' ') }]);
      this.log.warn({ vaultcluster: key, issues: valid.errors }, 'invalid VaultCluster spec; not applying');
      return { outcome: 'invalid' };
    }
    const requested = valid.value;
    const names = resourceNames(name);
    const problems: Problem[] = [];
    const events: OperatorEvent[] = [];

    // ---- observe
    const stsRaw = await this.client.getStatefulSet(namespace, names.statefulSet);
    const sts = stsRaw ? observeStatefulSet(stsRaw) : null;

    // ---- Raft membership: the operator does not change it, so a formed cluster keeps its size
    const members = establishedMembers(rawStatus.members, sts, requested.spec.replicas);
    // (members came from a spec once validated, or from the StatefulSet the operator sized from one: 1, 3, 5 or 7.)
    const vc: VaultCluster = members === requested.spec.replicas
      ? requested
      : { ...requested, spec: { ...requested.spec, replicas: members as VaultCluster['spec']['replicas'] } };
    if (members !== requested.spec.replicas) problems.push(replicasChangeProblem(members, requested.spec.replicas));

    // ---- generated and referenced Secrets
    let blocked = false;
    for (const t of secretTemplates(vc)) {
      const existing = await this.client.getSecret(t.namespace, t.name);
      if (existing) {
        const data = { ...(existing.data ?? {}), ...(existing.stringData ?? {}) };
        if (!(t.key in data)) problems.push({ reason: 'SecretKeyMissing', message: `Secret ${t.name} has no key "${t.key}" (${t.description})` });
        continue;
      }
      if (!t.generated) {
        problems.push({ reason: 'SecretMissing', message: `Secret ${t.name} (key "${t.key}", ${t.description}) does not exist; create it` });
        continue;
      }
      if (t.purpose === 'local-master-key' && (sts !== null || (await this.client.persistentVolumeClaimExists(namespace, claimName(name, 0))))) {
        // A new key would make every stored secret undecryptable.
        problems.push({
          reason: 'MasterKeyMissing',
          message: `the generated master key Secret ${t.name} is gone but data volumes exist; the operator will not generate a new key (it would make every stored secret undecryptable). Restore the Secret from a backup.`,
        });
        blocked = true;
        continue;
      }
      this.guard();
      const result = await this.client.createSecret(buildGeneratedSecret(vc, t));
      if (result === 'created') {
        events.push({ type: 'Normal', reason: 'SecretGenerated', message: `Generated Secret ${t.name} (${t.description}); it is never overwritten` });
      }
    }
    if (vc.spec.tls) {
      const tls = await this.client.getSecret(namespace, vc.spec.tls.secretName);
      const data = tls ? { ...(tls.data ?? {}), ...(tls.stringData ?? {}) } : {};
      if (!tls) problems.push({ reason: 'SecretMissing', message: `TLS Secret ${vc.spec.tls.secretName} does not exist` });
      else if (!('tls.crt' in data) || !('tls.key' in data)) {
        problems.push({ reason: 'SecretKeyMissing', message: `TLS Secret ${vc.spec.tls.secretName} needs keys tls.crt and tls.key` });
      }
    }

    // ---- pods and their /v1/health
    const pods = await this.client.listPods(namespace, Object.entries(selectorLabels(name)).map(([k, v]) => `${k}=${v}`).join(','));
    const byName = new Map<string, V1Pod>(pods.map((p) => [p.metadata?.name ?? '', p]));
    const wanted = Array.from({ length: Math.max(vc.spec.replicas, sts?.specReplicas ?? 0) }, (_, i) => podName(name, i));
    const health = await Promise.all(
      wanted.map(async (pod) => {
        const p = byName.get(pod);
        if (!p || p.metadata?.deletionTimestamp) return null;
        return this.opts.health({ pod, namespace, podIP: p.status?.podIP, tls: vc.spec.tls !== undefined });
      }),
    );
    const podReleases: Record<string, string | null> = {};
    wanted.forEach((pod, i) => (podReleases[pod] = health[i]?.version ?? null));

    // ---- decide and apply
    const decision = decideRollout({
      name, spec: vc.spec, previous: parseRollout(rawStatus.rollout), statefulSet: sts, podReleases, now: nowIso,
    });
    const previousWireguard = parseWireguardStatus(rawStatus.wireguard);
    let wg: WireguardPass | undefined;
    if (!blocked) {
      if (vc.spec.wireguard.enabled) {
        wg = await wireguardPass(
          this.client,
          this.guard,
          {
            vc, statefulSet: sts, pods: byName, rolloutActive: decision.active, previous: previousWireguard, now: nowIso,
            ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
          },
          this.opts.generateWireguardKey,
        );
        events.push(...wg.events);
      }
      const extra = this.opts.buildOptions?.(vc) ?? {};
      const wgExtension = wireguardPodExtension(vc, { image: decision.template.image, nativeSidecar: await this.useNativeSidecars() });
      const podExtensions: PodExtension[] = [...(extra.podExtensions ?? []), ...(wgExtension ? [wgExtension] : [])];
      const manifests = buildManifests(vc, {
        ...extra,
        podExtensions,
        rewrapEnabled: decision.template.rewrapEnabled,
        image: decision.template.image,
        ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
      });
      // The peer ConfigMap goes first: the pods mount it.
      const objects: KubernetesObject[] = [...(wg ? [wg.configMap] : []), ...manifests.objects];
      try {
        for (const obj of objects) {
          const ref = { apiVersion: obj.apiVersion ?? 'v1', kind: obj.kind ?? '', namespace, name: obj.metadata?.name ?? '' };
          const before = await this.client.getResourceVersion(ref);
          this.guard();
          const after = await this.client.apply(obj);
          if (before === null) events.push({ type: 'Normal', reason: 'Created', message: `Created ${ref.kind} ${ref.name}` });
          else if (after !== before) events.push({ type: 'Normal', reason: 'Updated', message: `Updated ${ref.kind} ${ref.name}` });
        }
      } catch (err) {
        if (err instanceof NotLeaderError) throw err;
        const message = `server-side apply failed: ${describeError(err)}`;
        const conditions = setCondition(prevConditions, { type: 'Degraded', status: 'True', reason: 'ApplyFailed', message }, generation, nowIso);
        await this.writeStatus(namespace, name, rawStatus, { ...this.carryStatus(rawStatus), conditions }).catch(() => {});
        await this.emit(target, [...events, { type: 'Warning', reason: 'ApplyFailed', message }]);
        throw err;
      }
      if (wg) events.push(...(await evictAfterApply(this.client, this.guard, namespace, wg.decision)));
    }

    // ---- status
    const readyReplicas = stsRaw?.status?.readyReplicas ?? 0;
    const leader = leaderOf(health);
    let conditions: Condition[] = prevConditions;
    const set = (c: ConditionInput) => (conditions = setCondition(conditions, c, generation, nowIso));
    const allReady = sts !== null && readyReplicas >= vc.spec.replicas;
    set({
      type: 'Ready',
      status: allReady ? 'True' : 'False',
      reason: allReady ? 'AllReplicasReady' : 'ReplicasNotReady',
      message: `${readyReplicas}/${vc.spec.replicas} replicas ready${leader ? `; Raft leader ${leader}` : '; no Raft leader known'}`,
    });
    set({
      type: 'Progressing',
      ...(blocked
        ? { status: 'False', reason: 'Blocked', message: problems.map((p) => p.message).join('; ') }
        : !decision.active && wg?.progressing
          ? wg.progressing
          : decision.progressing),
    });
    set(
      problems.length > 0
        ? { type: 'Degraded', status: 'True', reason: problems[0]!.reason, message: problems.map((p) => p.message).join('; ') }
        : { type: 'Degraded', status: 'False', reason: 'AsExpected', message: 'no problems found' },
    );
    set({ type: 'RewrapEnabled', ...decision.rewrapEnabled });
    const status: VaultClusterStatus = {
      observedGeneration: generation,
      readyReplicas,
      members,
      ...(leader ? { leader } : {}),
      rollout: blocked ? (parseRollout(rawStatus.rollout) ?? decision.rollout) : decision.rollout,
      ...(wg ? { wireguard: wg.status } : blocked && vc.spec.wireguard.enabled && previousWireguard ? { wireguard: previousWireguard } : {}),
      conditions,
    };
    await this.writeStatus(namespace, name, rawStatus, status);

    // ---- events: steps taken, condition flips, problems
    if (!blocked) events.push(...decision.events);
    const flip = (type: 'Ready' | 'Degraded') => {
      const before = getCondition(prevConditions, type);
      const after = getCondition(conditions, type);
      return after && before?.status !== after.status ? after : undefined;
    };
    const ready = flip('Ready');
    if (ready?.status === 'True') events.push({ type: 'Normal', reason: 'Ready', message: ready.message });
    else if (ready && getCondition(prevConditions, 'Ready')?.status === 'True') events.push({ type: 'Warning', reason: 'NotReady', message: ready.message });
    for (const p of problems) events.push({ type: 'Warning', reason: p.reason, message: p.message });
    const degraded = flip('Degraded');
    if (degraded?.status === 'False' && getCondition(prevConditions, 'Degraded')?.status === 'True') {
      events.push({ type: 'Normal', reason: 'Recovered', message: 'no problems found any more' });
    }
    await this.emit(target, events);
    this.log.info(
      {
        vaultcluster: key, phase: decision.rollout.phase, template: decision.template, gate: decision.gate.met, waitingFor: decision.gate.waitingFor, readyReplicas,
        problems: problems.map((p) => p.reason),
        ...(wg ? { wireguard: { keyGeneration: wg.status.keyGeneration, rotatingOrdinal: wg.status.rotatingOrdinal, step: wg.status.step } } : {}),
      },
      'reconciled',
    );

    const requeue = [decision.active || wg?.active ? (this.opts.activeRequeueMs ?? 5_000) : undefined, problems.length > 0 ? (this.opts.problemRequeueMs ?? 30_000) : undefined]
      .filter((v): v is number => v !== undefined);
    return {
      outcome: blocked ? 'blocked' : 'reconciled',
      decision,
      ...(requeue.length > 0 ? { requeueAfterMs: Math.min(...requeue) } : {}),
    };
  }

  /** Fields of the stored status kept as they are when this pass does not recompute them. */
  private carryStatus(raw: Record<string, unknown>): VaultClusterStatus {
    const out: VaultClusterStatus = {};
    if (typeof raw.observedGeneration === 'number') out.observedGeneration = raw.observedGeneration;
    if (typeof raw.readyReplicas === 'number') out.readyReplicas = raw.readyReplicas;
    if (typeof raw.leader === 'string') out.leader = raw.leader;
    const rollout = parseRollout(raw.rollout);
    if (rollout) out.rollout = rollout;
    const wireguard = parseWireguardStatus(raw.wireguard);
    if (wireguard) out.wireguard = wireguard;
    const conditions = parseConditions(raw.conditions);
    if (conditions.length > 0) out.conditions = conditions;
    return out;
  }

  /** Writes the status only when it differs from what is stored (no update loops through our own watch). */
  private async writeStatus(namespace: string, name: string, stored: Record<string, unknown>, status: VaultClusterStatus): Promise<void> {
    if (sameJson(normalizeStatus(stored), normalizeStatus(status as Record<string, unknown>))) return;
    this.guard();
    await this.client.applyVaultClusterStatus(namespace, name, status);
  }

  private async emit(target: EventTarget, events: readonly OperatorEvent[]): Promise<void> {
    for (const e of events) await this.opts.events.record(target, e);
  }
}

function normalizeStatus(s: Record<string, unknown>): unknown {
  return JSON.parse(JSON.stringify(s, (_k, v: unknown) => (v === null ? undefined : v)));
}

function sameJson(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * How many Raft voters the cluster was formed with: what status says, else
 * (a cluster from an operator that did not record it) its StatefulSet's size,
 * else, for a cluster not created yet, what the spec asks for.
 */
export function establishedMembers(recorded: unknown, sts: ObservedStatefulSet | null, requested: number): number {
  if (typeof recorded === 'number' && Number.isSafeInteger(recorded) && recorded >= 1) return recorded;
  if (sts !== null && sts.specReplicas >= 1) return sts.specReplicas;
  return requested;
}

/**
 * New pods would bootstrap a Raft configuration of their own and never join
 * (they are initial voters in VAULT_PEERS), and removed pods would stay voters,
 * leaving a shrunk cluster without fault tolerance (a rolling restart of the
 * rest then loses quorum). So the change is not applied, and says why.
 */
function replicasChangeProblem(members: number, requested: number): Problem {
  return {
    reason: 'ReplicasChangeUnsupported',
    message:
      `spec.replicas is ${requested} but this cluster was formed with ${members} Raft voters; the operator does not change Raft ` +
      `membership, so it keeps ${members} pods (new pods would never join; removed ones would stay voters and cost the cluster ` +
      `its fault tolerance). Set spec.replicas back to ${members}. To resize: take a snapshot (GET /v1/admin/snapshot), create a ` +
      `new VaultCluster of the size you want, and restore it there (POST /v1/admin/snapshot).`,
  };
}
