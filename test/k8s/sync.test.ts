// The sync controller (issue 14) on a real control plane: `coffer sync run` as
// a process under exactly the chart's RBAC, a real 3-node Coffer on 127.0.0.x,
// the real kube-controller-manager for garbage collection. What a user relies
// on: the Secret equals Coffer, a rotation reaches it within seconds and rolls
// the restart targets, a pin never moves, a restarted controller rewrites
// nothing, a standby takes over when the leader dies, deleting the
// CofferSecret removes the Secret, and no value appears anywhere but in the
// Secret.
// The failure reasons are in sync-failures.test.ts.
import { describe, expect, it } from 'vitest';
import { useControlPlane } from './harness/use-control-plane.js';
import {
  apply, cofferSecret, csecPath, decoded, deployment, deploymentPath, findLeaks, getObject, getSecret, leaseHolder, MANAGED_BY, metric,
  readyCondition, scrape, until, useSync, waitForReason, type SyncController,
} from './harness/use-sync.js';

const NS = 'apps';
const cp = useControlPlane({ nodes: 1, volumes: 0 });
const sync = useSync(cp, { namespace: NS, allowlist: ['127.0.0.1'] });

let leader: SyncController;
const restartAnnotation = (name: string) => `versions.sync.coffer.dev/${name}`;
const templateAnnotations = async (name: string) => (await getObject(cp(), deploymentPath(NS, name)))?.spec?.template?.metadata?.annotations ?? {};

/** PUTs a new value and polls the Secret (every 100 ms) until it holds it; returns the latency in ms. */
async function rotateAndWait(cofferName: string, secretName: string, key: string, label: string): Promise<{ value: string; version: number; ms: number }> {
  const value = sync.value(label);
  const t0 = Date.now();
  const version = await sync.put(cofferName, value);
  await until(`${secretName}.${key} to hold version ${version} of ${cofferName}`, async () => decoded(await getSecret(cp(), NS, secretName))[key] === value, 20_000);
  return { value, version, ms: Date.now() - t0 };
}

describe('coffer sync run on a real control plane', () => {
  const db = { user: '', password: '' };

  it('starts under the chart RBAC and takes the Lease', async () => {
    leader = await sync.startController('sync-a');
    await until('sync-a to hold the Lease', async () => (await leaseHolder(cp())) === 'sync-a', 30_000, 250);
    await until('sync-a /readyz', async () => (await fetch(`${leader.metricsUrl}/readyz`)).status === 200, 30_000, 250);
  });

  it('create: a CofferSecret with 2 keys gives an owned Secret with exactly those keys and values, and Ready=True Synced', async () => {
    db.user = sync.value('dbuser');
    db.password = sync.value('dbpass');
    expect(await sync.put('app/db/user', db.user)).toBe(1);
    expect(await sync.put('app/db/password', db.password)).toBe(1);
    await apply(cp(), deployment(NS, 'web'));
    await apply(cp(), cofferSecret(NS, 'db', sync.address('n1'), [{ key: 'USER', name: 'app/db/user' }, { key: 'PASSWORD', name: 'app/db/password' }], {
      target: { name: 'db-creds', labels: { team: 'payments' }, annotations: { 'example.com/owner': 'payments' } },
      rolloutRestartTargets: [{ kind: 'Deployment', name: 'web' }],
    }));
    const cs = await waitForReason(cp(), NS, 'db', 'Synced', 30_000, undefined, sync);
    expect(cs.status.syncedVersions).toEqual({ 'app/db/user': 1, 'app/db/password': 1 });
    expect(cs.status.versionsHash).toMatch(/^[0-9a-f]{16}$/);
    expect(cs.status.lastSyncTime).toBeTruthy();
    expect(readyCondition(cs)).toMatchObject({ status: 'True', reason: 'Synced' });

    const s = await getSecret(cp(), NS, 'db-creds');
    expect(s).not.toBeNull();
    expect(s.type).toBe('Opaque');
    expect(Object.keys(s.data).sort()).toEqual(['PASSWORD', 'USER']);
    expect(decoded(s)).toEqual({ USER: db.user, PASSWORD: db.password });
    expect(s.metadata.ownerReferences).toEqual([expect.objectContaining({
      apiVersion: 'coffer.dev/v1alpha1', kind: 'CofferSecret', name: 'db', uid: cs.metadata.uid, controller: true, blockOwnerDeletion: true,
    })]);
    expect(s.metadata.labels).toMatchObject({ team: 'payments', ...MANAGED_BY });
    expect(s.metadata.annotations['example.com/owner']).toBe('payments');
    expect(JSON.parse(s.metadata.annotations['coffer.dev/synced-versions'])).toEqual({ 'app/db/password': 1, 'app/db/user': 1 });
    expect(Object.keys(JSON.parse(s.metadata.annotations['coffer.dev/synced-versions']))).toEqual(['app/db/password', 'app/db/user']); // keys sorted
    expect(s.metadata.annotations['coffer.dev/versions-hash']).toBe(cs.status.versionsHash);
    expect((s.metadata.managedFields ?? []).map((f: any) => f.manager)).toContain('coffer-sync');
    // The first sync does not roll the workload: pods starting now read the current value anyway.
    expect(await templateAnnotations('web')).not.toHaveProperty(restartAnnotation('db'));
  });

  it('rotate: a new version reaches the Secret within seconds and stamps the restart target', async () => {
    const before = await getObject(cp(), csecPath(NS, 'db'));
    const r = await rotateAndWait('app/db/password', 'db-creds', 'PASSWORD', 'dbpass');
    console.log(`[sync] rotation -> Secret written in ${r.ms} ms`);
    expect(r.ms).toBeLessThan(5_000);
    expect(r.version).toBe(2);
    const s = await getSecret(cp(), NS, 'db-creds');
    expect(decoded(s)).toEqual({ USER: db.user, PASSWORD: r.value });
    expect(JSON.parse(s.metadata.annotations['coffer.dev/synced-versions'])).toEqual({ 'app/db/password': 2, 'app/db/user': 1 });
    const cs = await waitForReason(cp(), NS, 'db', 'Synced', 10_000, (o) => o.status.syncedVersions?.['app/db/password'] === 2, sync);
    expect(cs.status.versionsHash).not.toBe(before.status.versionsHash);
    expect(s.metadata.annotations['coffer.dev/versions-hash']).toBe(cs.status.versionsHash);
    const [stamp, ms] = await until('the Deployment pod template stamped', async () => (await templateAnnotations('web'))[restartAnnotation('db')], 10_000);
    console.log(`[sync] restart target stamped ${ms} ms after the Secret`);
    expect(stamp).toBe(cs.status.versionsHash);
    // The stamp rolls the workload: the real deployment controller makes a second ReplicaSet.
    await until('web to roll to a new ReplicaSet', async () => {
      const rs = JSON.parse(await cp().kubectlOk(['-n', NS, 'get', 'replicasets', '-l', 'app=web', '-o', 'json'])).items as any[];
      return rs.some((x) => x.spec.template.metadata?.annotations?.[restartAnnotation('db')] === cs.status.versionsHash) && rs.length >= 2;
    }, 30_000, 250);
    db.password = r.value;
  });

  it('pin: an item with version: 1 keeps that value while the unpinned one moves', async () => {
    const a1 = sync.value('pina');
    const b1 = sync.value('pinb');
    await sync.put('app/pin/a', a1);
    await sync.put('app/pin/b', b1);
    await apply(cp(), cofferSecret(NS, 'pinned', sync.address('n2'), [{ key: 'A', name: 'app/pin/a', version: 1 }, { key: 'B', name: 'app/pin/b' }]));
    await waitForReason(cp(), NS, 'pinned', 'Synced', 30_000, undefined, sync);
    expect(decoded(await getSecret(cp(), NS, 'pinned'))).toEqual({ A: a1, B: b1 });

    // Both names get a version 2; only B follows.
    await sync.put('app/pin/a', sync.value('pina'));
    const b2 = await rotateAndWait('app/pin/b', 'pinned', 'B', 'pinb');
    const cs = await waitForReason(cp(), NS, 'pinned', 'Synced', 10_000, (o) => o.status.syncedVersions?.['app/pin/b'] === 2, sync);
    expect(cs.status.syncedVersions).toEqual({ 'app/pin/a': 1, 'app/pin/b': 2 });
    expect(decoded(await getSecret(cp(), NS, 'pinned'))).toEqual({ A: a1, B: b2.value });
  });

  it('metrics: syncs by outcome and watched names', async () => {
    const text = await scrape(leader);
    expect(metric(text, 'coffer_sync_syncs_total', { outcome: 'written' })).toBeGreaterThanOrEqual(1);
    // app/db/user, app/db/password, app/pin/b: a pinned name (app/pin/a) is not followed, it never moves.
    expect(metric(text, 'coffer_sync_watched_names')).toBe(3);
    expect(metric(text, 'coffer_sync_leader')).toBe(1);
    expect(metric(text, 'coffer_sync_coffersecrets')).toBe(2);
    // Two rotations reached a Secret so far (app/db/password, app/pin/b).
    expect(metric(text, 'coffer_sync_propagation_seconds_count')).toBeGreaterThanOrEqual(2);
    // One blocking query per CofferSecret, waiting between answers.
    await until('one blocking query waiting per CofferSecret', async () => metric(await scrape(leader), 'coffer_sync_waiting_queries') === 2, 10_000);
  });

  it('restart: a restarted controller rewrites no Secret and rolls no workload', async () => {
    const managed = async () => JSON.parse(await cp().kubectlOk(['get', 'secrets', '-A', '-l', 'app.kubernetes.io/managed-by=coffer-sync', '-o', 'json'])).items as any[];
    const before = new Map((await managed()).map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s.metadata.resourceVersion as string]));
    expect([...before.keys()].sort()).toEqual([`${NS}/db-creds`, `${NS}/pinned`]);
    const template = JSON.stringify((await getObject(cp(), deploymentPath(NS, 'web'))).spec.template);

    await sync.stopController(leader, 'SIGKILL');
    leader = await sync.startController('sync-a');
    await until('the restarted sync-a to lead', async () => metric(await scrape(leader), 'coffer_sync_leader') === 1, 30_000, 250);
    // It has looked at both CofferSecrets and found them current.
    await until('both CofferSecrets confirmed unchanged', async () => (metric(await scrape(leader), 'coffer_sync_syncs_total', { outcome: 'unchanged' }) ?? 0) >= 2, 30_000, 250);
    const text = await scrape(leader);
    expect(metric(text, 'coffer_sync_syncs_total', { outcome: 'written' }) ?? 0).toBe(0);

    const after = new Map((await managed()).map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s.metadata.resourceVersion as string]));
    expect(after).toEqual(before);
    expect(JSON.stringify((await getObject(cp(), deploymentPath(NS, 'web'))).spec.template)).toBe(template);
    for (const name of ['db', 'pinned']) expect(readyCondition(await getObject(cp(), csecPath(NS, name)))).toMatchObject({ status: 'True', reason: 'Synced' });
  });

  it('leader election: one holder, the standby writes nothing, and takes over when the leader dies', async () => {
    const standby = await sync.startController('sync-b');
    await until('sync-b /readyz while standing by', async () => (await fetch(`${standby.metricsUrl}/readyz`)).status === 200, 30_000, 250);
    expect(await leaseHolder(cp())).toBe('sync-a');
    expect(metric(await scrape(standby), 'coffer_sync_leader')).toBe(0);

    // A rotation while both run: the leader writes it, the standby does nothing.
    const r1 = await rotateAndWait('app/db/user', 'db-creds', 'USER', 'dbuser');
    console.log(`[sync] rotation with a standby running -> Secret written in ${r1.ms} ms`);
    expect(r1.ms).toBeLessThan(5_000);
    expect(metric(await scrape(standby), 'coffer_sync_syncs_total') ?? 0).toBe(0);

    const t0 = Date.now();
    await sync.stopController(leader, 'SIGKILL');
    await until('sync-b to hold the Lease', async () => (await leaseHolder(cp())) === 'sync-b', 30_000, 100);
    await until('sync-b to report itself leader', async () => metric(await scrape(standby), 'coffer_sync_leader') === 1, 15_000, 100);
    const takeover = Date.now() - t0;
    console.log(`[sync] standby took over ${takeover} ms after the leader was killed (lease 4 s)`);
    expect(takeover).toBeLessThan(15_000);
    leader = standby;

    const r2 = await rotateAndWait('app/db/password', 'db-creds', 'PASSWORD', 'dbpass');
    console.log(`[sync] rotation after takeover -> Secret written in ${r2.ms} ms`);
    expect(r2.ms).toBeLessThan(5_000);
    const cs = await waitForReason(cp(), NS, 'db', 'Synced', 10_000, (o) => o.status.syncedVersions?.['app/db/password'] === 3, sync);
    await until('the restart target stamped with the new hash', async () => (await templateAnnotations('web'))[restartAnnotation('db')] === cs.status.versionsHash, 10_000);
  });

  it('delete: deleting the CofferSecret garbage-collects its Secret', async () => {
    await apply(cp(), cofferSecret(NS, 'doomed', sync.address('n3'), [{ key: 'K', name: 'app/db/user' }]));
    await waitForReason(cp(), NS, 'doomed', 'Synced', 30_000, undefined, sync);
    expect(await getSecret(cp(), NS, 'doomed')).not.toBeNull();
    await cp().kubectlOk(['-n', NS, 'delete', 'coffersecret', 'doomed', '--wait=false']);
    // The garbage collector only follows a CRD's objects once its discovery resync (every 30 s in
    // kube-controller-manager) has seen the new resource: this test comes last so that is usually done.
    const [, ms] = await until('Secret doomed to be garbage-collected', async () => (await getSecret(cp(), NS, 'doomed')) === null, 60_000, 250);
    console.log(`[sync] Secret garbage-collected ${ms} ms after its CofferSecret was deleted`);
  });

  it('no value anywhere else: logs, metrics, CofferSecrets, Events, Secret metadata', async () => {
    expect(sync.values().length).toBeGreaterThanOrEqual(8);
    expect(await findLeaks(cp(), sync, [NS, 'coffer-system'])).toEqual([]);
  });
});
