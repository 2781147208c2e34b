// The VaultCluster that `npm run e2e:up` made (examples/vaultcluster.yaml),
// on real pods: Ready through real probes, replication across pods, a leader
// pod deleted under a writing client, the staged re-wrap rollout with an
// operator restart in the middle, an image upgrade under a writing client,
// and deletion. In that order: each step starts from the state the previous
// one left (this file runs its tests one after another).
import { describe, expect, it } from 'vitest';
import { apply, getJson, kubectl, waitFor, WAIT_MS } from './harness/kube.js';
import { api, bootstrapToken, IMAGE, getVaultCluster, leaderPod, operatorPods, OPERATOR_NS, podNames, waitReady } from './harness/vault.js';
import { startWriter, unreadable, writerResult } from './harness/writer.js';

const NS = process.env.COFFER_E2E_NAMESPACE ?? 'coffer';
const VC = process.env.COFFER_E2E_VAULTCLUSTER ?? 'vault';
const UPGRADE_IMAGE = process.env.COFFER_E2E_UPGRADE_IMAGE ?? `${IMAGE}-e2e-upgrade`;
const UPGRADE_RELEASE = UPGRADE_IMAGE.slice(UPGRADE_IMAGE.lastIndexOf(':') + 1);
const PODS = podNames(VC);
const ROLLOUT_ORDER = ['Idle', 'RollingOutFlagOff', 'WaitingForGate', 'EnablingFlag', 'RollingOutFlagOn', 'Complete'];

let token = '';
const value = `e2e-${Math.random().toString(36).slice(2)}`;
// A name of this run's own: a cluster that e2e:up left may hold earlier runs' data.
const SECRET = `e2e/db-password-${Date.now()}`;

async function pods(): Promise<any[]> {
  return (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`])).items;
}
const isReady = (p: any) => (p.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True');

describe('a VaultCluster on kind', () => {
  it('becomes Ready, every container ready through its real probes, each pod on its own bound PVC', async () => {
    const vc = await waitReady(NS, VC);
    expect(vc.status.readyReplicas).toBe(3);
    const all = await pods();
    expect(all.map((p) => p.metadata.name).sort()).toEqual(PODS);
    for (const p of all) {
      const vault = p.spec.containers.find((c: any) => c.name === 'vault');
      expect(vault.startupProbe?.httpGet?.path, p.metadata.name).toBe('/v1/health');
      expect(vault.readinessProbe?.httpGet?.path, p.metadata.name).toBe('/v1/ready');
      expect(vault.livenessProbe?.httpGet?.path, p.metadata.name).toBe('/v1/health');
      for (const s of p.status.containerStatuses) {
        expect(s.ready, `${p.metadata.name}/${s.name}`).toBe(true);
        expect(s.restartCount, `${p.metadata.name}/${s.name} restarts`).toBe(0);
      }
      const claim = p.spec.volumes.find((v: any) => v.name === 'data')?.persistentVolumeClaim?.claimName;
      expect(claim).toBe(`data-${p.metadata.name}`);
    }
    const pvcs = (await getJson(['get', 'pvc', '-n', NS])).items.filter((c: any) => c.metadata.name.startsWith(`data-${VC}-`));
    expect(pvcs.map((c: any) => c.status.phase)).toEqual(['Bound', 'Bound', 'Bound']);
    // Three pods on a 1 control plane + 2 worker cluster: never all on one node.
    expect(new Set(all.map((p) => p.spec.nodeName)).size).toBeGreaterThan(1);
    token = await bootstrapToken(NS, VC);
    expect(token.length).toBeGreaterThanOrEqual(32);
  });

  it('replicates a write made in one pod to every other pod', async () => {
    const put = await api(NS, PODS[0]!, { method: 'PUT', path: `/v1/secrets/${SECRET}`, token, body: { value } });
    expect(put.status).toBe(201);
    for (const pod of PODS.slice(1)) {
      const got = await api(NS, pod, { method: 'GET', path: `/v1/secrets/${SECRET}`, token });
      expect(got.status, pod).toBe(200);
      expect(got.body).toMatchObject({ name: SECRET, version: 1, value });
    }
    // Without a token a value read needs only the allowlisted address; management does not.
    expect((await api(NS, PODS[1]!, { method: 'GET', path: '/v1/tokens' })).status).toBe(401);
  });

  it('has `coffer` on PATH in the vault container: kubectl exec … -- coffer cluster status works with the pod\'s own token', async () => {
    // Exactly as README says: no --addr, no token (the CLI falls back to the pod's VAULT_BOOTSTRAP_TOKEN).
    const out = await kubectl(['exec', '-n', NS, PODS[0]!, '-c', 'vault', '--', 'coffer', 'cluster', 'status']);
    expect(out).toMatch(new RegExp(`^node_id\\s+${PODS[0]}$`, 'm'));
    expect(out).toMatch(/^leader_id\s+\S+$/m);
    for (const pod of PODS) expect(out, pod).toMatch(new RegExp(`^\\s+${pod}\\s+\\S+:8201\\s+true$`, 'm'));
  });

  it('loses no acknowledged write when the leader pod is deleted under a writing client, and the pod comes back on its PVC', async () => {
    const job = await startWriter(NS, VC, token, 75);
    await new Promise((r) => setTimeout(r, 10_000));
    const leader = await leaderPod(NS, VC);
    const claimUid = (await getJson(['get', 'pvc', `data-${leader}`, '-n', NS])).metadata.uid;
    const podUid = (await getJson(['get', 'pod', leader, '-n', NS])).metadata.uid;
    await kubectl(['delete', 'pod', leader, '-n', NS, '--wait=false']);

    const newLeader = await waitFor('a new leader', async () => {
      for (const pod of PODS.filter((p) => p !== leader)) {
        const h = await api(NS, pod, { method: 'GET', path: '/v1/health' }).catch(() => undefined);
        if (h?.status === 200 && h.body.leader_id && h.body.leader_id !== leader) return h.body.leader_id as string;
      }
      return undefined;
    });
    expect(newLeader).not.toBe(leader);

    const summary = await writerResult(NS, job);
    console.log(`failover: old leader ${leader}, new ${newLeader}; writes acknowledged ${summary.acked.length}, retried ${summary.retries}, errors seen ${JSON.stringify(summary.errors)}`);
    expect(summary.failed, JSON.stringify(summary.errors)).toEqual([]);
    expect(summary.acked.length).toBeGreaterThan(50);

    // The recreated pod: a new pod object, the same claim, caught up with every acknowledged write.
    await waitReady(NS, VC);
    const back = await getJson(['get', 'pod', leader, '-n', NS]);
    expect(back.metadata.uid).not.toBe(podUid);
    expect((await getJson(['get', 'pvc', `data-${leader}`, '-n', NS])).metadata.uid).toBe(claimUid);
    expect(await unreadable(NS, leader, token, summary.acked)).toEqual([]);
    const other = PODS.find((p) => p !== leader)!;
    expect(await unreadable(NS, other, token, summary.acked)).toEqual([]);
  });

  it('rolls re-wrap out in stages gated on the real pods\' /v1/health, through an operator restart', async () => {
    await kubectl(['patch', 'vaultcluster', VC, '-n', NS, '--type', 'merge', '-p', '{"spec":{"kms":{"rewrap":{"enabled":true}}}}']);
    const seen: string[] = [];
    let restarted = false;
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const phase: string | undefined = (await getVaultCluster(NS, VC)).status?.rollout?.phase;
      if (phase && phase !== seen.at(-1)) {
        expect(ROLLOUT_ORDER, `unknown phase ${phase}`).toContain(phase);
        if (seen.length > 0 && phase !== 'Idle') expect(ROLLOUT_ORDER.indexOf(phase), `${seen.at(-1)} -> ${phase}`).toBeGreaterThanOrEqual(ROLLOUT_ORDER.indexOf(seen.at(-1)!));
        seen.push(phase);
      }
      if (!restarted && phase && phase !== 'Idle' && phase !== 'Complete') {
        // The operator dies mid-rollout; its successor picks up from status, not from the start.
        const before = await operatorPods();
        await kubectl(['delete', 'pod', '-n', OPERATOR_NS, ...before, '--wait=false']);
        restarted = true;
      }
      if (phase === 'Complete') break;
      if (Date.now() > deadline) throw new Error(`rollout did not complete (phases seen: ${seen.join(', ')})`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(restarted).toBe(true);
    expect(seen.some((p) => p === 'EnablingFlag' || p === 'RollingOutFlagOn')).toBe(true);

    await waitReady(NS, VC);
    await waitFor('every pod rolled with the flag on', async () => {
      const all = await pods();
      return all.length === 3 && all.every((p) => isReady(p) && p.spec.containers.find((c: any) => c.name === 'vault').env.some((e: any) => e.name === 'VAULT_KMS_REWRAP_ENABLED' && e.value === 'true'));
    });
    const leader = await leaderPod(NS, VC);
    const status = await api(NS, leader, { method: 'GET', path: '/v1/admin/kms/rewrap/status', token });
    expect(status.status).toBe(200);
    expect(status.body.enabled).toBe(true);
    const got = await api(NS, PODS[2]!, { method: 'GET', path: `/v1/secrets/${SECRET}`, token });
    expect(got.body.value).toBe(value);
  });

  it('upgrades the image one pod at a time under a writing client, with no write failing past its retries', async () => {
    const leaderBefore = await leaderPod(NS, VC);
    const job = await startWriter(NS, VC, token, 120, 30_000);
    await kubectl(['patch', 'vaultcluster', VC, '-n', NS, '--type', 'merge', '-p', JSON.stringify({ spec: { image: UPGRADE_IMAGE } })]);
    let mostDown = 0;
    // With re-wrap on, the operator rolls twice (the new image with the flag off, the gate, then the flag
    // on): done is the rollout Complete for this image and every pod ready on it.
    await waitFor('the upgrade rollout to complete', async () => {
      const all = await pods();
      const down = 3 - all.filter((p) => isReady(p) && !p.metadata.deletionTimestamp).length;
      mostDown = Math.max(mostDown, down);
      const rollout = (await getVaultCluster(NS, VC)).status?.rollout;
      const onNew = all.filter((p) => p.spec.containers.find((c: any) => c.name === 'vault').image === UPGRADE_IMAGE && isReady(p) && !p.metadata.deletionTimestamp);
      return rollout?.phase === 'Complete' && rollout?.targetImage === UPGRADE_IMAGE && onNew.length === 3;
    }, WAIT_MS, 1000);
    expect(mostDown, 'pods down at once').toBeLessThanOrEqual(1);
    for (const pod of PODS) {
      const h = await api(NS, pod, { method: 'GET', path: '/v1/health' });
      expect(h.body.version, pod).toBe(UPGRADE_RELEASE);
    }
    await waitReady(NS, VC);
    const summary = await writerResult(NS, job);
    console.log(`upgrade: leader before ${leaderBefore}, after ${await leaderPod(NS, VC)}; most pods down at once ${mostDown}; writes acknowledged ${summary.acked.length}, retried ${summary.retries}, errors seen ${JSON.stringify(summary.errors)}`);
    expect(summary.failed, JSON.stringify(summary.errors)).toEqual([]);
    expect(await unreadable(NS, await leaderPod(NS, VC), token, summary.acked)).toEqual([]);
  });

  it('deletes the workload with the VaultCluster and keeps the data: PVCs and the generated keys', async () => {
    const spec = (await getVaultCluster(NS, VC)).spec;
    await kubectl(['delete', 'vaultcluster', VC, '-n', NS, '--wait=true', '--timeout=300s']);
    await waitFor('the owned objects to be garbage-collected', async () => {
      const left = await kubectl(['get', 'statefulset,service,pdb,serviceaccount,configmap,pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`, '-o', 'name']);
      return left.trim() === '';
    });
    const pvcs = (await getJson(['get', 'pvc', '-n', NS])).items.filter((c: any) => c.metadata.name.startsWith(`data-${VC}-`));
    expect(pvcs.map((c: any) => c.metadata.name).sort()).toEqual(PODS.map((p) => `data-${p}`));
    // Without spec.storage.deleteClaimsOnDelete the keys that decrypt and administer the kept data stay too.
    const secrets = (await kubectl(['get', 'secret', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`, '-o', 'name'])).trim().split('\n').sort();
    expect(secrets).toEqual([`secret/${VC}-bootstrap-token`, `secret/${VC}-cluster-key`, `secret/${VC}-master-key`]);

    // The same VaultCluster applied again comes back on that data.
    await apply({ apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: VC, namespace: NS }, spec });
    await waitReady(NS, VC);
    const got = await api(NS, PODS[1]!, { method: 'GET', path: `/v1/secrets/${SECRET}`, token });
    expect(got.status).toBe(200);
    expect(got.body.value).toBe(value);
  });
});

