// The operator against a real control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok), running in-process under a
// client-cert identity bound to exactly the rules in operator/rbac.ts (not
// cluster-admin). kwok marks pods Ready; their /v1/health is a local stub
// the operator reaches through --pod-health-url, reporting whatever release
// each test says.
import { describe, expect, it } from 'vitest';
import type { RunningOperator } from '../../operator/operator.js';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';
import { OPERATOR_NAMESPACE as OP_NS, useOperator } from './harness/use-operator.js';

const NS = 'vaults';
const IMAGE = 'registry.invalid/coffer:1.0.0';

const cp = useControlPlane();
/** pod name -> version its /v1/health reports (default 1.0.0); null = unreachable. */
const releases = new Map<string, string | null>();
const ops = useOperator(cp, { namespace: NS, release: (pod) => (releases.has(pod) ? releases.get(pod) ?? null : '1.0.0') });
const operator = (identity: string) => ops.start(identity);
const stopOperator = (op: RunningOperator) => ops.stop(op);

const getJson = (args: string[]) => kubectlJson(cp(), args);

async function vc(): Promise<any> {
  return getJson(['-n', NS, 'get', 'vaultcluster', 'vault']);
}

function cluster(spec: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'coffer.dev/v1alpha1',
    kind: 'VaultCluster',
    metadata: { name: 'vault', namespace: NS },
    spec: { replicas: 3, image: IMAGE, kms: { mode: 'local' }, ...spec },
  });
}

const cond = (obj: any, type: string) => obj.status?.conditions?.find((c: any) => c.type === type);
const flagOf = (sts: any) => sts.spec.template.spec.containers.find((c: any) => c.name === 'vault').env.find((e: any) => e.name === 'VAULT_KMS_REWRAP_ENABLED')?.value;

describe('coffer operator on a real control plane', () => {
  let op: RunningOperator;

  it('rejects an invalid VaultCluster at the CRD schema', async () => {
    const bad = await cp().kubectl(['apply', '-f', '-'], cluster({ replicas: 4 }));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/replicas/);
    const aws = await cp().kubectl(['apply', '-f', '-'], cluster({ kms: { mode: 'aws' } }));
    expect(aws.code).not.toBe(0);
    expect(aws.stderr).toContain('kms.keyId is required when kms.mode is aws');
    // The server would refuse to start: the API server refuses the object instead.
    const proxy = await cp().kubectl(['apply', '-f', '-'], cluster({ trustProxy: true }));
    expect(proxy.code).not.toBe(0);
    expect(proxy.stderr).toContain('spec.trustedProxies');
    expect(proxy.stderr).toContain('trustedProxies is required when trustProxy is true');
    const named = await cp().kubectl(['apply', '-f', '-'], cluster({ trustProxy: true, trustedProxies: ['ingress.example'] }));
    expect(named.code).not.toBe(0);
    expect(named.stderr).toContain('spec.trustedProxies[0]');
  });

  it('creates every object for a new VaultCluster, with owner references, and reports status', async () => {
    op = operator('op-a');
    await eventually('op-a to lead', async () => op.isLeader(), 30_000);
    await cp().kubectlOk(['apply', '-f', '-'], cluster());
    const v = await eventually('VaultCluster Ready and Idle', async () => {
      const o = await vc();
      return cond(o, 'Ready')?.status === 'True' && o.status?.rollout?.phase === 'Idle' ? o : undefined;
    });
    for (const [kind, name] of [['serviceaccount', 'vault'], ['service', 'vault-headless'], ['service', 'vault-client'], ['statefulset', 'vault'], ['poddisruptionbudget', 'vault']]) {
      const o = await getJson(['-n', NS, 'get', kind!, name!, '--show-managed-fields']);
      expect(o.metadata.ownerReferences, `${kind}/${name}`).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', uid: v.metadata.uid, controller: true })]);
      expect(o.metadata.managedFields.map((f: any) => f.manager)).toContain('coffer-operator');
    }
    for (const s of ['vault-bootstrap-token', 'vault-master-key', 'vault-cluster-key']) expect((await getJson(['-n', NS, 'get', 'secret', s])).immutable).toBe(true);
    // Every pod reads the same cluster key from that Secret (Raft traffic is refused without it).
    const sts = await getJson(['-n', NS, 'get', 'statefulset', 'vault']);
    const vaultEnv = sts.spec.template.spec.containers.find((c: any) => c.name === 'vault').env;
    expect(vaultEnv.find((e: any) => e.name === 'VAULT_CLUSTER_KEY')?.valueFrom?.secretKeyRef).toEqual({ name: 'vault-cluster-key', key: 'cluster-key', optional: false });
    // The pods answer to the Services' and their own DNS names (the server's Host check).
    expect(vaultEnv[0].name).toBe('VAULT_NODE_ID');
    expect(vaultEnv.find((e: any) => e.name === 'VAULT_API_HOSTNAMES')?.value.split(',')).toEqual([
      'vault-client', `vault-client.${NS}`, `vault-client.${NS}.svc`, `vault-client.${NS}.svc.cluster.local`,
      'vault-headless', `vault-headless.${NS}`, `vault-headless.${NS}.svc`, `vault-headless.${NS}.svc.cluster.local`,
      '$(VAULT_NODE_ID).vault-headless', `$(VAULT_NODE_ID).vault-headless.${NS}`,
      `$(VAULT_NODE_ID).vault-headless.${NS}.svc`, `$(VAULT_NODE_ID).vault-headless.${NS}.svc.cluster.local`,
    ]);
    expect(vaultEnv.find((e: any) => e.name === 'VAULT_TRUSTED_PROXIES')?.value ?? '').toBe('');
    const ck = await getJson(['-n', NS, 'get', 'secret', 'vault-cluster-key']);
    expect(Buffer.from(Buffer.from(ck.data['cluster-key'], 'base64').toString(), 'base64')).toHaveLength(32);
    expect(v.status).toMatchObject({ observedGeneration: v.metadata.generation, readyReplicas: 3, leader: 'vault-0' });
    expect(cond(v, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutFinished' });
    expect(cond(v, 'Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    expect(cond(v, 'RewrapEnabled')).toMatchObject({ status: 'False', reason: 'Disabled' });
    const events = await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster,involvedObject.name=vault']);
    const reasons = events.items.map((e: any) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['SecretGenerated', 'Created', 'RolloutStarted', 'RolloutComplete', 'Ready']));
  });

  it('keeps the bootstrap and cluster-key Secrets unchanged across reconciles and an operator restart; brings back a deleted object', async () => {
    const before = await getJson(['-n', NS, 'get', 'secret', 'vault-bootstrap-token']);
    const keyBefore = await getJson(['-n', NS, 'get', 'secret', 'vault-cluster-key']);
    const readyTime = cond(await vc(), 'Ready').lastTransitionTime;
    // Touch the VaultCluster to force reconciles.
    for (let i = 0; i < 3; i++) await cp().kubectlOk(['-n', NS, 'annotate', 'vaultcluster', 'vault', `test/touch=${i}`, '--overwrite']);
    await stopOperator(op);
    op = operator('op-a2');
    await eventually('op-a2 to lead', async () => op.isLeader(), 30_000);
    const svc = await getJson(['-n', NS, 'get', 'service', 'vault-client']);
    await cp().kubectlOk(['-n', NS, 'delete', 'service', 'vault-client']);
    const back = await eventually('vault-client to come back', async () => {
      const r = await cp().kubectl(['-n', NS, 'get', 'service', 'vault-client', '-o', 'json']);
      if (r.code !== 0) return undefined;
      const o = JSON.parse(r.stdout);
      return o.metadata.uid !== svc.metadata.uid ? o : undefined;
    }, 60_000);
    expect(back.metadata.ownerReferences[0].kind).toBe('VaultCluster');
    const after = await getJson(['-n', NS, 'get', 'secret', 'vault-bootstrap-token']);
    expect(after.data).toEqual(before.data);
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    const keyAfter = await getJson(['-n', NS, 'get', 'secret', 'vault-cluster-key']);
    expect(keyAfter.data).toEqual(keyBefore.data);
    expect(keyAfter.metadata.resourceVersion).toBe(keyBefore.metadata.resourceVersion);
    expect(cond(await vc(), 'Ready').lastTransitionTime).toBe(readyTime);
  });

  it('rolls out the rotation flag through the gate, surviving an operator restart mid-way', async () => {
    // One pod still reports an older release: the gate must hold.
    releases.set('vault-2', '0.9.0');
    await cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { kms: { rewrap: { enabled: true } } } })]);
    const waiting = await eventually('WaitingForGate', async () => {
      const o = await vc();
      return o.status?.rollout?.phase === 'WaitingForGate' && o.status.observedGeneration === o.metadata.generation ? o : undefined;
    }, 60_000);
    expect(waiting.status.rollout.message).toContain('pod vault-2 reports release 0.9.0, want 1.0.0');
    expect(flagOf(await getJson(['-n', NS, 'get', 'statefulset', 'vault']))).toBe('false');

    // Restart the operator in the middle.
    await stopOperator(op);
    op = operator('op-b');
    await eventually('op-b to lead', async () => op.isLeader(), 30_000);
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await vc()).status.rollout.phase).toBe('WaitingForGate');
    expect(flagOf(await getJson(['-n', NS, 'get', 'statefulset', 'vault']))).toBe('false');

    releases.delete('vault-2');
    const phases = new Set<string>();
    const done = await eventually('Complete', async () => {
      const o = await vc();
      phases.add(o.status?.rollout?.phase);
      return o.status?.rollout?.phase === 'Complete' ? o : undefined;
    }, 180_000);
    const sts = await getJson(['-n', NS, 'get', 'statefulset', 'vault']);
    expect(flagOf(sts)).toBe('true');
    expect(sts.status.updateRevision).toBe(sts.status.currentRevision);
    expect(sts.status.readyReplicas).toBe(3);
    expect(sts.status.updatedReplicas).toBe(3);
    expect(cond(done, 'RewrapEnabled')).toMatchObject({ status: 'True', reason: 'RewrapActive' });
    const events = await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster,involvedObject.name=vault']);
    expect(events.items.map((e: any) => e.reason)).toEqual(expect.arrayContaining(['WaitingForGate', 'GatePassed', 'RollingOutFlagOn', 'RewrapEnabled']));

    // Disabling takes effect at once.
    await cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { kms: { rewrap: { enabled: false } } } })]);
    await eventually('flag off in the template', async () => flagOf(await getJson(['-n', NS, 'get', 'statefulset', 'vault'])) === 'false', 30_000);
  });

  it('two operator replicas: exactly one leads, the other takes over when it stops', async () => {
    const other = operator('op-c');
    await new Promise((r) => setTimeout(r, 4_000));
    expect([op.isLeader(), other.isLeader()]).toEqual([true, false]);
    const lease = await getJson(['-n', OP_NS, 'get', 'lease', 'coffer-operator']);
    expect(lease.spec.holderIdentity).toBe('op-b');
    await stopOperator(op);
    await eventually('op-c to lead', async () => other.isLeader(), 30_000);
    expect((await getJson(['-n', OP_NS, 'get', 'lease', 'coffer-operator'])).spec.holderIdentity).toBe('op-c');
    // The new leader acts.
    const svc = await getJson(['-n', NS, 'get', 'serviceaccount', 'vault']);
    await cp().kubectlOk(['-n', NS, 'delete', 'serviceaccount', 'vault']);
    await eventually('ServiceAccount back', async () => {
      const r = await cp().kubectl(['-n', NS, 'get', 'serviceaccount', 'vault', '-o', 'json']);
      return r.code === 0 && JSON.parse(r.stdout).metadata.uid !== svc.metadata.uid;
    }, 60_000);
    op = other;
  });

  it('refuses turning trustProxy on without trustedProxies; with them, the pods get VAULT_TRUSTED_PROXIES', async () => {
    const envOf = async () => new Map<string, string>(
      (await getJson(['-n', NS, 'get', 'statefulset', 'vault'])).spec.template.spec.containers.find((c: any) => c.name === 'vault').env.map((e: any) => [e.name, e.value]),
    );
    const alone = await cp().kubectl(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { trustProxy: true } })]);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toContain('spec.trustedProxies');
    expect(alone.stderr).toContain('trustedProxies is required when trustProxy is true');
    expect((await vc()).spec.trustProxy).toBe(false);
    await cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { trustProxy: true, trustedProxies: ['10.42.0.0/16', '10.9.8.7'] } })]);
    const env = await eventually('VAULT_TRUSTED_PROXIES in the pod template', async () => {
      const e = await envOf();
      return e.get('VAULT_TRUST_PROXY') === 'true' ? e : undefined;
    }, 30_000);
    expect(env.get('VAULT_TRUSTED_PROXIES')).toBe('10.42.0.0/16,10.9.8.7');
  });
});
