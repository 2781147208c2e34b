// The WireGuard overlay's operator side on a real control plane: the key
// Secret, the peer ConfigMap and the native sidecar for a VaultCluster with
// spec.wireguard.enabled; keys kept across reconciles and an operator
// restart (resizing with the overlay: resize.test.ts); a keyGeneration bump rotating the keys one pod at a time
// through evictions (kwok marks the replacement pods Ready). The operator
// runs in-process under exactly the rules of operator/rbac.ts.
import { describe, expect, it } from 'vitest';
import type { RunningOperator } from '../../operator/operator.js';
import { publicKeyOf } from '../../operator/wireguard/keys.js';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';
import { useOperator } from './harness/use-operator.js';

const NS = 'overlay';
const IMAGE = 'registry.invalid/coffer:1.0.0';
const KEY = /^[A-Za-z0-9+/]{43}=$/;

const cp = useControlPlane();
// Every pod reports release 1.0.0 from its (stubbed) /v1/health.
const ops = useOperator(cp, { namespace: NS, release: () => '1.0.0' });
const operator = (identity: string) => ops.start(identity);
const stopOperator = (op: RunningOperator) => ops.stop(op);

const getJson = (args: string[]) => kubectlJson(cp(), args);
const vc = () => getJson(['-n', NS, 'get', 'vaultcluster', 'vault']);
const cond = (obj: any, type: string) => obj.status?.conditions?.find((c: any) => c.type === type);

/** The key Secret's keys, decoded: `<pod>.key` -> key text. */
async function keys(): Promise<Record<string, string>> {
  const s = await getJson(['-n', NS, 'get', 'secret', 'vault-wireguard-keys']);
  return Object.fromEntries(Object.entries(s.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

async function peers(): Promise<any> {
  return JSON.parse((await getJson(['-n', NS, 'get', 'configmap', 'vault-wireguard-peers'])).data['peers.json']);
}

async function reasons(): Promise<string[]> {
  const events = await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster,involvedObject.name=vault']);
  return events.items.map((e: any) => e.reason);
}

async function settled(replicas: number): Promise<any> {
  return eventually(`VaultCluster Ready and Idle with ${replicas} replicas`, async () => {
    const o = await vc();
    return o.status?.observedGeneration === o.metadata.generation && cond(o, 'Ready')?.status === 'True' &&
      o.status?.rollout?.phase === 'Idle' && o.status?.readyReplicas === replicas && o.status?.wireguard?.rotatingOrdinal === undefined
      ? o
      : undefined;
  }, 180_000);
}


describe('WireGuard overlay: operator on a real control plane', () => {
  let op: RunningOperator;

  it('creates the key Secret, the peer ConfigMap and the native sidecar', async () => {
    op = operator('wg-a');
    await eventually('wg-a to lead', async () => op.isLeader(), 30_000);
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'vault', namespace: NS },
      spec: { replicas: 3, image: IMAGE, kms: { mode: 'local' }, wireguard: { enabled: true, managementOnOverlay: true } },
    }));
    const v = await settled(3);
    expect(v.status.wireguard).toMatchObject({ keyGeneration: 1 });
    expect(cond(v, 'Degraded')).toMatchObject({ status: 'False' });

    const secret = await getJson(['-n', NS, 'get', 'secret', 'vault-wireguard-keys']);
    expect(secret.type).toBe('Opaque');
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', uid: v.metadata.uid, controller: true })]);
    expect(secret.metadata.annotations['coffer.dev/wireguard-key-generation']).toBe('1');
    const k = await keys();
    expect(Object.keys(k).sort()).toEqual(['vault-0.key', 'vault-1.key', 'vault-2.key']);
    for (const key of Object.values(k)) expect(key).toMatch(KEY);
    expect(new Set(Object.values(k)).size).toBe(3);

    const cm = await getJson(['-n', NS, 'get', 'configmap', 'vault-wireguard-peers']);
    expect(cm.metadata.ownerReferences[0]).toMatchObject({ kind: 'VaultCluster', uid: v.metadata.uid });
    const doc = await peers();
    expect(doc).toMatchObject({ version: 1, listenPort: 51_820, cidr: '10.77.0.0/24' });
    expect(doc.peers).toEqual([0, 1, 2].map((i) => ({
      name: `vault-${i}`, publicKey: publicKeyOf(k[`vault-${i}.key`]!), address: `10.77.0.${i + 1}`,
      endpoint: `vault-${i}.vault-headless.${NS}.svc:51820`,
    })));

    const sts = await getJson(['-n', NS, 'get', 'statefulset', 'vault']);
    const pod = sts.spec.template.spec;
    // The API server kept the native sidecar (restartPolicy Always on an init container).
    expect(pod.initContainers.map((c: any) => [c.name, c.restartPolicy, c.image, c.args])).toEqual([['wireguard', 'Always', IMAGE, ['wg-agent']]]);
    const wg = pod.initContainers[0];
    expect(wg.securityContext).toEqual({
      runAsUser: 0, runAsNonRoot: false, privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] }, seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(wg.startupProbe.httpGet).toMatchObject({ path: '/ready', port: 'wg-agent' });
    expect(wg.readinessProbe).toBeUndefined();
    expect(wg.livenessProbe.httpGet).toMatchObject({ path: '/health', port: 'wg-agent' });
    expect(wg.ports).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'wireguard', containerPort: 51_820, protocol: 'UDP' })]));
    expect(pod.volumes).toEqual(expect.arrayContaining([
      expect.objectContaining({ name: 'wireguard-keys', secret: expect.objectContaining({ secretName: 'vault-wireguard-keys' }) }),
      expect.objectContaining({ name: 'wireguard-peers', configMap: expect.objectContaining({ name: 'vault-wireguard-peers' }) }),
      { name: 'wireguard-tun', hostPath: { path: '/dev/net/tun', type: 'CharDevice' } },
    ]));
    const vault = pod.containers.find((c: any) => c.name === 'vault');
    const env = new Map(vault.env.map((e: any) => [e.name, e.value]));
    expect(env.get('VAULT_PEERS')).toBe('vault-0=10.77.0.1:8201,vault-1=10.77.0.2:8201,vault-2=10.77.0.3:8201');
    expect(env.get('VAULT_OVERLAY_CIDR')).toBe('10.77.0.0/24');
    expect(env.get('VAULT_MGMT_ADDR')).toBe('overlay:8202');
    expect(env.has('VAULT_RAFT_ADVERTISE')).toBe(false);
    expect(env.has('VAULT_RAFT_ADDR')).toBe(false);
    // The overlay leaves the API's Host names, and VAULT_NODE_ID ahead of them so $(VAULT_NODE_ID) expands.
    expect(vault.env[0].name).toBe('VAULT_NODE_ID');
    expect(String(env.get('VAULT_API_HOSTNAMES')).split(',')).toEqual(expect.arrayContaining([`vault-client.${NS}.svc`, `$(VAULT_NODE_ID).vault-headless.${NS}.svc`]));
    expect(vault.volumeMounts.map((m: any) => m.name)).not.toContain('wireguard-keys');
    // The pods the StatefulSet controller made carry it too.
    const pods = await getJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/instance=vault']);
    expect(pods.items).toHaveLength(3);
    for (const p of pods.items) expect(p.spec.initContainers[0].name).toBe('wireguard');
    expect(await reasons()).toEqual(expect.arrayContaining(['WireGuardKeysGenerated', 'Created']));
  });

  it('keeps the Secret unchanged across reconciles and an operator restart', async () => {
    const before = await getJson(['-n', NS, 'get', 'secret', 'vault-wireguard-keys']);
    for (let i = 0; i < 3; i++) await cp().kubectlOk(['-n', NS, 'annotate', 'vaultcluster', 'vault', `test/touch=${i}`, '--overwrite']);
    await stopOperator(op);
    op = operator('wg-b');
    await eventually('wg-b to lead', async () => op.isLeader(), 30_000);
    // A deleted ConfigMap comes back, derived from the same keys.
    const doc = await peers();
    await cp().kubectlOk(['-n', NS, 'delete', 'configmap', 'vault-wireguard-peers']);
    await eventually('peer ConfigMap back', async () => (await cp().kubectl(['-n', NS, 'get', 'configmap', 'vault-wireguard-peers'])).code === 0, 60_000);
    expect(await peers()).toEqual(doc);
    const after = await getJson(['-n', NS, 'get', 'secret', 'vault-wireguard-keys']);
    expect(after.data).toEqual(before.data);
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
  });

  it('rotates the keys one pod at a time when keyGeneration rises, waiting for a fully ready cluster, surviving an operator restart', async () => {
    const before = await keys();
    const pods = async () => (await getJson(['-n', NS, 'get', 'pods', '-l', 'app.kubernetes.io/instance=vault'])).items as any[];
    const uids = new Map((await pods()).map((p) => [p.metadata.name, p.metadata.uid]));
    const setReady = (pod: string, status: 'True' | 'False') =>
      cp().kubectlOk(['-n', NS, 'patch', 'pod', pod, '--subresource=status', '-p', JSON.stringify({ status: { conditions: [{ type: 'Ready', status }] } })]);

    // vault-2 is not Ready: the rotation must record its first step and wait.
    await setReady('vault-2', 'False');
    await eventually('StatefulSet to see vault-2 NotReady', async () => (await getJson(['-n', NS, 'get', 'statefulset', 'vault'])).status?.readyReplicas === 2);
    await cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { wireguard: { keyGeneration: 2 } } })]);
    // The API server refuses to go back.
    const down = await cp().kubectl(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { wireguard: { keyGeneration: 1 } } })]);
    expect(down.code).not.toBe(0);
    expect(down.stderr).toContain('wireguard.keyGeneration cannot decrease');
    const waiting = await eventually('rotation waiting at vault-0', async () => {
      const o = await vc();
      return o.status?.wireguard?.rotatingOrdinal === 0 && o.status.wireguard.message?.includes('pod vault-2 is not Ready') ? o : undefined;
    }, 60_000);
    expect(waiting.status.wireguard).toMatchObject({ keyGeneration: 1, targetKeyGeneration: 2, step: 'ReplacingKey' });
    expect(cond(waiting, 'Progressing')).toMatchObject({ status: 'True', reason: 'RotatingWireGuardKeys' });

    // Restart the operator while it waits: it resumes from status.wireguard, still waiting.
    await stopOperator(op);
    op = operator('wg-c');
    await eventually('wg-c to lead', async () => op.isLeader(), 30_000);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await vc()).status.wireguard).toMatchObject({ rotatingOrdinal: 0, step: 'ReplacingKey' });
    expect(await keys()).toEqual(before);
    expect((await pods()).map((p) => p.metadata.uid).sort()).toEqual([...uids.values()].sort());

    // vault-2 Ready again: the rotation runs to the end.
    await setReady('vault-2', 'True');
    const done = await eventually('rotation complete', async () => {
      const o = await vc();
      return o.status?.wireguard?.keyGeneration === 2 && o.status.wireguard.rotatingOrdinal === undefined ? o : undefined;
    }, 240_000);
    expect(done.status.wireguard.message).toBe("every pod's WireGuard key is at generation 2");

    const after = await keys();
    for (const k of Object.keys(before)) expect(after[k], k).not.toBe(before[k]);
    const secret = await getJson(['-n', NS, 'get', 'secret', 'vault-wireguard-keys']);
    expect(secret.metadata.annotations['coffer.dev/wireguard-key-generation']).toBe('2');
    expect((await peers()).peers.map((p: any) => p.publicKey)).toEqual([0, 1, 2].map((i) => publicKeyOf(after[`vault-${i}.key`]!)));
    // Every pod was replaced (evicted, then recreated by the StatefulSet controller).
    for (const p of await pods()) expect(p.metadata.uid, p.metadata.name).not.toBe(uids.get(p.metadata.name));

    // The Events, in the order the API server stored them: one pod at a time,
    // each key replaced, its pod evicted and Ready again before the next one.
    const events = (await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster,involvedObject.name=vault'])).items as any[];
    const steps = events
      // A refused eviction (the PodDisruptionBudget's status lagging the pods) is retried; not a step.
      .filter((e) => e.reason.startsWith('WireGuard') && !['WireGuardKeysGenerated', 'WireGuardEvictionRefused'].includes(e.reason))
      .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion))
      .map((e) => `${e.reason}${/vault-\d/.exec(e.message)?.[0] ? ` ${/vault-\d/.exec(e.message)![0]}` : ''}`);
    expect(steps).toEqual([
      'WireGuardKeyRotationStarted vault-0',
      'WireGuardKeyReplaced vault-0', 'WireGuardPodEvicted vault-0', 'WireGuardPodRestarted vault-0',
      'WireGuardKeyReplaced vault-1', 'WireGuardPodEvicted vault-1', 'WireGuardPodRestarted vault-1',
      'WireGuardKeyReplaced vault-2', 'WireGuardPodEvicted vault-2', 'WireGuardPodRestarted vault-2',
      'WireGuardKeyRotationComplete',
    ]);
    const v = await settled(3);
    expect(cond(v, 'Progressing')).toMatchObject({ status: 'False' });
  });

  it('reports an overlay range too small for the replicas as Degraded, creating nothing', async () => {
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'small', namespace: NS },
      spec: { replicas: 3, image: IMAGE, kms: { mode: 'local' }, wireguard: { enabled: true, cidr: '10.78.0.0/30' } },
    }));
    const o = await eventually('small Degraded', async () => {
      const x = await getJson(['-n', NS, 'get', 'vaultcluster', 'small']);
      return cond(x, 'Degraded')?.status === 'True' ? x : undefined;
    }, 60_000);
    expect(cond(o, 'Degraded')).toMatchObject({ reason: 'InvalidSpec' });
    expect(cond(o, 'Degraded').message).toContain('spec.wireguard.cidr: 10.78.0.0/30 has room for 2 pod addresses');
    expect((await cp().kubectl(['-n', NS, 'get', 'statefulset', 'small'])).code).not.toBe(0);
    expect((await cp().kubectl(['-n', NS, 'get', 'secret', 'small-wireguard-keys'])).code).not.toBe(0);
  });
});
