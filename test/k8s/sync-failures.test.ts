// The sync controller's failure reasons (issue 14) on a real control plane
// with a real 3-node Coffer: each leaves the last synced Secret as it was,
// reports Ready=False with a reason a user can act on, and recovers by
// itself once the cause is gone (nobody touches the CofferSecret).
// The file starts with the controller's address (127.0.0.1) NOT on the
// vault's read allowlist, as a pod is before the kubelet refreshes the
// mounted allowlist ConfigMap.
import { describe, expect, it } from 'vitest';
import { useControlPlane } from './harness/use-control-plane.js';
import {
  apply, cofferSecret, csecPath, decoded, findLeaks, getObject, getSecret, readyCondition, secretPath, until, useSync, waitForReason,
} from './harness/use-sync.js';

const NS = 'failing';
const NOT_US = '192.0.2.10'; // TEST-NET-1: an allowlist that does not name the controller
const cp = useControlPlane({ nodes: 1, volumes: 0 });
const sync = useSync(cp, { namespace: NS, allowlist: [NOT_US] });

describe('coffer sync run: failure reasons', () => {
  it('Forbidden: the controller address not on the read allowlist, then added to the file -> Synced without touching the CofferSecret', async () => {
    await sync.startController('sync-f');
    const v = sync.value('allow');
    await sync.put('fail/allow', v);
    await apply(cp(), cofferSecret(NS, 'allow', sync.address('n1'), [{ key: 'V', name: 'fail/allow' }]));
    const cs = await waitForReason(cp(), NS, 'allow', 'Forbidden', 30_000, undefined, sync);
    console.log(`[sync] not allowlisted -> message: ${readyCondition(cs)?.message}`);
    expect(readyCondition(cs)?.message ?? '').toMatch(/allowlist/i);
    expect(await getSecret(cp(), NS, 'allow')).toBeNull();
    const generation = cs.metadata.generation;

    sync.setAllowlist([NOT_US, '127.0.0.1']);
    const t0 = Date.now();
    const synced = await waitForReason(cp(), NS, 'allow', 'Synced', 45_000, undefined, sync);
    console.log(`[sync] allowlisted -> Synced after ${Date.now() - t0} ms (file re-read <= ~2 s + the controller's retry backoff)`);
    expect(synced.metadata.generation).toBe(generation);
    expect(decoded(await getSecret(cp(), NS, 'allow'))).toEqual({ V: v });
  });

  it('Forbidden: a token without read_metadata on a name -> a message naming the problem; granted -> Synced', async () => {
    await sync.putRole('limited', [{ paths: ['fail/limited/ok'], actions: ['read_metadata'] }]);
    const token = await sync.createToken('limited', 'limited');
    await apply(cp(), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'limited-token', namespace: NS }, stringData: { t: token } });
    const ok = sync.value('limok');
    const other = sync.value('limother');
    await sync.put('fail/limited/ok', ok);
    await sync.put('fail/limited/other', other);
    await apply(cp(), cofferSecret(NS, 'limited', sync.address('n2'), [{ key: 'OK', name: 'fail/limited/ok' }, { key: 'OTHER', name: 'fail/limited/other' }], {
      tokenSecretRef: { name: 'limited-token', key: 't' },
    }));
    const cs = await waitForReason(cp(), NS, 'limited', 'Forbidden', 30_000, undefined, sync);
    const message = readyCondition(cs)?.message ?? '';
    console.log(`[sync] token lacks read_metadata -> message: ${message}`);
    expect(message).toContain('read_metadata');
    expect(message).toContain('fail/limited/other');
    expect(message).not.toContain(token);
    expect(await getSecret(cp(), NS, 'limited')).toBeNull();

    await sync.putRole('limited', [{ paths: ['fail/limited/*'], actions: ['read_metadata'] }]);
    const t0 = Date.now();
    await waitForReason(cp(), NS, 'limited', 'Synced', 45_000, undefined, sync);
    console.log(`[sync] role widened -> Synced after ${Date.now() - t0} ms`);
    expect(decoded(await getSecret(cp(), NS, 'limited'))).toEqual({ OK: ok, OTHER: other });
  });

  it('SecretNotFound: a missing name keeps the existing Secret as it was; creating it in Coffer -> Synced', async () => {
    const a = sync.value('nfa');
    await sync.put('fail/nf/a', a);
    const base = [{ key: 'A', name: 'fail/nf/a' }];
    await apply(cp(), cofferSecret(NS, 'nf', sync.address('n1'), base));
    await waitForReason(cp(), NS, 'nf', 'Synced', 30_000, undefined, sync);
    const before = await getSecret(cp(), NS, 'nf');

    await apply(cp(), cofferSecret(NS, 'nf', sync.address('n1'), [...base, { key: 'B', name: 'fail/nf/missing' }]));
    const cs = await waitForReason(cp(), NS, 'nf', 'SecretNotFound', 30_000, undefined, sync);
    console.log(`[sync] missing name -> message: ${readyCondition(cs)?.message}`);
    expect(readyCondition(cs)?.message ?? '').toContain('fail/nf/missing');
    const kept = await getSecret(cp(), NS, 'nf');
    expect(kept.data).toEqual(before.data);
    expect(kept.metadata.resourceVersion).toBe(before.metadata.resourceVersion);

    const b = sync.value('nfb');
    const t0 = Date.now();
    await sync.put('fail/nf/missing', b);
    await waitForReason(cp(), NS, 'nf', 'Synced', 20_000, undefined, sync);
    console.log(`[sync] missing name created -> Synced after ${Date.now() - t0} ms`);
    expect(decoded(await getSecret(cp(), NS, 'nf'))).toEqual({ A: a, B: b });
  });

  it('TargetConflict: an unowned Secret of the target name is left byte-identical', async () => {
    await apply(cp(), {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'theirs', namespace: NS, labels: { owner: 'someone-else' } },
      stringData: { PASSWORD: 'not-from-coffer' },
    });
    const before = (await cp().api('GET', secretPath(NS, 'theirs'))).body;
    await sync.put('fail/conflict', sync.value('conflict'));
    await apply(cp(), cofferSecret(NS, 'conflict', sync.address('n3'), [{ key: 'PASSWORD', name: 'fail/conflict' }], { target: { name: 'theirs' } }));
    const cs = await waitForReason(cp(), NS, 'conflict', 'TargetConflict', 30_000, undefined, sync);
    console.log(`[sync] conflict -> message: ${readyCondition(cs)?.message}`);
    expect(readyCondition(cs)?.message ?? '').toContain('theirs');
    // A rotation does not change that.
    await sync.put('fail/conflict', sync.value('conflict'));
    await waitForReason(cp(), NS, 'conflict', 'TargetConflict', 10_000, undefined, sync);
    expect((await cp().api('GET', secretPath(NS, 'theirs'))).body).toBe(before);
  });

  it('VaultUnavailable: Coffer unreachable or without a leader keeps the Secret; back -> Synced', async () => {
    const v = sync.value('vu');
    await sync.put('fail/vu', v);
    await apply(cp(), cofferSecret(NS, 'vu', sync.address('n1'), [{ key: 'V', name: 'fail/vu' }]));
    await waitForReason(cp(), NS, 'vu', 'Synced', 30_000, undefined, sync);
    const before = await getSecret(cp(), NS, 'vu');

    // n1 (its address) and n2 stop: unreachable, and n3 alone has no leader.
    await sync.coffer().stopMember('n1');
    await sync.coffer().stopMember('n2');
    const t0 = Date.now();
    const cs = await waitForReason(cp(), NS, 'vu', 'VaultUnavailable', 30_000, undefined, sync);
    console.log(`[sync] Coffer down -> VaultUnavailable after ${Date.now() - t0} ms: ${readyCondition(cs)?.message}`);
    // A CofferSecret created now against n3 (up, no leader: no_leader) cannot be synced either.
    await apply(cp(), cofferSecret(NS, 'vu-noleader', sync.address('n3'), [{ key: 'V', name: 'fail/vu' }]));
    const nl = await waitForReason(cp(), NS, 'vu-noleader', 'VaultUnavailable', 45_000, undefined, sync);
    console.log(`[sync] no leader -> VaultUnavailable: ${readyCondition(nl)?.message}`);
    expect(await getSecret(cp(), NS, 'vu-noleader')).toBeNull();
    const kept = await getSecret(cp(), NS, 'vu');
    expect(kept.data).toEqual(before.data);
    expect(kept.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    // Still the last synced versions in status.
    expect((await getObject(cp(), csecPath(NS, 'vu'))).status.syncedVersions).toEqual({ 'fail/vu': 1 });

    await sync.coffer().startMember('n1');
    await sync.coffer().startMember('n2');
    await sync.coffer().waitForLeader(30_000);
    const t1 = Date.now();
    await waitForReason(cp(), NS, 'vu', 'Synced', 60_000, undefined, sync);
    await waitForReason(cp(), NS, 'vu-noleader', 'Synced', 60_000, undefined, sync);
    console.log(`[sync] Coffer back -> both Synced after ${Date.now() - t1} ms`);
    expect(decoded(await getSecret(cp(), NS, 'vu-noleader'))).toEqual({ V: v });
    // Everything else recovered too (they all watched n1..n3).
    for (const name of ['allow', 'limited', 'nf']) await waitForReason(cp(), NS, name, 'Synced', 60_000, undefined, sync);
  });

  it('no value anywhere else: logs, metrics, CofferSecrets, Events, Secret metadata', async () => {
    expect(await findLeaks(cp(), sync, [NS, 'coffer-system'])).toEqual([]);
  });
});
