// Live resize (spec.replicas on a formed VaultCluster) on a real control
// plane: the StatefulSet controller scales the pods, kwok marks them Ready,
// and each pod's /v1/health is a local stub that plays the Raft leader's
// configuration (`voters`, `learners`) the way the leader's autopilot would
// move it. The operator runs in-process under exactly the rules of
// operator/rbac.ts, with no admin token.
import { describe, expect, it } from 'vitest';
import type { RunningOperator } from '../../operator/operator.js';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';
import { useOperator } from './harness/use-operator.js';

const NS = 'resize';
const IMAGE = 'registry.invalid/coffer:1.0.0';

const ids = (vc: string, n: number) => Array.from({ length: n }, (_, i) => `${vc}-${i}`);
/** VaultCluster name -> the configuration its leader (`<vc>-0`) reports. */
const raft = new Map<string, { voters: string[]; learners: string[] }>();
const vcOf = (pod: string) => pod.replace(/-\d+$/, '');

const cp = useControlPlane();
const ops = useOperator(cp, {
  namespace: NS,
  release: () => '1.0.0',
  health: (pod) => {
    const r = raft.get(vcOf(pod));
    return { leader_id: `${vcOf(pod)}-0`, ...(r ? { voters: r.voters, learners: r.learners } : {}) };
  },
});
const getJson = (args: string[]) => kubectlJson(cp(), args);
const get = (kind: string, name: string) => getJson(['-n', NS, 'get', kind, name]);
const cond = (obj: any, type: string) => obj.status?.conditions?.find((c: any) => c.type === type);
const patchReplicas = (vc: string, replicas: number) =>
  cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', vc, '--type=merge', '-p', JSON.stringify({ spec: { replicas } })]);
const declared = async (vc: string): Promise<string[]> => ((await get('configmap', `${vc}-members`)).data.members as string).trim().split('\n');
const vaultEnv = (sts: any, name: string) => sts.spec.template.spec.containers.find((c: any) => c.name === 'vault').env.find((e: any) => e.name === name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function reasons(vc: string): Promise<string[]> {
  const events = await getJson(['-n', NS, 'get', 'events', '--field-selector', `involvedObject.kind=VaultCluster,involvedObject.name=${vc}`]);
  return events.items.sort((a: any, b: any) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion)).map((e: any) => e.reason);
}

/** Ready, no resize in progress, at this size, with the StatefulSet's pods all there. */
async function settled(vc: string, members: number): Promise<any> {
  return eventually(`${vc} Ready with ${members} members`, async () => {
    const o = await get('vaultcluster', vc);
    const sts = await get('statefulset', vc);
    return o.status?.observedGeneration === o.metadata.generation && cond(o, 'Ready')?.status === 'True' && o.status?.members === members &&
      o.status?.resize === undefined && o.status?.readyReplicas === members && sts.status?.replicas === members
      ? o
      : undefined;
  }, 180_000);
}

function cluster(name: string, spec: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name, namespace: NS },
    spec: { replicas: 3, image: IMAGE, kms: { mode: 'local' }, ...spec },
  });
}

describe('live resize on a real control plane', () => {
  let op: RunningOperator;

  it('3 -> 5: scales the StatefulSet, declares 5 members, Ready only once the leader reports 5 voters; PDB follows; the pod template does not change', async () => {
    op = ops.start('rs-a');
    await eventually('rs-a to lead', async () => op.isLeader(), 30_000);
    raft.set('vault', { voters: ids('vault', 3), learners: [] });
    await cp().kubectlOk(['apply', '-f', '-'], cluster('vault'));
    await settled('vault', 3);
    const before = await get('statefulset', 'vault');
    expect(await declared('vault')).toEqual(ids('vault', 3).map((id) => `${id}=${id}.vault-headless.${NS}.svc:8201`));
    expect(vaultEnv(before, 'VAULT_MEMBERS_FILE').value).toBe('/etc/coffer/members/members');
    expect((await get('poddisruptionbudget', 'vault')).spec.maxUnavailable).toBe(1);

    await patchReplicas('vault', 5);
    const scaling = await eventually('ScalingUp with 5 pods ready', async () => {
      const o = await get('vaultcluster', 'vault');
      const sts = await get('statefulset', 'vault');
      return o.status?.resize?.phase === 'ScalingUp' && sts.status?.readyReplicas === 5 ? o : undefined;
    }, 120_000);
    expect(scaling.status.resize).toMatchObject({ from: 3, to: 5 });
    expect(cond(scaling, 'Progressing')).toMatchObject({ status: 'True', reason: 'ScalingUp' });
    expect(await declared('vault')).toHaveLength(5);
    // Pods up but the leader has not promoted them: not Ready, for as long as that lasts.
    raft.set('vault', { voters: ids('vault', 4), learners: ['vault-4'] });
    await sleep(7_000);
    const waiting = await get('vaultcluster', 'vault');
    expect(cond(waiting, 'Ready')).toMatchObject({ status: 'False', reason: 'Resizing' });
    expect(waiting.status.resize.message).toContain('learners vault-4');
    expect(waiting.status.members).toBe(3);

    raft.set('vault', { voters: ids('vault', 5), learners: [] });
    const done = await settled('vault', 5);
    expect(cond(done, 'Progressing')).toMatchObject({ status: 'False' });
    const after = await get('statefulset', 'vault');
    expect(after.spec.replicas).toBe(5);
    expect(after.spec.template).toEqual(before.spec.template);
    expect(after.status.updateRevision).toBe(before.status.updateRevision);
    expect(vaultEnv(after, 'VAULT_PEERS').value.split(',')).toHaveLength(3);
    expect((await get('poddisruptionbudget', 'vault')).spec.maxUnavailable).toBe(2);
    const r = await reasons('vault');
    expect(r.filter((x) => ['ResizeStarted', 'ScalingUp', 'ResizeComplete'].includes(x))).toEqual(['ResizeStarted', 'ScalingUp', 'ResizeComplete']);
    expect(r).not.toContain('NotReady');
  });

  it('5 -> 3: declares the smaller set first; the StatefulSet keeps vault-3 and vault-4 while they are in Raft, then scales down, PVCs kept', async () => {
    const template = (await get('statefulset', 'vault')).spec.template;
    await patchReplicas('vault', 3);
    await eventually('3 members declared', async () => ((await declared('vault')).length === 3 ? true : undefined), 60_000);
    // The members ConfigMap is written before the status in the same pass: wait for the status, not one read.
    // The leader still reports 5 voters, so the resize cannot have finished in between.
    const removing = await eventually('RemovingMembers in status', async () => {
      const o = await get('vaultcluster', 'vault');
      return o.status?.resize?.phase === 'RemovingMembers' ? o : undefined;
    }, 60_000);
    expect(removing.status.resize).toMatchObject({ from: 5, to: 3, phase: 'RemovingMembers' });
    expect(cond(removing, 'Progressing')).toMatchObject({ reason: 'ScalingDown' });
    expect((await get('poddisruptionbudget', 'vault')).spec.maxUnavailable).toBe(1);
    // The leader still has both, then only vault-3: no scale-down through several passes.
    for (const voters of [ids('vault', 5), ids('vault', 4)]) {
      raft.set('vault', { voters, learners: [] });
      await sleep(7_000);
      expect((await get('statefulset', 'vault')).spec.replicas).toBe(5);
      expect((await get('vaultcluster', 'vault')).status.resize.message).toContain(`removes ${voters.slice(3).join(', ')}`);
    }
    raft.set('vault', { voters: ids('vault', 3), learners: [] });
    await settled('vault', 3);
    const sts = await get('statefulset', 'vault');
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.template).toEqual(template);
    const pvcs = (await getJson(['-n', NS, 'get', 'pvc'])).items.map((p: any) => p.metadata.name).sort();
    expect(pvcs).toEqual(expect.arrayContaining(['data-vault-3', 'data-vault-4']));
    expect(await reasons('vault')).toEqual(expect.arrayContaining(['RemovingMembers', 'ScalingDown']));
  });

  it('an operator restarted mid-resize resumes: up while vault-3/4 are learners, down while they are still voters', async () => {
    raft.set('vault', { voters: ids('vault', 3), learners: [] });
    await patchReplicas('vault', 5);
    await eventually('ScalingUp', async () => ((await get('vaultcluster', 'vault')).status?.resize?.phase === 'ScalingUp' ? true : undefined), 60_000);
    await ops.stop(op);
    raft.set('vault', { voters: ids('vault', 3), learners: ['vault-3', 'vault-4'] });
    op = ops.start('rs-b');
    await eventually('rs-b to lead', async () => op.isLeader(), 30_000);
    await sleep(7_000);
    expect((await get('vaultcluster', 'vault')).status.resize).toMatchObject({ from: 3, to: 5, phase: 'ScalingUp' });
    raft.set('vault', { voters: ids('vault', 5), learners: [] });
    await settled('vault', 5);

    await patchReplicas('vault', 3);
    await eventually('RemovingMembers', async () => ((await get('vaultcluster', 'vault')).status?.resize?.phase === 'RemovingMembers' ? true : undefined), 60_000);
    await ops.stop(op);
    op = ops.start('rs-c');
    await eventually('rs-c to lead', async () => op.isLeader(), 30_000);
    await sleep(7_000);
    expect((await get('statefulset', 'vault')).spec.replicas).toBe(5);
    expect((await get('vaultcluster', 'vault')).status.resize).toMatchObject({ from: 5, to: 3, phase: 'RemovingMembers' });
    raft.set('vault', { voters: ids('vault', 3), learners: [] });
    await settled('vault', 3);
  });

  it('with WireGuard: new keys only for new ordinals, overlay addresses declared, a removed ordinal\'s key and peer go after the scale-down', async () => {
    raft.set('wgv', { voters: ids('wgv', 3), learners: [] });
    await cp().kubectlOk(['apply', '-f', '-'], cluster('wgv', { wireguard: { enabled: true, cidr: '10.79.0.0/24' } }));
    await settled('wgv', 3);
    const keys = async (): Promise<Record<string, string>> => (await get('secret', 'wgv-wireguard-keys')).data;
    const peers = async (): Promise<any[]> => JSON.parse((await get('configmap', 'wgv-wireguard-peers')).data['peers.json']).peers;
    const three = await keys();
    const template = (await get('statefulset', 'wgv')).spec.template;
    expect(await declared('wgv')).toEqual(['wgv-0=10.79.0.1:8201', 'wgv-1=10.79.0.2:8201', 'wgv-2=10.79.0.3:8201']);

    await patchReplicas('wgv', 5);
    await eventually('5 WireGuard keys and peers', async () => (Object.keys(await keys()).length === 5 && (await peers()).length === 5 ? true : undefined), 60_000);
    const five = await keys();
    for (const [k, v] of Object.entries(three)) expect(five[k]).toBe(v);
    expect((await peers()).map((p) => p.address)).toEqual(['10.79.0.1', '10.79.0.2', '10.79.0.3', '10.79.0.4', '10.79.0.5']);
    expect((await declared('wgv')).at(-1)).toBe('wgv-4=10.79.0.5:8201');
    raft.set('wgv', { voters: ids('wgv', 5), learners: [] });
    await settled('wgv', 5);
    const sts = await get('statefulset', 'wgv');
    expect(sts.spec.template).toEqual(template);
    expect(vaultEnv(sts, 'VAULT_PEERS').value).toBe('wgv-0=10.79.0.1:8201,wgv-1=10.79.0.2:8201,wgv-2=10.79.0.3:8201');
    expect(await keys()).toEqual(five);

    await patchReplicas('wgv', 3);
    await eventually('RemovingMembers', async () => ((await get('vaultcluster', 'wgv')).status?.resize?.phase === 'RemovingMembers' ? true : undefined), 60_000);
    await sleep(6_000);
    // Still in Raft: keys and peers stay.
    expect(Object.keys(await keys())).toHaveLength(5);
    expect(await peers()).toHaveLength(5);
    raft.set('wgv', { voters: ids('wgv', 3), learners: [] });
    await settled('wgv', 3);
    await eventually('3 WireGuard keys and peers', async () => (Object.keys(await keys()).length === 3 && (await peers()).length === 3 ? true : undefined), 60_000);
    expect(await keys()).toEqual(three);
    expect(await reasons('wgv')).toContain('WireGuardKeysRemoved');
    expect((await get('statefulset', 'wgv')).spec.template).toEqual(template);
  });
});
