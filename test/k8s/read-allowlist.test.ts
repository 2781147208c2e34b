// spec.readAllowlistFrom on a real control plane: the operator (in-process,
// under exactly the rules of operator/rbac.ts) keeps the <name>-read-allowlist
// ConfigMap equal to spec.readAllowlist plus the IPs of the Running pods the
// entries select. kwok gives scheduled pods an IP and marks them Running; a
// deleted pod disappears at once. Pods with the same labels in another
// namespace never get in, a deleted pod's address leaves promptly (the pod
// watch, not the resync), and none of this touches the StatefulSet template.
import { describe, expect, it } from 'vitest';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';
import { useOperator } from './harness/use-operator.js';

const NS = 'vaults';
const SYNC_NS = 'sync';
const OTHER_NS = 'attacker';
const IMAGE = 'registry.invalid/coffer:1.0.0';
const SYNC_LABELS = { 'app.kubernetes.io/name': 'coffer-sync' };

const cp = useControlPlane();
const ops = useOperator(cp, { namespace: NS, release: () => '1.0.0' });
const getJson = (args: string[]) => kubectlJson(cp(), args);

function pod(name: string, namespace: string, labels: Record<string, string>) {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels },
    spec: { containers: [{ name: 'c', image: 'registry.invalid/sync:1' }], terminationGracePeriodSeconds: 0 },
  };
}
const apply = (objs: unknown[]) => cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));

async function podIP(namespace: string, name: string): Promise<string> {
  return eventually(`IP of ${namespace}/${name}`, async () => {
    const p = await getJson(['-n', namespace, 'get', 'pod', name]);
    return p.status?.phase === 'Running' && p.status.podIP ? (p.status.podIP as string) : undefined;
  }, 60_000);
}

async function allowlist(): Promise<string | undefined> {
  const r = await cp().kubectl(['-n', NS, 'get', 'configmap', 'vault-read-allowlist', '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout).data?.allowlist as string | undefined) : undefined;
}
const lines = (...l: string[]) => [...l].sort().map((x) => `${x}\n`).join('');

describe('readAllowlistFrom on a real control plane', () => {
  it('the CRD refuses an entry without a namespace or without labels', async () => {
    const base = { apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'bad', namespace: NS }, spec: { image: IMAGE, kms: { mode: 'local' } } };
    const noNs = await cp().kubectl(['apply', '-f', '-'], JSON.stringify({ ...base, spec: { ...base.spec, readAllowlistFrom: [{ podSelector: { matchLabels: SYNC_LABELS } }] } }));
    expect(noNs.code).not.toBe(0);
    expect(noNs.stderr).toContain('namespace');
    const noLabels = await cp().kubectl(['apply', '-f', '-'], JSON.stringify({ ...base, spec: { ...base.spec, readAllowlistFrom: [{ namespace: SYNC_NS, podSelector: { matchLabels: {} } }] } }));
    expect(noLabels.code).not.toBe(0);
    expect(noLabels.stderr).toContain('matchLabels');
  });

  it('lists the selected Running pods of exactly that namespace, drops a deleted pod promptly, and never changes the pod template', async () => {
    await apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYNC_NS } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: OTHER_NS } },
    ]);
    await apply([
      pod('sync-a', SYNC_NS, { ...SYNC_LABELS, 'pod-template-hash': 'a' }),
      pod('sync-b', SYNC_NS, SYNC_LABELS),
      pod('web', SYNC_NS, { 'app.kubernetes.io/name': 'web' }),
      // The attacker's pod: same labels, another namespace.
      pod('evil', OTHER_NS, SYNC_LABELS),
    ]);
    const [a, b, web, evil] = await Promise.all([podIP(SYNC_NS, 'sync-a'), podIP(SYNC_NS, 'sync-b'), podIP(SYNC_NS, 'web'), podIP(OTHER_NS, 'evil')]);

    const op = ops.start('op-a');
    await eventually('op-a to lead', async () => op.isLeader(), 30_000);
    await apply([{
      apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'vault', namespace: NS },
      spec: {
        replicas: 3, image: IMAGE, kms: { mode: 'local' }, readAllowlist: ['192.168.0.0/16'],
        readAllowlistFrom: [{ namespace: SYNC_NS, podSelector: { matchLabels: SYNC_LABELS } }],
      },
    }]);
    const first = await eventually('the allowlist with both sync pods', async () => ((await allowlist()) === lines('192.168.0.0/16', `${a}/32`, `${b}/32`) ? true : undefined), 60_000);
    expect(first).toBe(true);
    const text = (await allowlist())!;
    expect(text).not.toContain(evil);
    expect(text).not.toContain(web);

    const cm = await getJson(['-n', NS, 'get', 'configmap', 'vault-read-allowlist']);
    const v = await getJson(['-n', NS, 'get', 'vaultcluster', 'vault']);
    expect(cm.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'VaultCluster', name: 'vault', uid: v.metadata.uid, controller: true })]);
    const sts = await eventually('the StatefulSet rolled out', async () => {
      const s = await getJson(['-n', NS, 'get', 'statefulset', 'vault']);
      return s.status?.readyReplicas === 3 && s.status.updateRevision === s.status.currentRevision ? s : undefined;
    }, 120_000);
    const vault = sts.spec.template.spec.containers.find((c: any) => c.name === 'vault');
    const env = new Map<string, string>(vault.env.map((e: any) => [e.name, e.value]));
    expect(env.get('VAULT_READ_ALLOWLIST')).toBe('192.168.0.0/16');
    expect(env.get('VAULT_READ_ALLOWLIST_FILE')).toBe('/etc/coffer/read-allowlist/allowlist');
    expect(vault.volumeMounts).toContainEqual({ name: 'read-allowlist', mountPath: '/etc/coffer/read-allowlist', readOnly: true });
    expect(sts.spec.template.spec.volumes).toContainEqual(expect.objectContaining({ name: 'read-allowlist', configMap: expect.objectContaining({ name: 'vault-read-allowlist' }) }));
    const template = JSON.stringify(sts.spec.template);
    const generation = sts.metadata.generation;
    const revision = sts.status.updateRevision;

    // A pod goes: its address leaves by the pod watch, well before the 10 s resync.
    const t0 = Date.now();
    await cp().kubectlOk(['-n', SYNC_NS, 'delete', 'pod', 'sync-a', '--grace-period=0', '--force', '--wait=false']);
    await eventually('sync-a gone from the allowlist', async () => ((await allowlist()) === lines('192.168.0.0/16', `${b}/32`) ? true : undefined), 30_000);
    const removalMs = Date.now() - t0;
    console.log(`[read-allowlist] deleted pod's address removed after ${removalMs} ms`);
    expect(removalMs).toBeLessThan(8_000);

    // A new matching pod comes in; a pod relabelled away leaves.
    await apply([pod('sync-c', SYNC_NS, SYNC_LABELS)]);
    const c = await podIP(SYNC_NS, 'sync-c');
    await eventually('sync-c in the allowlist', async () => ((await allowlist()) === lines('192.168.0.0/16', `${b}/32`, `${c}/32`) ? true : undefined), 30_000);
    await cp().kubectlOk(['-n', SYNC_NS, 'label', 'pod', 'sync-b', 'app.kubernetes.io/name=other', '--overwrite']);
    await eventually('sync-b gone after relabelling', async () => ((await allowlist()) === lines('192.168.0.0/16', `${c}/32`) ? true : undefined), 30_000);
    // The attacker's pod is still there and still not listed.
    expect((await getJson(['-n', OTHER_NS, 'get', 'pod', 'evil'])).status.podIP).toBe(evil);
    expect(await allowlist()).not.toContain(evil);

    // None of it touched the pods: same template, generation and revision.
    const after = await getJson(['-n', NS, 'get', 'statefulset', 'vault']);
    expect(JSON.stringify(after.spec.template)).toBe(template);
    expect(after.metadata.generation).toBe(generation);
    expect(after.status.updateRevision).toBe(revision);
    await ops.stop(op);
  });
});
