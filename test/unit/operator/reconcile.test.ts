import { createHash } from 'node:crypto';
import type { CoreV1Event, KubernetesObject, V1Pod, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { VaultClusterStatus } from '../../../operator/api/types.js';
import { FakeClock } from '../../../operator/reconcile/clock.js';
import type { ClusterClient, ObjectRef } from '../../../operator/reconcile/client.js';
import { setCondition } from '../../../operator/reconcile/conditions.js';
import { ownerKey } from '../../../operator/reconcile/controller.js';
import { KubeEventRecorder } from '../../../operator/reconcile/events.js';
import { healthUrl, type PodHealthProbe } from '../../../operator/reconcile/health.js';
import { NotLeaderError, Reconciler } from '../../../operator/reconcile/reconciler.js';
import { OPERATOR_RULES, leaderElectionRules } from '../../../operator/rbac.js';
import { rawCluster } from './fixtures.js';

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** An in-memory API server for the objects the reconciler touches. */
class FakeCluster implements ClusterClient {
  objects = new Map<string, KubernetesObject>();
  vcs = new Map<string, Record<string, unknown>>();
  events: CoreV1Event[] = [];
  writes: string[] = [];
  pvcs = new Set<string>();
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
  async persistentVolumeClaimExists(ns: string, name: string) {
    return this.pvcs.has(`${ns}/${name}`);
  }
  async getStatefulSet(ns: string, name: string) {
    const s = this.objects.get(this.k('StatefulSet', ns, name));
    return s ? (clone(s) as V1StatefulSet) : null;
  }
  async listPods(ns: string): Promise<V1Pod[]> {
    const sts = (await this.getStatefulSet(ns, 'vault'))?.status;
    return Array.from({ length: sts?.replicas ?? 0 }, (_, i) => ({ metadata: { name: `vault-${i}`, namespace: ns }, status: { podIP: `10.0.0.${i + 1}` } }));
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

function setup(spec: Record<string, unknown> = {}) {
  const clock = new FakeClock(Date.parse('2025-01-01T00:00:00Z'));
  const fake = new FakeCluster();
  fake.putVc(rawCluster({ kms: { mode: 'local' }, ...spec }));
  const releases: Record<string, string | null> = {};
  const health: PodHealthProbe = async (t) => {
    const v = releases[t.pod];
    return v ? { version: v, leaderId: 'vault-0' } : null;
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
  });
  return {
    clock, fake, reconciler, releases,
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
    expect(t.fake.env('VAULT_KMS_REWRAP_ENABLED')).toBe('false');
    expect(t.status()).toMatchObject({ observedGeneration: 1, readyReplicas: 0, rollout: { phase: 'RollingOutFlagOff' } });
    expect(t.cond('Ready')).toMatchObject({ status: 'False', reason: 'ReplicasNotReady' });
    expect(t.cond('Progressing')).toMatchObject({ status: 'True', reason: 'RollingOutFlagOff' });
    expect(t.cond('Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(t.cond('RewrapEnabled')).toMatchObject({ status: 'False', reason: 'Disabled' });
    expect(t.reasons()).toEqual(['SecretGenerated', 'SecretGenerated', 'Created', 'Created', 'Created', 'Created', 'Created', 'RolloutStarted']);
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

  it('never overwrites a generated Secret, and brings a deleted owned object back', async () => {
    const t = setup();
    await t.run();
    const token = clone(t.fake.get('Secret', 'vault-bootstrap-token'));
    const key = clone(t.fake.get('Secret', 'vault-master-key'));
    await t.run();
    await t.run();
    expect(t.fake.get('Secret', 'vault-bootstrap-token')).toEqual(token);
    expect(t.fake.get('Secret', 'vault-master-key')).toEqual(key);
    expect(t.fake.writes.filter((w) => w.startsWith('create'))).toHaveLength(2);
    t.fake.objects.delete('Service/secrets/vault-client');
    await t.run();
    expect(t.fake.get('Service', 'vault-client')).toBeDefined();
    expect(t.fake.events.at(-1)?.message ?? '').toBeDefined();
    expect(t.reasons().filter((r) => r === 'Created')).toHaveLength(6);
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
    const restarted = new Reconciler({ client: t.fake, health: async (p) => (t.releases[p.pod] ? { version: t.releases[p.pod]!, leaderId: null } : null), events: new KubeEventRecorder(t.fake, { identity: 'b', clock: t.clock }), clock: t.clock });
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

  it('RBAC: no update/patch/delete on Secrets, no delete anywhere', () => {
    const all = [...OPERATOR_RULES, ...leaderElectionRules()];
    for (const r of all) expect(r.verbs).not.toContain('delete');
    for (const r of all.filter((r) => r.resources.includes('secrets'))) expect(r.verbs).not.toEqual(expect.arrayContaining(['update']));
    expect(all.filter((r) => r.resources.includes('secrets')).flatMap((r) => r.verbs)).not.toContain('patch');
  });
});
