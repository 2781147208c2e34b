import { createHash } from 'node:crypto';
import type { CoreV1Event, KubernetesObject, V1ConfigMap, V1Pod, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { VaultClusterStatus } from '../../../operator/api/types.js';
import { FakeClock } from './fake-clock.js';
import type { ClusterClient, EvictionResult, ObjectRef } from '../../../operator/reconcile/client.js';
import { setCondition } from '../../../operator/reconcile/conditions.js';
import { AllowlistPodMatcher, ownerKey } from '../../../operator/reconcile/controller.js';
import { KubeEventRecorder } from '../../../operator/reconcile/events.js';
import { healthUrl, type PodHealthProbe } from '../../../operator/reconcile/health.js';
import { NotLeaderError } from '../../../operator/reconcile/pass.js';
import { Reconciler } from '../../../operator/reconcile/reconciler.js';
import { OPERATOR_RULES, leaderElectionRules } from '../../../operator/rbac.js';
import { publicKeyOf, type PeersDocument } from '../../../operator/wireguard/index.js';
import { rawCluster } from './fixtures.js';

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** An in-memory API server for the objects the reconciler touches. */
class FakeCluster implements ClusterClient {
  objects = new Map<string, KubernetesObject>();
  vcs = new Map<string, Record<string, unknown>>();
  events: CoreV1Event[] = [];
  writes: string[] = [];
  pvcs = new Set<string>();
  /** Pods evicted and not yet recreated (recreatePods()). */
  evicted = new Set<string>();
  refuseEviction = false;
  version: { major: number; minor: number } | null = null;
  private podUids = new Map<string, string>();
  private uidN = 0;
  private rv = 100;

  private k(kind: string, ns: string, name: string) {
    return `${kind}/${ns}/${name}`;
  }
  putVc(obj: Record<string, unknown>) {
    const m = obj.metadata as { namespace: string; name: string; generation?: number };
    m.generation ??= 1;
    this.vcs.set(`${m.namespace}/${m.name}`, obj);
  }
  vc(ns = 'secrets', name = 'vault') {
    return this.vcs.get(`${ns}/${name}`)!;
  }
  get(kind: string, name: string, ns = 'secrets') {
    return this.objects.get(this.k(kind, ns, name));
  }
  async getVaultCluster(ns: string, name: string) {
    const v = this.vcs.get(`${ns}/${name}`);
    return v ? clone(v) : null;
  }
  async getResourceVersion(ref: ObjectRef) {
    return this.objects.get(this.k(ref.kind, ref.namespace, ref.name))?.metadata?.resourceVersion ?? null;
  }
  async apply(obj: KubernetesObject) {
    const key = this.k(obj.kind!, obj.metadata!.namespace!, obj.metadata!.name!);
    const old = this.objects.get(key) as (KubernetesObject & { status?: unknown }) | undefined;
    const next = clone(obj) as KubernetesObject & { status?: unknown };
    const strip = (o: KubernetesObject | undefined) => JSON.stringify({ ...o, status: undefined, metadata: { ...o?.metadata, resourceVersion: undefined, generation: undefined } });
    if (old && strip(old) === strip(next)) return old.metadata!.resourceVersion!;
    next.metadata!.resourceVersion = String(++this.rv);
    next.metadata!.generation = (old?.metadata?.generation ?? 0) + 1;
    if (old?.status) next.status = old.status;
    this.objects.set(key, next);
    this.writes.push(`apply ${key}`);
    return next.metadata!.resourceVersion!;
  }
  async getSecret(ns: string, name: string) {
    const s = this.objects.get(this.k('Secret', ns, name));
    return s ? (clone(s) as V1Secret) : null;
  }
  async createSecret(secret: V1Secret) {
    const key = this.k('Secret', secret.metadata!.namespace!, secret.metadata!.name!);
    if (this.objects.has(key)) return 'exists' as const;
    this.objects.set(key, { ...clone(secret), kind: 'Secret', metadata: { ...secret.metadata, resourceVersion: String(++this.rv) } });
    this.writes.push(`create ${key}`);
    return 'created' as const;
  }
  async updateSecret(secret: V1Secret) {
    const key = this.k('Secret', secret.metadata!.namespace!, secret.metadata!.name!);
    const old = this.objects.get(key) as V1Secret | undefined;
    if (!old) throw Object.assign(new Error('not found'), { code: 404 });
    if (old.immutable) throw Object.assign(new Error('field is immutable'), { code: 422 });
    if (old.metadata!.resourceVersion !== secret.metadata!.resourceVersion) throw Object.assign(new Error('conflict'), { code: 409 });
    this.objects.set(key, { ...clone(secret), kind: 'Secret', metadata: { ...clone(secret.metadata), resourceVersion: String(++this.rv) } });
    this.writes.push(`update ${key}`);
  }
  uidOf(pod: string) {
    if (!this.podUids.has(pod)) this.podUids.set(pod, `uid-${pod}-${++this.uidN}`);
    return this.podUids.get(pod)!;
  }
  async evictPod(_ns: string, name: string, uid: string): Promise<EvictionResult> {
    if (this.refuseEviction) return { outcome: 'refused', message: "HTTP 429: Cannot evict pod as it would violate the pod's disruption budget." };
    if (this.evicted.has(name) || this.uidOf(name) !== uid) return { outcome: 'gone' };
    this.evicted.add(name);
    this.writes.push(`evict ${name}`);
    const sts = this.get('StatefulSet', 'vault') as V1StatefulSet;
    sts.status = { ...sts.status!, readyReplicas: (sts.status?.readyReplicas ?? 1) - 1, replicas: (sts.status?.replicas ?? 1) - 1 };
    return { outcome: 'evicted' };
  }
  /** The StatefulSet controller + kwok: evicted pods come back as new, Ready instances. */
  recreatePods() {
    for (const pod of this.evicted) this.podUids.set(pod, `uid-${pod}-${++this.uidN}`);
    this.evicted.clear();
    this.rollStatefulSet();
  }
  async serverVersion() {
    return this.version;
  }
  async persistentVolumeClaimExists(ns: string, name: string) {
    return this.pvcs.has(`${ns}/${name}`);
  }
  async getStatefulSet(ns: string, name: string) {
    const s = this.objects.get(this.k('StatefulSet', ns, name));
    return s ? (clone(s) as V1StatefulSet) : null;
  }
  /** Pods besides the vault pods (listed by label selector: the readAllowlistFrom ones). */
  otherPods: V1Pod[] = [];
  podLists: string[] = [];
  async listPods(ns: string, selector = ''): Promise<V1Pod[]> {
    this.podLists.push(`${ns}?${selector}`);
    if (!selector.includes('app.kubernetes.io/instance=vault')) {
      const want = selector.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]);
      return clone(this.otherPods.filter((p) => p.metadata?.namespace === ns && want.every(([k, v]) => p.metadata?.labels?.[k] === v)));
    }
    const sts = await this.getStatefulSet(ns, 'vault');
    const n = (sts?.status?.replicas ?? 0) + this.evicted.size;
    return Array.from({ length: n }, (_, i) => `vault-${i}`)
      .filter((name) => !this.evicted.has(name))
      .map((name, i) => ({
        metadata: { name, namespace: ns, uid: this.uidOf(name) },
        status: { podIP: `10.0.0.${i + 1}`, conditions: [{ type: 'Ready', status: 'True' }] },
      }));
  }
  async applyVaultClusterStatus(ns: string, name: string, status: VaultClusterStatus) {
    this.vcs.get(`${ns}/${name}`)!.status = clone(status);
    this.writes.push(`status ${ns}/${name}`);
  }
  async createEvent(e: CoreV1Event) {
    this.events.push(e);
  }
  /** What the StatefulSet controller + kwok do: roll every pod to the template and mark them ready. */
  rollStatefulSet(done = true) {
    const sts = this.get('StatefulSet', 'vault') as V1StatefulSet;
    const rev = 'vault-' + createHash('sha256').update(JSON.stringify(sts.spec!.template)).digest('hex').slice(0, 8);
    const n = sts.spec!.replicas!;
    sts.status = done
      ? { observedGeneration: sts.metadata!.generation, replicas: n, readyReplicas: n, updatedReplicas: n, currentRevision: rev, updateRevision: rev }
      : { observedGeneration: sts.metadata!.generation, replicas: n, readyReplicas: n - 1, updatedReplicas: 1, currentRevision: 'vault-old', updateRevision: rev };
  }
  env(name: string) {
    const sts = this.get('StatefulSet', 'vault') as V1StatefulSet;
    return sts.spec!.template.spec!.containers[0]!.env!.find((e) => e.name === name)?.value;
  }
}

function setup(spec: Record<string, unknown> = {}, opts: { nativeSidecars?: boolean } = {}) {
  const clock = new FakeClock(Date.parse('2025-01-01T00:00:00Z'));
  const fake = new FakeCluster();
  fake.putVc(rawCluster({ kms: { mode: 'local' }, ...spec }));
  const releases: Record<string, string | null> = {};
  /** The Raft configuration every pod's /v1/health reports (voters null: a server older than autopilot). */
  const raft: { voters: string[] | null; learners: string[] | null } = { voters: ['vault-0', 'vault-1', 'vault-2'], learners: [] };
  const health: PodHealthProbe = async (t) => {
    const v = releases[t.pod];
    return v ? { version: v, leaderId: 'vault-0', voters: raft.voters, learners: raft.learners } : null;
  };
  let leader = true;
  const reconciler = new Reconciler({
    client: fake,
    health,
    events: new KubeEventRecorder(fake, { identity: 'test', clock }),
    clock,
    guard: () => {
      if (!leader) throw new NotLeaderError();
    },
    ...opts,
  });
  return {
    clock, fake, reconciler, releases, raft,
    setLeader: (v: boolean) => (leader = v),
    run: () => reconciler.reconcile('secrets/vault'),
    status: () => fake.vc().status as VaultClusterStatus,
    cond: (type: string) => (fake.vc().status as VaultClusterStatus).conditions?.find((c) => c.type === type),
    reasons: () => fake.events.map((e) => e.reason),
  };
}

describe('reconcile', () => {
  it('creates every object with owner references, generates the Secrets once and writes status', async () => {
    const t = setup();
    const r = await t.run();
    expect(r.outcome).toBe('reconciled');
    for (const [kind, name] of [['ServiceAccount', 'vault'], ['Service', 'vault-headless'], ['Service', 'vault-client'], ['StatefulSet', 'vault'], ['PodDisruptionBudget', 'vault']]) {
      const o = t.fake.get(kind!, name!);
      expect(o, `${kind}/${name}`).toBeDefined();
      expect(o!.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', controller: true })]);
    }
    expect(t.fake.get('Secret', 'vault-bootstrap-token')).toBeDefined();
    expect(t.fake.get('Secret', 'vault-master-key')).toBeDefined();
    expect(t.fake.get('Secret', 'vault-cluster-key')).toMatchObject({ immutable: true, data: { 'cluster-key': expect.any(String) } });
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('false');
    expect(t.status()).toMatchObject({ observedGeneration: 1, readyReplicas: 0, rollout: { phase: 'RollingOutFlagOff' } });
    expect(t.cond('Ready')).toMatchObject({ status: 'False', reason: 'ReplicasNotReady' });
    expect(t.cond('Progressing')).toMatchObject({ status: 'True', reason: 'RollingOutFlagOff' });
    expect(t.cond('Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(t.cond('RewrapEnabled')).toMatchObject({ status: 'False', reason: 'Disabled' });
    expect(t.reasons()).toEqual(['SecretGenerated', 'SecretGenerated', 'SecretGenerated', 'Created', 'Created', 'Created', 'Created', 'Created', 'Created', 'RolloutStarted']);
    expect((t.fake.get('ConfigMap', 'vault-members') as V1ConfigMap).data).toEqual({
      members: [0, 1, 2].map((i) => `vault-${i}=vault-${i}.vault-headless.secrets.svc:8201\n`).join(''),
    });
    expect(t.fake.events[0]!.involvedObject).toMatchObject({ kind: 'VaultCluster', name: 'vault', namespace: 'secrets', apiVersion: 'coffer.dev/v1alpha1' });
    expect(r.requeueAfterMs).toBe(5_000);
  });

  it('is idempotent: a steady state writes nothing', async () => {
    const t = setup();
    await t.run();
    t.fake.rollStatefulSet();
    Object.assign(t.releases, { 'vault-0': '1.0.0', 'vault-1': '1.0.0', 'vault-2': '1.0.0' });
    await t.run();
    expect(t.status().rollout?.phase).toBe('Idle');
    expect(t.cond('Ready')).toMatchObject({ status: 'True', reason: 'AllReplicasReady' });
    expect(t.status().leader).toBe('vault-0');
    t.fake.writes = [];
    const events = t.fake.events.length;
    await t.clock.advance(60_000);
    const r = await t.run();
    await t.run();
    expect(t.fake.writes).toEqual([]);
    expect(t.fake.events.length).toBe(events);
    expect(r.requeueAfterMs).toBeUndefined();
  });

  /** A formed 3-node cluster, every pod reporting 1.0.0 and the 3 voters. */
  async function formed(t: ReturnType<typeof setup>) {
    await t.run();
    t.fake.rollStatefulSet();
    for (let i = 0; i < 7; i++) t.releases[`vault-${i}`] = '1.0.0';
    await t.run();
    expect(t.status().members).toBe(3);
  }
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `vault-${i}`);
  const sts = (t: ReturnType<typeof setup>) => t.fake.get('StatefulSet', 'vault') as V1StatefulSet;
  const declared = (t: ReturnType<typeof setup>) => (t.fake.get('ConfigMap', 'vault-members') as V1ConfigMap).data!.members!.trim().split('\n');
  const pdb = (t: ReturnType<typeof setup>) => (t.fake.get('PodDisruptionBudget', 'vault') as { spec: { maxUnavailable: number } }).spec.maxUnavailable;
  const setReplicas = (t: ReturnType<typeof setup>, n: number) => {
    (t.fake.vc().spec as { replicas: number }).replicas = n;
    (t.fake.vc().metadata as { generation: number }).generation++;
  };

  it('resizes 3 -> 5: scales the StatefulSet and declares 5 members at once; Ready only when the leader reports those 5 voters; the pod template never changes', async () => {
    const t = setup();
    await formed(t);
    const template = clone(sts(t).spec!.template);
    expect(declared(t)).toHaveLength(3);
    setReplicas(t, 5);
    const r = await t.run();
    expect(r.requeueAfterMs).toBe(5_000);
    expect(sts(t).spec!.replicas).toBe(5);
    expect(sts(t).spec!.template).toEqual(template);
    expect(declared(t)).toEqual(ids(5).map((id) => `${id}=${id}.vault-headless.secrets.svc:8201`));
    expect(t.status().resize).toMatchObject({ from: 3, to: 5, phase: 'ScalingUp' });
    expect(t.status().members).toBe(3);
    expect(t.cond('Progressing')).toMatchObject({ status: 'True', reason: 'ScalingUp' });
    expect(t.cond('Ready')).toMatchObject({ status: 'False', reason: 'Resizing' });
    expect(pdb(t)).toBe(1);
    // Pods up, vault-3 a voter, vault-4 still a learner: not yet.
    t.fake.rollStatefulSet();
    Object.assign(t.raft, { voters: ids(4), learners: ['vault-4'] });
    await t.run();
    expect(t.status().resize?.phase).toBe('ScalingUp');
    expect(t.status().resize?.message).toContain('learners vault-4');
    expect(t.cond('Ready')).toMatchObject({ status: 'False', reason: 'Resizing' });
    Object.assign(t.raft, { voters: ids(5), learners: [] });
    const done = await t.run();
    expect(t.status().resize).toBeUndefined();
    expect(t.status().members).toBe(5);
    expect(t.cond('Ready')).toMatchObject({ status: 'True', reason: 'AllReplicasReady' });
    expect(t.cond('Progressing')).toMatchObject({ status: 'False' });
    expect(pdb(t)).toBe(2);
    expect(sts(t).spec!.template).toEqual(template);
    expect(t.fake.env('VAULT_PEERS')!.split(',')).toHaveLength(3);
    expect(t.reasons().filter((x) => !!x && (x.startsWith('Resize') || x.startsWith('Scaling')))).toEqual(['ResizeStarted', 'ScalingUp', 'ResizeComplete']);
    expect(t.reasons()).not.toContain('NotReady');
    expect(done.requeueAfterMs).toBeUndefined();
  });

  it('resizes 5 -> 3: declares the smaller set first, keeps the pods until the leader removed vault-3 and vault-4, then scales down', async () => {
    const t = setup();
    await formed(t);
    setReplicas(t, 5);
    await t.run();
    t.fake.rollStatefulSet();
    Object.assign(t.raft, { voters: ids(5), learners: [] });
    await t.run();
    expect(t.status().members).toBe(5);

    setReplicas(t, 3);
    await t.run();
    expect(declared(t)).toHaveLength(3);
    expect(sts(t).spec!.replicas).toBe(5);
    expect(t.status().resize).toMatchObject({ from: 5, to: 3, phase: 'RemovingMembers' });
    expect(t.cond('Progressing')).toMatchObject({ status: 'True', reason: 'ScalingDown' });
    expect(pdb(t)).toBe(1);
    for (const voters of [ids(5), ids(4)]) {
      Object.assign(t.raft, { voters, learners: [] });
      await t.run();
      expect(sts(t).spec!.replicas).toBe(5);
      expect(t.status().resize?.message).toContain('waiting until the leader vault-0 removes');
    }
    // A learner left over still holds it.
    Object.assign(t.raft, { voters: ids(3), learners: ['vault-4'] });
    await t.run();
    expect(sts(t).spec!.replicas).toBe(5);
    Object.assign(t.raft, { voters: ids(3), learners: [] });
    await t.run();
    expect(sts(t).spec!.replicas).toBe(3);
    expect(sts(t).spec!.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
    expect(t.status().resize).toMatchObject({ from: 5, to: 3, phase: 'ScalingDown' });
    t.fake.rollStatefulSet();
    await t.run();
    expect(t.status().resize).toBeUndefined();
    expect(t.status().members).toBe(3);
    expect(t.cond('Ready')).toMatchObject({ status: 'True' });
    expect(t.reasons().filter((x) => !!x && (x.startsWith('Resize') || x.startsWith('Scaling') || x === 'RemovingMembers')).slice(-4))
      .toEqual(['ResizeStarted', 'RemovingMembers', 'ScalingDown', 'ResizeComplete']);
  });

  it('scales 3 -> 1 (allowed) the same way', async () => {
    const t = setup();
    await formed(t);
    setReplicas(t, 1);
    await t.run();
    expect(declared(t)).toEqual(['vault-0=vault-0.vault-headless.secrets.svc:8201']);
    expect(sts(t).spec!.replicas).toBe(3);
    Object.assign(t.raft, { voters: ['vault-0'], learners: [] });
    await t.run();
    expect(sts(t).spec!.replicas).toBe(1);
    t.fake.rollStatefulSet();
    await t.run();
    expect(t.status()).toMatchObject({ members: 1 });
    expect(t.status().resize).toBeUndefined();
    expect(pdb(t)).toBe(1);
  });

  it('waits, and says why, while the leader does not report voters (an older server) or is unknown', async () => {
    const t = setup();
    await formed(t);
    Object.assign(t.raft, { voters: null, learners: null });
    setReplicas(t, 1);
    await t.run();
    await t.run();
    expect(sts(t).spec!.replicas).toBe(3);
    expect(t.status().resize?.message).toContain('does not report voters and learners');
    expect(t.cond('Progressing')?.message).toContain('older than autopilot');
    for (let i = 0; i < 3; i++) t.releases[`vault-${i}`] = null;
    await t.run();
    expect(t.status().resize?.message).toContain('no Raft leader is known');
    expect(sts(t).spec!.replicas).toBe(3);
  });

  it('a restarted operator resumes a resize where it stopped', async () => {
    const t = setup();
    await formed(t);
    setReplicas(t, 5);
    await t.run();
    setReplicas(t, 3);
    await t.run();
    expect(t.status().resize).toMatchObject({ from: 5, to: 3, phase: 'RemovingMembers' });
    t.fake.rollStatefulSet();
    const health: PodHealthProbe = async (p) => (t.releases[p.pod] ? { version: '1.0.0', leaderId: 'vault-1', voters: ids(3), learners: [] } : null);
    const restarted = new Reconciler({ client: t.fake, health, events: new KubeEventRecorder(t.fake, { identity: 'b', clock: t.clock }), clock: t.clock });
    await restarted.reconcile('secrets/vault');
    expect(sts(t).spec!.replicas).toBe(3);
    t.fake.rollStatefulSet();
    await restarted.reconcile('secrets/vault');
    expect(t.status()).toMatchObject({ members: 3, leader: 'vault-1' });
    expect(t.status().resize).toBeUndefined();
  });

  it('one change at a time: a resize waits for a release rollout in progress, and a release waits for a resize', async () => {
    const t = setup();
    await formed(t);
    // A new release and the resize together: the resize goes first, the image waits.
    setReplicas(t, 5);
    (t.fake.vc().spec as { image: string }).image = 'registry.example/coffer:1.1.0';
    await t.run();
    expect(sts(t).spec!.replicas).toBe(5);
    expect(sts(t).spec!.template.spec!.containers[0]!.image).toBe('registry.example/coffer:1.0.0');
    t.fake.rollStatefulSet();
    Object.assign(t.raft, { voters: ids(5), learners: [] });
    await t.run();
    expect(t.status().members).toBe(5);
    await t.run();
    expect(sts(t).spec!.template.spec!.containers[0]!.image).toBe('registry.example/coffer:1.1.0');
    expect(t.status().rollout?.phase).not.toBe('Idle');
    // Mid-rollout, a resize request waits (Pending) and changes nothing.
    setReplicas(t, 3);
    await t.run();
    expect(t.status().resize).toMatchObject({ from: 5, to: 3, phase: 'Pending' });
    expect(declared(t)).toHaveLength(5);
    expect(sts(t).spec!.replicas).toBe(5);
    expect(t.reasons()).toContain('ResizePending');
    t.fake.rollStatefulSet();
    for (let i = 0; i < 7; i++) t.releases[`vault-${i}`] = '1.1.0';
    for (let i = 0; i < 3 && t.status().resize?.phase !== 'RemovingMembers'; i++) await t.run();
    expect(t.status().rollout?.phase).toBe('Idle');
    expect(t.status().resize?.phase).toBe('RemovingMembers');
    expect(declared(t)).toHaveLength(3);
  });

  it('a cluster an earlier operator formed (no status.members) takes its StatefulSet\'s size, and a different spec.replicas is a resize from it', async () => {
    const t = setup();
    await t.run();
    t.fake.rollStatefulSet();
    for (let i = 0; i < 3; i++) t.releases[`vault-${i}`] = '1.0.0';
    await t.run();
    delete (t.fake.vc().status as { members?: number }).members;
    setReplicas(t, 5);
    await t.run();
    expect(t.status()).toMatchObject({ members: 3, resize: { from: 3, to: 5, phase: 'ScalingUp' } });
    expect(t.fake.env('VAULT_PEERS')!.split(',')).toHaveLength(3);
  });

  it('never overwrites a generated Secret, and brings a deleted owned object back', async () => {
    const t = setup();
    await t.run();
    const token = clone(t.fake.get('Secret', 'vault-bootstrap-token'));
    const key = clone(t.fake.get('Secret', 'vault-master-key'));
    const clusterKey = clone(t.fake.get('Secret', 'vault-cluster-key'));
    await t.run();
    await t.run();
    expect(t.fake.get('Secret', 'vault-bootstrap-token')).toEqual(token);
    expect(t.fake.get('Secret', 'vault-master-key')).toEqual(key);
    expect(t.fake.get('Secret', 'vault-cluster-key')).toEqual(clusterKey);
    expect(t.fake.writes.filter((w) => w.startsWith('create'))).toHaveLength(3);
    t.fake.objects.delete('Service/secrets/vault-client');
    await t.run();
    expect(t.fake.get('Service', 'vault-client')).toBeDefined();
    expect(t.fake.events.at(-1)?.message ?? '').toBeDefined();
    expect(t.reasons().filter((r) => r === 'Created')).toHaveLength(7);
  });

  it('refuses to generate a new master key when the old one vanished but data exists', async () => {
    const t = setup();
    await t.run();
    t.fake.objects.delete('Secret/secrets/vault-master-key');
    t.fake.writes = [];
    const r = await t.run();
    expect(r.outcome).toBe('blocked');
    expect(t.fake.get('Secret', 'vault-master-key')).toBeUndefined();
    expect(t.fake.writes.filter((w) => !w.startsWith('status'))).toEqual([]);
    expect(t.cond('Degraded')).toMatchObject({ status: 'True', reason: 'MasterKeyMissing' });
    expect(t.reasons()).toContain('MasterKeyMissing');
  });

  it('reports a missing user-supplied Secret as Degraded and keeps applying', async () => {
    const t = setup({ bootstrap: { tokenSecretRef: { name: 'my-token', key: 'token' } } });
    const r = await t.run();
    expect(r.outcome).toBe('reconciled');
    expect(t.fake.get('Secret', 'my-token')).toBeUndefined();
    expect(t.cond('Degraded')).toMatchObject({ status: 'True', reason: 'SecretMissing' });
    expect(t.cond('Degraded')!.message).toContain('Secret my-token');
    expect(r.requeueAfterMs).toBe(5_000);
  });

  it('an invalid spec gets Degraded with a readable reason, a Warning event, and nothing applied', async () => {
    const t = setup({ replicas: 4, kms: { mode: 'aws' } });
    const r = await t.run();
    expect(r.outcome).toBe('invalid');
    expect(t.fake.objects.size).toBe(0);
    expect(t.cond('Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(t.cond('Degraded')!.message).toContain('spec.replicas: must be 1, 3, 5 or 7');
    expect(t.status().observedGeneration).toBe(1);
    expect(t.fake.events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'InvalidSpec']]);
    // Resyncs do not repeat the event or rewrite the status.
    t.fake.writes = [];
    await t.run();
    expect(t.fake.events).toHaveLength(1);
    expect(t.fake.writes).toEqual([]);
  });

  it('keeps lastTransitionTime unless the status flips', async () => {
    const t = setup();
    await t.run();
    const first = t.cond('Ready')!.lastTransitionTime;
    await t.clock.advance(30_000);
    t.fake.rollStatefulSet(false);
    await t.run();
    expect(t.cond('Ready')!.lastTransitionTime).toBe(first);
    expect(t.cond('Ready')!.message).toContain('2/3');
    await t.clock.advance(30_000);
    t.fake.rollStatefulSet();
    await t.run();
    expect(t.cond('Ready')!.status).toBe('True');
    expect(t.cond('Ready')!.lastTransitionTime).not.toBe(first);
    expect(t.reasons()).toContain('Ready');
    const c = setCondition([], { type: 'Ready', status: 'True', reason: 'A', message: '' }, 1, 'T1');
    expect(setCondition(c, { type: 'Ready', status: 'True', reason: 'B', message: 'x' }, 2, 'T2')[0]).toMatchObject({ lastTransitionTime: 'T1', reason: 'B', observedGeneration: 2 });
    expect(setCondition(c, { type: 'Ready', status: 'False', reason: 'B', message: 'x' }, 2, 'T2')[0]!.lastTransitionTime).toBe('T2');
  });

  it('runs the full rotation flag rollout against a simulated StatefulSet, surviving an operator restart', async () => {
    const t = setup();
    const all = (v: string | null) => Object.assign(t.releases, { 'vault-0': v, 'vault-1': v, 'vault-2': v });
    await t.run();
    t.fake.rollStatefulSet();
    all('1.0.0');
    await t.run();
    expect(t.status().rollout?.phase).toBe('Idle');

    // Enable re-wrap; one pod still reports an old release.
    (t.fake.vc().spec as { kms: { rewrap?: unknown } }).kms.rewrap = { enabled: true };
    (t.fake.vc().metadata as { generation: number }).generation = 2;
    t.releases['vault-2'] = '0.9.0';
    await t.run();
    expect(t.status().rollout?.phase).toBe('WaitingForGate');
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('false');

    // An operator restart is a new Reconciler reading the same status: same decision.
    const restarted = new Reconciler({ client: t.fake, health: async (p) => (t.releases[p.pod] ? { version: t.releases[p.pod]!, leaderId: null, voters: null, learners: null } : null), events: new KubeEventRecorder(t.fake, { identity: 'b', clock: t.clock }), clock: t.clock });
    await restarted.reconcile('secrets/vault');
    expect(t.status().rollout?.phase).toBe('WaitingForGate');
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('false');

    all('1.0.0');
    await restarted.reconcile('secrets/vault');
    expect(t.status().rollout?.phase).toBe('EnablingFlag');
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('true');
    expect(t.cond('RewrapEnabled')?.status).toBe('False');

    await t.run(); // StatefulSet has not observed the new generation yet
    expect(t.status().rollout?.phase).toBe('RollingOutFlagOn');
    t.fake.rollStatefulSet();
    await t.run();
    expect(t.status().rollout?.phase).toBe('Complete');
    expect(t.cond('RewrapEnabled')).toMatchObject({ status: 'True', reason: 'RewrapActive' });
    expect(t.reasons()).toEqual(expect.arrayContaining(['WaitingForGate', 'GatePassed', 'RollingOutFlagOn', 'RewrapEnabled']));

    // Disabling takes effect at once.
    (t.fake.vc().spec as { kms: { rewrap: { enabled: boolean } } }).kms.rewrap.enabled = false;
    await t.run();
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('false');
    expect(t.reasons()).toContain('RewrapDisabled');
  });

  it('does not write once leadership is lost', async () => {
    const t = setup();
    t.setLeader(false);
    await expect(t.run()).rejects.toBeInstanceOf(NotLeaderError);
    expect(t.fake.writes).toEqual([]);
  });
});

describe('reconcile: readAllowlistFrom', () => {
  const SYNC = { 'app.kubernetes.io/name': 'coffer-sync' };
  const FROM = () => ({ readAllowlist: ['10.0.0.0/8'], readAllowlistFrom: [{ namespace: 'coffer-system', podSelector: { matchLabels: SYNC } }] });
  const pod = (name: string, ns: string, ip: string | undefined, extra: { phase?: string; labels?: Record<string, string>; deleting?: boolean } = {}): V1Pod => ({
    metadata: {
      name, namespace: ns, labels: extra.labels ?? { ...SYNC, 'pod-template-hash': 'x' },
      ...(extra.deleting ? { deletionTimestamp: new Date('2025-01-01T00:00:00Z') } : {}),
    },
    status: { phase: extra.phase ?? 'Running', ...(ip ? { podIP: ip } : {}) },
  });
  const allowlist = (t: ReturnType<typeof setup>) => (t.fake.get('ConfigMap', 'vault-read-allowlist') as V1ConfigMap | undefined)?.data?.['allowlist'];
  const template = (t: ReturnType<typeof setup>) => JSON.stringify((t.fake.get('StatefulSet', 'vault') as V1StatefulSet).spec!.template);

  it('lists only Running pods with an IP in exactly the named namespace, with spec.readAllowlist, sorted, before the StatefulSet', async () => {
    const t = setup(FROM());
    t.fake.otherPods = [
      pod('sync-b', 'coffer-system', '10.244.1.9'),
      pod('sync-a', 'coffer-system', '10.244.0.17'),
      // Same labels in another namespace: an attacker's pod.
      pod('evil', 'attacker', '10.244.2.2'),
      pod('pending', 'coffer-system', '10.244.3.3', { phase: 'Pending' }),
      pod('no-ip', 'coffer-system', undefined),
      pod('going', 'coffer-system', '10.244.4.4', { deleting: true }),
      pod('other-app', 'coffer-system', '10.244.5.5', { labels: { 'app.kubernetes.io/name': 'web' } }),
      pod('succeeded', 'coffer-system', '10.244.6.6', { phase: 'Succeeded' }),
    ];
    await t.run();
    expect(allowlist(t)).toBe('10.0.0.0/8\n10.244.0.17/32\n10.244.1.9/32\n');
    expect(t.fake.podLists).toContain('coffer-system?app.kubernetes.io/name=coffer-sync');
    expect(t.fake.podLists.some((l) => l.startsWith('attacker'))).toBe(false);
    const cm = t.fake.get('ConfigMap', 'vault-read-allowlist')!;
    expect(cm.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', controller: true })]);
    expect(cm.metadata!.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'coffer-operator', 'app.kubernetes.io/instance': 'vault' });
    expect(ownerKey(cm)).toBe('secrets/vault');
    const writes = t.fake.writes.filter((w) => w.startsWith('apply'));
    expect(writes.indexOf('apply ConfigMap/secrets/vault-read-allowlist')).toBeLessThan(writes.indexOf('apply StatefulSet/secrets/vault'));
    expect(t.fake.env('VAULT_READ_ALLOWLIST')).toBe('10.0.0.0/8');
    expect(t.fake.env('VAULT_READ_ALLOWLIST_FILE')).toBe('/etc/coffer/read-allowlist/allowlist');
  });

  it('a pod IP change or a removed pod changes only the ConfigMap, never the pod template', async () => {
    const t = setup(FROM());
    t.fake.otherPods = [pod('sync-a', 'coffer-system', '10.244.0.17'), pod('sync-b', 'coffer-system', '10.244.1.9')];
    await t.run();
    t.fake.rollStatefulSet();
    await t.run();
    const before = template(t);
    const stsVersion = t.fake.get('StatefulSet', 'vault')!.metadata!.resourceVersion;
    t.fake.writes = [];
    // sync-a rescheduled with a new IP; sync-b deleted.
    t.fake.otherPods = [pod('sync-a2', 'coffer-system', '10.244.7.1')];
    await t.run();
    expect(allowlist(t)).toBe('10.0.0.0/8\n10.244.7.1/32\n');
    expect(t.fake.writes.filter((w) => w.startsWith('apply'))).toEqual(['apply ConfigMap/secrets/vault-read-allowlist']);
    expect(template(t)).toBe(before);
    expect(t.fake.get('StatefulSet', 'vault')!.metadata!.resourceVersion).toBe(stsVersion);
    // No pods at all: the static list stays.
    t.fake.otherPods = [];
    await t.run();
    expect(allowlist(t)).toBe('10.0.0.0/8\n');
    expect(template(t)).toBe(before);
  });

  it('without readAllowlistFrom there is no ConfigMap and no file env', async () => {
    const t = setup({ readAllowlist: ['10.0.0.0/8'] });
    await t.run();
    expect(t.fake.get('ConfigMap', 'vault-read-allowlist')).toBeUndefined();
    expect(t.fake.env('VAULT_READ_ALLOWLIST')).toBe('10.0.0.0/8');
    expect(t.fake.env('VAULT_READ_ALLOWLIST_FILE')).toBeUndefined();
  });

  it('the controller maps pod events to the VaultClusters that select them, also when a pod stops matching or goes', () => {
    const m = new AllowlistPodMatcher();
    const vcs = [
      { metadata: { namespace: 'secrets', name: 'vault' }, spec: FROM() },
      { metadata: { namespace: 'other', name: 'v2' }, spec: { readAllowlistFrom: [{ namespace: 'coffer-system', podSelector: { matchLabels: { team: 'a' } } }] } },
      { metadata: { namespace: 'other', name: 'plain' }, spec: {} },
    ];
    const p = pod('sync-a', 'coffer-system', '10.244.0.17', { labels: { ...SYNC, team: 'a' } });
    expect(m.keysFor(p, vcs, false).sort()).toEqual(['other/v2', 'secrets/vault']);
    // Same labels, other namespace: nobody.
    expect(m.keysFor(pod('evil', 'attacker', '10.1.1.1'), vcs, false)).toEqual([]);
    // Labels changed away from team=a: v2 still hears about it (to drop the address), once.
    const relabelled = pod('sync-a', 'coffer-system', '10.244.0.17');
    expect(m.keysFor(relabelled, vcs, false).sort()).toEqual(['other/v2', 'secrets/vault']);
    expect(m.keysFor(relabelled, vcs, false)).toEqual(['secrets/vault']);
    expect(m.keysFor(relabelled, vcs, true)).toEqual(['secrets/vault']);
    expect(m.keysFor(relabelled, vcs, true)).toEqual([]);
  });
});

describe('reconcile: WireGuard overlay', () => {
  const WG = () => ({ wireguard: { enabled: true } });
  const secret = (t: ReturnType<typeof setup>) => t.fake.get('Secret', 'vault-wireguard-keys') as V1Secret;
  const keysOf = (t: ReturnType<typeof setup>) =>
    Object.fromEntries(Object.entries(secret(t).data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  const peers = (t: ReturnType<typeof setup>) =>
    JSON.parse((t.fake.get('ConfigMap', 'vault-wireguard-peers') as V1ConfigMap).data!['peers.json']!) as PeersDocument;
  const podSpec = (t: ReturnType<typeof setup>) => (t.fake.get('StatefulSet', 'vault') as V1StatefulSet).spec!.template.spec!;
  const wgStatus = (t: ReturnType<typeof setup>) => t.status().wireguard;
  const bump = (t: ReturnType<typeof setup>, patch: (spec: Record<string, any>) => void) => {
    patch(t.fake.vc().spec as Record<string, any>);
    (t.fake.vc().metadata as { generation: number }).generation++;
  };
  /** Runs the operator and the simulated cluster until nothing moves. */
  async function settle(t: ReturnType<typeof setup>, passes = 30) {
    for (let i = 0; i < 7; i++) t.releases[`vault-${i}`] = '1.0.0';
    for (let i = 0; i < passes; i++) {
      const r = await t.run();
      t.fake.recreatePods();
      if (r.requeueAfterMs === undefined) return;
    }
    throw new Error('did not settle');
  }

  it('generates the key Secret and the peer ConfigMap before the StatefulSet, and adds the sidecar and overlay env', async () => {
    const t = setup(WG());
    await t.run();
    const writes = t.fake.writes.filter((w) => !w.startsWith('status'));
    expect(writes.indexOf('create Secret/secrets/vault-wireguard-keys')).toBeLessThan(writes.indexOf('apply ConfigMap/secrets/vault-wireguard-peers'));
    expect(writes.indexOf('apply ConfigMap/secrets/vault-wireguard-peers')).toBeLessThan(writes.indexOf('apply StatefulSet/secrets/vault'));
    const s = secret(t);
    expect(s.type).toBe('Opaque');
    expect(s.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault' })]);
    expect(s.metadata?.annotations?.['coffer.dev/wireguard-key-generation']).toBe('1');
    const keys = keysOf(t);
    expect(Object.keys(keys)).toEqual(['vault-0.key', 'vault-1.key', 'vault-2.key']);
    for (const k of Object.values(keys)) expect(k).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    const doc = peers(t);
    expect(doc.peers.map((p) => [p.name, p.address, p.endpoint])).toEqual([
      ['vault-0', '10.77.0.1', 'vault-0.vault-headless.secrets.svc:51820'],
      ['vault-1', '10.77.0.2', 'vault-1.vault-headless.secrets.svc:51820'],
      ['vault-2', '10.77.0.3', 'vault-2.vault-headless.secrets.svc:51820'],
    ]);
    expect(doc.peers.map((p) => p.publicKey)).toEqual(Object.values(keys).map(publicKeyOf));
    expect(t.fake.get('ConfigMap', 'vault-wireguard-peers')!.metadata!.ownerReferences).toHaveLength(1);
    const pod = podSpec(t);
    expect(pod.initContainers?.map((c) => [c.name, c.restartPolicy, c.image])).toEqual([['wireguard', 'Always', 'registry.example/coffer:1.0.0']]);
    expect(t.fake.env('VAULT_PEERS')).toBe('vault-0=10.77.0.1:8201,vault-1=10.77.0.2:8201,vault-2=10.77.0.3:8201');
    expect(t.fake.env('VAULT_OVERLAY_CIDR')).toBe('10.77.0.0/24');
    expect(t.fake.env('VAULT_RAFT_ADVERTISE')).toBeUndefined();
    expect(wgStatus(t)).toMatchObject({ keyGeneration: 1 });
    expect(t.reasons()).toContain('WireGuardKeysGenerated');
    // No key material in events or status.
    const said = JSON.stringify([t.fake.events, t.status()]);
    for (const k of Object.values(keys)) expect(said).not.toContain(k);
  });

  it('keeps the Secret unchanged across reconciles and an operator restart', async () => {
    const t = setup(WG());
    await settle(t);
    const before = clone(secret(t));
    t.fake.writes = [];
    await t.run();
    const restarted = new Reconciler({ client: t.fake, health: async () => null, events: new KubeEventRecorder(t.fake, { identity: 'b', clock: t.clock }), clock: t.clock });
    await restarted.reconcile('secrets/vault');
    expect(secret(t)).toEqual(before);
    expect(t.fake.writes.filter((w) => w.includes('Secret'))).toEqual([]);
  });

  it('a resize: new keys only for new ordinals, overlay addresses in the members ConfigMap, a removed ordinal\'s key and peer go after the scale-down', async () => {
    const t = setup(WG());
    await settle(t);
    const three = keysOf(t);
    const template = clone(podSpec(t));
    const members = () => (t.fake.get('ConfigMap', 'vault-members') as V1ConfigMap).data!.members!.trim().split('\n');
    expect(members()).toEqual(['vault-0=10.77.0.1:8201', 'vault-1=10.77.0.2:8201', 'vault-2=10.77.0.3:8201']);
    bump(t, (s) => (s.replicas = 5));
    await t.run();
    const five = keysOf(t);
    expect(Object.keys(five).sort()).toEqual(['vault-0.key', 'vault-1.key', 'vault-2.key', 'vault-3.key', 'vault-4.key']);
    for (const k of Object.keys(three)) expect(five[k]).toBe(three[k]);
    expect(peers(t).peers.map((p) => p.address)).toEqual(['10.77.0.1', '10.77.0.2', '10.77.0.3', '10.77.0.4', '10.77.0.5']);
    expect(members()).toHaveLength(5);
    expect(members()[4]).toBe('vault-4=10.77.0.5:8201');
    expect(podSpec(t)).toEqual(template);
    expect(t.fake.env('VAULT_PEERS')).toBe('vault-0=10.77.0.1:8201,vault-1=10.77.0.2:8201,vault-2=10.77.0.3:8201');
    t.raft.voters = ['vault-0', 'vault-1', 'vault-2', 'vault-3', 'vault-4'];
    await settle(t);
    expect(t.status()).toMatchObject({ members: 5 });
    expect(keysOf(t)).toEqual(five);

    bump(t, (s) => (s.replicas = 3));
    await t.run();
    t.raft.voters = ['vault-0', 'vault-1', 'vault-2'];
    await t.run();
    expect((t.fake.get('StatefulSet', 'vault') as V1StatefulSet).spec!.replicas).toBe(3);
    // Scaled down in this pass: vault-3 and vault-4 keep their keys and peers until the next one.
    expect(Object.keys(keysOf(t))).toHaveLength(5);
    expect(peers(t).peers).toHaveLength(5);
    t.fake.rollStatefulSet();
    await t.run();
    expect(keysOf(t)).toEqual(three);
    expect(peers(t).peers).toHaveLength(3);
    expect(t.reasons()).toContain('WireGuardKeysRemoved');
    expect(podSpec(t)).toEqual(template);
  });

  it('rotates the keys one pod at a time when keyGeneration rises, surviving an operator restart', async () => {
    const t = setup(WG());
    await settle(t);
    const original = keysOf(t);
    bump(t, (s) => (s.wireguard.keyGeneration = 2));
    t.fake.writes = [];

    // Pass 1: vault-0 is next; nothing written but status.
    await t.run();
    expect(wgStatus(t)).toMatchObject({ keyGeneration: 1, targetKeyGeneration: 2, rotatingOrdinal: 0, step: 'ReplacingKey' });
    expect(t.cond('Progressing')).toMatchObject({ status: 'True', reason: 'RotatingWireGuardKeys' });
    expect(keysOf(t)).toEqual(original);
    // Pass 2: new key for vault-0 (Secret, then ConfigMap), then its eviction.
    const r = await t.run();
    expect(r.requeueAfterMs).toBe(5_000);
    expect(t.fake.writes.filter((w) => !w.startsWith('status'))).toEqual([
      'update Secret/secrets/vault-wireguard-keys', 'apply ConfigMap/secrets/vault-wireguard-peers', 'evict vault-0',
    ]);
    expect(keysOf(t)['vault-0.key']).not.toBe(original['vault-0.key']);
    expect(keysOf(t)['vault-1.key']).toBe(original['vault-1.key']);
    expect(peers(t).peers[0]!.publicKey).toBe(publicKeyOf(keysOf(t)['vault-0.key']!));
    expect(wgStatus(t)).toMatchObject({ rotatingOrdinal: 0, step: 'RestartingPod', podUID: expect.stringContaining('uid-vault-0') });
    // While vault-0 is away: wait.
    await t.run();
    expect(wgStatus(t)).toMatchObject({ rotatingOrdinal: 0, step: 'RestartingPod' });
    expect(wgStatus(t)!.message).toContain('vault-0');

    // Operator restart in the middle.
    t.fake.recreatePods();
    const restarted = new Reconciler({ client: t.fake, health: async () => null, events: new KubeEventRecorder(t.fake, { identity: 'b', clock: t.clock }), clock: t.clock });
    await restarted.reconcile('secrets/vault');
    expect(wgStatus(t)).toMatchObject({ rotatingOrdinal: 1, step: 'ReplacingKey' });
    for (let i = 0; i < 20 && wgStatus(t)?.keyGeneration !== 2; i++) {
      await restarted.reconcile('secrets/vault');
      t.fake.recreatePods();
    }
    const rotated = keysOf(t);
    for (const k of Object.keys(original)) expect(rotated[k]).not.toBe(original[k]);
    expect(t.fake.writes.filter((w) => w.startsWith('evict'))).toEqual(['evict vault-0', 'evict vault-1', 'evict vault-2']);
    expect(secret(t).metadata?.annotations?.['coffer.dev/wireguard-key-generation']).toBe('2');
    expect(wgStatus(t)).toEqual({ keyGeneration: 2, lastTransitionTime: expect.any(String), message: "every pod's WireGuard key is at generation 2" });
    await t.run();
    expect(t.cond('Progressing')).toMatchObject({ status: 'False' });
    expect(t.reasons()).toEqual(expect.arrayContaining([
      'WireGuardKeyRotationStarted', 'WireGuardKeyReplaced', 'WireGuardPodEvicted', 'WireGuardPodRestarted', 'WireGuardKeyRotationComplete',
    ]));
    expect(peers(t).peers.map((p) => p.publicKey)).toEqual(Object.values(rotated).map(publicKeyOf));
  });

  it('reports a refused eviction and retries it', async () => {
    const t = setup(WG());
    await settle(t);
    bump(t, (s) => (s.wireguard.keyGeneration = 2));
    await t.run();
    t.fake.refuseEviction = true;
    await t.run();
    expect(wgStatus(t)).toMatchObject({ rotatingOrdinal: 0, step: 'RestartingPod' });
    expect(t.fake.events.at(-1)).toMatchObject({ type: 'Warning', reason: 'WireGuardEvictionRefused' });
    t.fake.refuseEviction = false;
    t.fake.writes = [];
    await t.run();
    expect(t.fake.writes.filter((w) => !w.startsWith('status'))).toEqual(['evict vault-0']);
  });

  it('replaces a stored value that is not a key, with a Warning', async () => {
    const t = setup(WG());
    await settle(t);
    const s = secret(t);
    s.data!['vault-1.key'] = Buffer.from('oops').toString('base64');
    const keep = keysOf(t)['vault-0.key'];
    await t.run();
    expect(keysOf(t)['vault-0.key']).toBe(keep);
    expect(keysOf(t)['vault-1.key']).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(t.fake.events.find((e) => e.reason === 'WireGuardKeyInvalid')?.type).toBe('Warning');
  });

  it('an overlay CIDR too small for the replicas is Degraded (InvalidSpec), nothing applied', async () => {
    const t = setup({ wireguard: { enabled: true, cidr: '10.77.0.0/30' } });
    const r = await t.run();
    expect(r.outcome).toBe('invalid');
    expect(t.fake.objects.size).toBe(0);
    expect(t.cond('Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(t.cond('Degraded')!.message).toContain('spec.wireguard.cidr: 10.77.0.0/30 has room for 2 pod addresses');
  });

  it('disabling removes the sidecar and overlay env, and keeps the Secret and ConfigMap', async () => {
    const t = setup(WG());
    await settle(t);
    const keys = keysOf(t);
    bump(t, (s) => (s.wireguard.enabled = false));
    await t.run();
    expect(podSpec(t).initContainers).toBeUndefined();
    expect(podSpec(t).volumes?.map((v) => v.name)).toEqual(['tmp', 'members']);
    expect(t.fake.env('VAULT_PEERS')).toContain('vault-0.vault-headless.secrets.svc:8201');
    expect(t.fake.env('VAULT_RAFT_ADVERTISE')).toBeDefined();
    expect(t.fake.env('VAULT_OVERLAY_CIDR')).toBeUndefined();
    expect(keysOf(t)).toEqual(keys);
    expect(t.fake.get('ConfigMap', 'vault-wireguard-peers')).toBeDefined();
    expect(wgStatus(t)).toBeUndefined();
  });

  it('brings a deleted peer ConfigMap back, and uses a plain container before Kubernetes 1.29', async () => {
    const t = setup(WG());
    await settle(t);
    const doc = peers(t);
    t.fake.objects.delete('ConfigMap/secrets/vault-wireguard-peers');
    await t.run();
    expect(peers(t)).toEqual(doc);

    const old = setup(WG());
    old.fake.version = { major: 1, minor: 28 };
    await old.run();
    expect(podSpec(old).initContainers).toBeUndefined();
    expect(podSpec(old).containers.map((c) => c.name)).toEqual(['vault', 'wireguard']);
    const current = setup(WG());
    current.fake.version = { major: 1, minor: 32 };
    await current.run();
    expect(podSpec(current).initContainers?.[0]?.restartPolicy).toBe('Always');
    const forced = setup(WG(), { nativeSidecars: false });
    await forced.run();
    expect(podSpec(forced).containers.map((c) => c.name)).toEqual(['vault', 'wireguard']);
  });
});

describe('controller plumbing', () => {
  it('maps an owned object to its VaultCluster by owner reference or labels', () => {
    expect(ownerKey({ metadata: { namespace: 'a', name: 'x', ownerReferences: [{ apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', name: 'v', uid: 'u', controller: true }] } })).toBe('a/v');
    expect(ownerKey({ metadata: { namespace: 'a', name: 'x', labels: { 'app.kubernetes.io/managed-by': 'coffer-operator', 'app.kubernetes.io/instance': 'w' } } })).toBe('a/w');
    expect(ownerKey({ metadata: { namespace: 'a', name: 'x', labels: { 'app.kubernetes.io/instance': 'w' } } })).toBeUndefined();
  });

  it('builds pod health URLs from the template', () => {
    const t = { pod: 'vault-1', namespace: 'ns', podIP: '10.0.0.2', tls: false };
    expect(healthUrl('{scheme}://{podIP}:{port}/v1/health', t)).toBe('http://10.0.0.2:8200/v1/health');
    expect(healthUrl('{scheme}://{podIP}:{port}/v1/health', { ...t, tls: true })).toBe('https://10.0.0.2:8200/v1/health');
    expect(healthUrl('http://127.0.0.1:9/h/{namespace}/{pod}', { ...t, podIP: undefined })).toBe('http://127.0.0.1:9/h/ns/vault-1');
    expect(healthUrl('{scheme}://{podIP}:{port}/v1/health', { ...t, podIP: undefined })).toBeUndefined();
  });

  it('RBAC: no patch/delete on Secrets (update for the WireGuard key Secret only), no delete anywhere, pods restarted by eviction', () => {
    const all = [...OPERATOR_RULES, ...leaderElectionRules()];
    for (const r of all) expect(r.verbs).not.toContain('delete');
    const secretVerbs = all.filter((r) => r.resources.includes('secrets')).flatMap((r) => r.verbs);
    expect(secretVerbs).not.toContain('patch');
    expect(secretVerbs).toContain('update');
    expect(all.filter((r) => r.resources.includes('pods')).flatMap((r) => r.verbs)).toEqual(['list', 'watch']);
    expect(all.filter((r) => r.resources.includes('pods/eviction')).flatMap((r) => r.verbs)).toEqual(['create']);
    expect(all.filter((r) => r.resources.includes('configmaps')).flatMap((r) => r.verbs)).toEqual(['get', 'list', 'watch', 'create', 'patch']);
  });
});
