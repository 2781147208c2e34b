// The sync reconcile against in-memory fakes of the API server and Coffer:
// every Ready reason, pins, no rewrite of a current Secret, restart stamping,
// and no value anywhere but the Secret's data.
import type { CoreV1Event, V1Secret } from '@kubernetes/client-node';
import { beforeEach, describe, expect, it } from 'vitest';
import type { CofferSecretStatus, RestartTarget } from '../../../sync/api/types.js';
import type { SyncKube } from '../../../sync/kube.js';
import { createSyncMetrics } from '../../../sync/metrics.js';
import { SyncReconciler } from '../../../sync/reconcile/reconciler.js';
import { restartAnnotationKey } from '../../../sync/reconcile/plan.js';
import { VaultError, type VaultApi, type WatchRequest } from '../../../sync/vault/client.js';
import { Watchers } from '../../../sync/watch/watchers.js';

const TOKEN = 'tok-sync-0123456789';
const UID = 'uid-1';

class FakeKube implements SyncKube {
  secrets = new Map<string, V1Secret>();
  statuses: CofferSecretStatus[] = [];
  events: CoreV1Event[] = [];
  templates = new Map<string, Record<string, string>>();
  applies = 0;
  async getSecret(ns: string, name: string) {
    return structuredClone(this.secrets.get(`${ns}/${name}`) ?? null);
  }
  async applySecret(s: V1Secret) {
    this.applies++;
    this.secrets.set(`${s.metadata!.namespace}/${s.metadata!.name}`, structuredClone(s));
  }
  async applyStatus(_ns: string, _n: string, st: CofferSecretStatus) {
    this.statuses.push(structuredClone(st));
  }
  async getVaultCluster() {
    return { spec: {} };
  }
  async templateAnnotation(ns: string, t: RestartTarget, key: string) {
    const tpl = this.templates.get(`${ns}/${t.kind}/${t.name}`);
    return tpl === undefined ? null : tpl[key];
  }
  async stampTemplate(ns: string, t: RestartTarget, key: string, value: string) {
    const tpl = this.templates.get(`${ns}/${t.kind}/${t.name}`);
    if (!tpl) return false;
    tpl[key] = value;
    return true;
  }
  async createEvent(e: CoreV1Event) {
    this.events.push(e);
  }
}

/** Coffer as versions and values; `fail` makes every call throw that. */
class FakeVault implements VaultApi {
  versions = new Map<string, Map<number, string>>();
  fail: VaultError | undefined;
  readFail: VaultError | undefined;
  reads = 0;
  put(name: string, value: string): number {
    const vs = this.versions.get(name) ?? new Map<number, string>();
    vs.set(vs.size + 1, value);
    this.versions.set(name, vs);
    return vs.size;
  }
  async watch(req: WatchRequest) {
    if (this.fail) throw this.fail;
    if (req.index > 0) return new Promise<never>(() => {}); // the test drives reconciles itself
    const versions: Record<string, number> = {};
    const missing: string[] = [];
    for (const n of req.names) {
      const vs = this.versions.get(n);
      if (vs) versions[n] = vs.size;
      else missing.push(n);
    }
    return { index: 7, versions, missing };
  }
  async read(name: string, version: number) {
    if (this.fail) throw this.fail;
    if (this.readFail) throw this.readFail;
    this.reads++;
    const value = this.versions.get(name)?.get(version);
    if (value === undefined) throw new VaultError('SecretNotFound', `${name} version ${version} does not exist in Coffer`);
    return { version, value, createdAt: new Date(Date.now() - 1500).toISOString() };
  }
}

function cofferSecret(spec: Record<string, unknown> = {}, status?: CofferSecretStatus) {
  return {
    apiVersion: 'coffer.dev/v1alpha1',
    kind: 'CofferSecret',
    metadata: { name: 'app-db', namespace: 'demo', uid: UID, generation: 1 },
    spec: {
      vaultRef: { address: 'http://127.0.0.1:8200' },
      tokenSecretRef: { name: 'sync-token' },
      data: [{ key: 'DB_PASSWORD', name: 'app/db/password' }, { key: 'API_KEY', name: 'app/api-key' }],
      rolloutRestartTargets: [{ kind: 'Deployment', name: 'app' }],
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

describe('sync reconcile', () => {
  let kube: FakeKube;
  let vault: FakeVault;
  let reconciler: SyncReconciler;
  let logs: string[];
  let watchers: Watchers;
  let metrics: ReturnType<typeof createSyncMetrics>;

  beforeEach(() => {
    kube = new FakeKube();
    vault = new FakeVault();
    logs = [];
    kube.secrets.set('demo/sync-token', { data: { token: Buffer.from(TOKEN).toString('base64') } });
    kube.templates.set('demo/Deployment/app', {});
    vault.put('app/db/password', 'pw-one-SECRET');
    vault.put('app/api-key', 'key-one-SECRET');
    watchers = new Watchers({ waitMs: 1000, minBackoffMs: 10, maxBackoffMs: 10, onChange: () => {} });
    metrics = createSyncMetrics({ watchedNames: () => watchers.watchedNames(), waitingQueries: () => 0, cofferSecrets: () => 1, isLeader: () => true });
    const log = (obj: object, msg?: string) => logs.push(JSON.stringify(obj) + (msg ?? ''));
    reconciler = new SyncReconciler({
      kube, vault: () => vault, watchers, metrics,
      events: { record: async (_t, e) => void kube.events.push({ metadata: {}, involvedObject: {}, reason: e.reason, message: e.message, type: e.type }) },
      logger: { debug: log, info: log, warn: log, error: log },
      now: () => new Date(),
    });
  });

  const lastStatus = () => kube.statuses.at(-1)!;
  const ready = () => lastStatus().conditions![0]!;
  const data = () => Object.fromEntries(Object.entries(kube.secrets.get('demo/app-db')!.data!).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  /** Reconciles with the status the API server would now hold. */
  const again = (spec: Record<string, unknown> = {}) => reconciler.reconcile('demo/app-db', cofferSecret(spec, kube.statuses.at(-1)));

  it('creates the owned Secret, reports Synced, and does not roll pods at the first sync', async () => {
    const result = await again();
    expect(result).toEqual({ outcome: 'synced', requeueAfterMs: 300_000 });
    expect(data()).toEqual({ DB_PASSWORD: 'pw-one-SECRET', API_KEY: 'key-one-SECRET' });
    const secret = kube.secrets.get('demo/app-db')!;
    expect(secret.metadata!.ownerReferences).toEqual([expect.objectContaining({ kind: 'CofferSecret', uid: UID, controller: true, blockOwnerDeletion: true })]);
    expect(secret.metadata!.labels!['app.kubernetes.io/managed-by']).toBe('coffer-sync');
    expect(JSON.parse(secret.metadata!.annotations!['coffer.dev/synced-versions']!)).toEqual({ 'app/api-key': 1, 'app/db/password': 1 });
    expect(ready()).toMatchObject({ status: 'True', reason: 'Synced' });
    expect(lastStatus().syncedVersions).toEqual({ 'app/api-key': 1, 'app/db/password': 1 });
    expect(kube.templates.get('demo/Deployment/app')).toEqual({});
    expect(watchers.watchedNames()).toBe(2);
    watchers.stopAll();
  });

  it('writes nothing when the Secret already holds the versions (a restarted controller)', async () => {
    await again();
    const applies = kube.applies;
    const statuses = kube.statuses.length;
    const reads = vault.reads;
    expect((await again()).outcome).toBe('synced');
    expect(kube.applies).toBe(applies);
    expect(vault.reads).toBe(reads); // no value read either
    expect(kube.statuses.length).toBe(statuses);
    watchers.stopAll();
  });

  it('on a rotation rewrites the Secret and stamps the restart target with the versions hash; a pin never moves', async () => {
    const pinned = { data: [{ key: 'DB_PASSWORD', name: 'app/db/password' }, { key: 'OLD', name: 'app/db/password', version: 1 }] };
    await again(pinned);
    vault.put('app/db/password', 'pw-two-SECRET');
    await again(pinned);
    expect(data()).toEqual({ DB_PASSWORD: 'pw-two-SECRET', OLD: 'pw-one-SECRET' });
    const stamped = kube.templates.get('demo/Deployment/app')![restartAnnotationKey('app-db')];
    expect(stamped).toBe(lastStatus().versionsHash);
    expect(stamped).toMatch(/^[0-9a-f]{16}$/);
    // Propagation was observed (rotation only).
    expect(metrics.registry.render()).toMatch(/coffer_sync_propagation_seconds_count 1/);
    watchers.stopAll();
  });

  it('VaultUnavailable keeps the Secret and asks for a retry', async () => {
    await again();
    const before = structuredClone(kube.secrets.get('demo/app-db'));
    vault.fail = new VaultError('VaultUnavailable', 'http://127.0.0.1:8200 answered 503 no_leader');
    expect(await again()).toEqual({ outcome: 'retry' });
    expect(ready()).toMatchObject({ status: 'False', reason: 'VaultUnavailable' });
    expect(kube.secrets.get('demo/app-db')).toEqual(before);
    expect(lastStatus().syncedVersions).toEqual({ 'app/api-key': 1, 'app/db/password': 1 });
  });

  it('SecretNotFound names the missing secret and keeps the Secret', async () => {
    await again();
    const before = structuredClone(kube.secrets.get('demo/app-db'));
    const result = await again({ data: [{ key: 'DB_PASSWORD', name: 'app/db/password' }, { key: 'X', name: 'app/gone' }] });
    expect(result.outcome).toBe('waiting');
    expect(ready()).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(ready().message).toContain('app/gone');
    expect(kube.secrets.get('demo/app-db')).toEqual(before);
    watchers.stopAll();
  });

  it('Forbidden (token refused, address not allowlisted, token Secret missing) is retried', async () => {
    vault.readFail = new VaultError('Forbidden', "this controller's address is not in the vault's read allowlist (yet)");
    expect(await again()).toEqual({ outcome: 'retry' });
    expect(ready()).toMatchObject({ status: 'False', reason: 'Forbidden' });
    expect(ready().message).toMatch(/allowlist/);
    vault.readFail = undefined;
    expect((await again()).outcome).toBe('synced');
    kube.secrets.delete('demo/sync-token');
    vault.put('app/api-key', 'key-two-SECRET');
    expect(await again()).toEqual({ outcome: 'retry' });
    expect(ready().message).toMatch(/token Secret sync-token not found/);
    watchers.stopAll();
  });

  it('TargetConflict leaves an unowned Secret untouched and reads no value', async () => {
    const foreign: V1Secret = { metadata: { name: 'app-db', namespace: 'demo' }, data: { mine: 'eA==' } };
    kube.secrets.set('demo/app-db', structuredClone(foreign));
    expect((await again()).outcome).toBe('waiting');
    expect(ready()).toMatchObject({ status: 'False', reason: 'TargetConflict' });
    expect(kube.secrets.get('demo/app-db')).toEqual(foreign);
    expect(vault.reads).toBe(0);
  });

  it('a changed target type is reported, not forced (Secret types are immutable)', async () => {
    await again();
    expect((await again({ target: { type: 'kubernetes.io/basic-auth' } })).outcome).toBe('waiting');
    expect(ready()).toMatchObject({ status: 'False', reason: 'TargetConflict' });
    expect(ready().message).toMatch(/type cannot change/);
    watchers.stopAll();
  });

  it('InvalidSpec for an object the API server would have refused', async () => {
    await reconciler.reconcile('demo/app-db', cofferSecret({ vaultRef: {} }));
    expect(ready()).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
  });

  it('never puts a value or the token in status, events, logs or metrics', async () => {
    await again();
    vault.put('app/db/password', 'pw-two-SECRET');
    await again();
    vault.fail = new VaultError('VaultUnavailable', 'down');
    await again();
    const outside = JSON.stringify([kube.statuses, kube.events, logs, metrics.registry.render(), kube.secrets.get('demo/app-db')!.metadata]);
    for (const needle of ['SECRET', TOKEN, Buffer.from('pw-two-SECRET').toString('base64')]) expect(outside).not.toContain(needle);
    watchers.stopAll();
  });
});
