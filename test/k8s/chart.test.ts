// The Helm chart (charts/coffer-operator) against a real control plane:
// `helm install` creates a working CRD, ServiceAccount, RBAC and Deployment;
// the operator, running under the chart's ServiceAccount token (not an admin
// identity), reconciles a VaultCluster with exactly the permissions the chart
// grants; the grants are no wider than that; watchNamespace narrows them to
// one namespace; the CRD survives `helm uninstall`.
//
// helm comes from test/tools/helm.sh (built from its Go module on first use,
// cached outside the checkout), or $COFFER_HELM.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKubeConfig, startOperator, type RunningOperator } from '../../operator/operator.js';
import { OPERATOR_RULES, leaderElectionRules } from '../../operator/rbac.js';
import { SYNC_RULES } from '../../sync/rbac.js';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHART = path.join(ROOT, 'charts', 'coffer-operator');
const OP_NS = 'coffer-system';
const NS = 'vaults';
const OTHER_NS = 'elsewhere';
const SA = `system:serviceaccount:${OP_NS}:coffer-operator`;
const SYNC_SA = `system:serviceaccount:${OP_NS}:coffer-sync`;

const cp = useControlPlane({ nodes: 3 });
let helmBin: string;
let op: RunningOperator | undefined;

function helm(args: string[]): string {
  return execFileSync(helmBin, [...args, '--kubeconfig', cp().kubeconfig], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const getJson = (args: string[]) => kubectlJson(cp(), args);

/** `kubectl auth can-i` as the operator's ServiceAccount; resource `type[.group][/subresource]`. */
async function canI(verb: string, resource: string, namespace?: string, name?: string, as = SA): Promise<boolean> {
  const [type, sub] = resource.split('/') as [string, string | undefined];
  const args = ['auth', 'can-i', verb, name ? `${type}/${name}` : type, '--as', as, '--as-group', 'system:serviceaccounts', '--as-group', `system:serviceaccounts:${OP_NS}`];
  if (sub) args.push(`--subresource=${sub}`);
  args.push(...(namespace ? ['-n', namespace] : ['--all-namespaces']));
  const r = await cp().kubectl(args);
  return r.stdout.trim() === 'yes';
}

/** `resource[.group][/subresource]` as canI() takes it. */
const target = (group: string, resource: string) => {
  const [res, sub] = resource.split('/');
  return `${res}${group ? `.${group}` : ''}${sub ? `/${sub}` : ''}`;
};

beforeAll(async () => {
  helmBin = process.env.COFFER_HELM || execFileSync('bash', [path.join(ROOT, 'test', 'tools', 'helm.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
  for (const ns of [NS, OTHER_NS]) await cp().kubectlOk(['create', 'namespace', ns]);
});

afterAll(async () => {
  await op?.stop();
});

describe('helm chart on a real API server', () => {
  it('installs the CRD, ServiceAccount, RBAC and the operator Deployment', async () => {
    helm(['install', 'coffer-operator', CHART, '--namespace', OP_NS, '--create-namespace',
      '--set', 'image.repository=registry.invalid/coffer', '--set', 'image.tag=1.0.0']);
    await cp().kubectlOk(['wait', '--for=condition=Established', 'crd/vaultclusters.coffer.dev', '--timeout=60s']);
    const crd = await getJson(['get', 'crd', 'vaultclusters.coffer.dev']);
    expect(crd.metadata.annotations['helm.sh/resource-policy']).toBe('keep');
    const dep = await getJson(['-n', OP_NS, 'get', 'deployment', 'coffer-operator']);
    expect(dep.spec.replicas).toBe(2);
    expect(dep.spec.template.spec.containers[0].args).toEqual(['operator', 'run', '--leader-election-name=coffer-operator']);
    await getJson(['-n', OP_NS, 'get', 'serviceaccount', 'coffer-operator']);
    const role = await getJson(['get', 'clusterrole', `${OP_NS}-coffer-operator`]);
    expect(role.rules).toEqual(OPERATOR_RULES.map((r) => ({ ...r })));
    // The API server accepts a VaultCluster through the chart's CRD (and rejects a bad one).
    const bad = await cp().kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'bad', namespace: NS },
      spec: { replicas: 2, image: 'x' },
    }));
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/replicas/);
    // The sync controller and the CofferSecret CRD come with it.
    await cp().kubectlOk(['wait', '--for=condition=Established', 'crd/coffersecrets.coffer.dev', '--timeout=60s']);
    const sync = await getJson(['-n', OP_NS, 'get', 'deployment', 'coffer-sync']);
    expect(sync.spec.replicas).toBe(2);
    expect(sync.spec.template.metadata.labels['app.kubernetes.io/name']).toBe('coffer-sync');
    expect(sync.spec.template.spec.serviceAccountName).toBe('coffer-sync');
    expect((await getJson(['get', 'clusterrole', `${OP_NS}-coffer-sync`])).rules).toEqual(SYNC_RULES.map((r) => ({ ...r })));
    expect((await getJson(['-n', OP_NS, 'get', 'role', 'coffer-sync-leader-election'])).rules).toEqual(leaderElectionRules('coffer-sync').map((r) => ({ ...r })));
  });

  it('runs the operator under the chart ServiceAccount: it reconciles a VaultCluster with the granted rules only', async () => {
    const kubeconfig = await cp().serviceAccountKubeconfig(OP_NS, 'coffer-operator', 3600);
    op = startOperator(loadKubeConfig(kubeconfig), {
      leaderElectionNamespace: OP_NS,
      leaderElectionName: 'coffer-operator',
      identity: 'chart-test',
      resyncPeriodMs: 10_000,
      workers: 2,
      // kwok pods answer nothing; the gate is not what this test is about.
      podHealthUrl: 'http://127.0.0.1:9/{namespace}/{pod}',
      leaseDurationMs: 6_000,
      renewDeadlineMs: 4_000,
      retryPeriodMs: 1_000,
    });
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'vault', namespace: NS },
      spec: { replicas: 3, image: 'registry.invalid/coffer:1.0.0', kms: { mode: 'local' } },
    }));
    // Lease (leader-election Role), StatefulSet/Services/PDB/ServiceAccount (apply), Secrets (create), status, Events.
    const lease = await eventually('the Lease', async () => (await getJson(['-n', OP_NS, 'get', 'lease', 'coffer-operator'])).spec?.holderIdentity);
    expect(lease).toBe('chart-test');
    await eventually('the StatefulSet', async () => (await getJson(['-n', NS, 'get', 'statefulset', 'vault'])).spec.replicas === 3);
    for (const [kind, name] of [['service', 'vault-headless'], ['service', 'vault-client'], ['poddisruptionbudget', 'vault'], ['serviceaccount', 'vault'],
      ['secret', 'vault-bootstrap-token'], ['secret', 'vault-master-key'], ['secret', 'vault-cluster-key']] as const) {
      await eventually(`${kind} ${name}`, async () => (await cp().kubectl(['-n', NS, 'get', kind, name])).code === 0);
    }
    await eventually('status.observedGeneration', async () => (await getJson(['-n', NS, 'get', 'vaultcluster', 'vault'])).status?.observedGeneration === 1);
    await eventually('an Event on the VaultCluster', async () =>
      (await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster'])).items.length > 0);
    await op.stop();
    op = undefined;
  });

  it('grants nothing beyond operator/rbac.ts', async () => {
    for (const r of OPERATOR_RULES) {
      for (const res of r.resources) {
        for (const verb of r.verbs) expect(await canI(verb, target(r.apiGroups[0] ?? '', res), NS), `${verb} ${res}`).toBe(true);
      }
    }
    const denied: [string, string, string?, string?][] = [
      ['patch', 'secrets', NS], ['delete', 'secrets', NS], ['delete', 'configmaps', NS], ['update', 'configmaps', NS],
      ['delete', 'statefulsets.apps', NS], ['delete', 'vaultclusters.coffer.dev', NS], ['update', 'vaultclusters.coffer.dev', NS],
      ['create', 'pods', NS], ['delete', 'pods', NS], ['create', 'pods/exec', NS], ['delete', 'persistentvolumeclaims', NS],
      ['get', 'nodes'], ['create', 'customresourcedefinitions.apiextensions.k8s.io'], ['create', 'clusterroles.rbac.authorization.k8s.io'],
      ['create', 'rolebindings.rbac.authorization.k8s.io', NS], ['create', 'leases.coordination.k8s.io', NS],
      ['update', 'leases.coordination.k8s.io', OP_NS, 'someone-else'], ['delete', 'leases.coordination.k8s.io', OP_NS, 'coffer-operator'],
    ];
    for (const [verb, res, ns, name] of denied) expect(await canI(verb, res, ns, name), `${verb} ${res}${name ? `/${name}` : ''} in ${ns ?? 'cluster'}`).toBe(false);
    // WireGuard: the key Secret is updated; pods are restarted through evictions only.
    expect(await canI('update', 'secrets', NS)).toBe(true);
    expect(await canI('create', 'pods/eviction', NS)).toBe(true);
    expect(await canI('update', 'leases.coordination.k8s.io', OP_NS, 'coffer-operator')).toBe(true);
    expect(await canI('create', 'leases.coordination.k8s.io', OP_NS)).toBe(true);
  });

  it('grants the sync controller sync/rbac.ts and nothing more', async () => {
    for (const r of SYNC_RULES) {
      for (const res of r.resources) {
        for (const verb of r.verbs) expect(await canI(verb, target(r.apiGroups[0] ?? '', res), NS, undefined, SYNC_SA), `sync ${verb} ${res}`).toBe(true);
      }
    }
    for (const [verb, res] of [['update', 'secrets'], ['delete', 'secrets'], ['delete', 'coffersecrets.coffer.dev'], ['list', 'deployments.apps'],
      ['list', 'vaultclusters.coffer.dev'], ['get', 'pods']] as const) {
      expect(await canI(verb, res, NS, undefined, SYNC_SA), `sync ${verb} ${res}`).toBe(false);
    }
    expect(await canI('update', 'leases.coordination.k8s.io', OP_NS, 'coffer-sync', SYNC_SA)).toBe(true);
    expect(await canI('update', 'leases.coordination.k8s.io', OP_NS, 'coffer-operator', SYNC_SA)).toBe(false);
  });

  it('with watchNamespace, confines every grant to that namespace', async () => {
    helm(['upgrade', 'coffer-operator', CHART, '--namespace', OP_NS, '--reuse-values', '--set', `watchNamespace=${NS}`]);
    expect((await cp().kubectl(['get', 'clusterrole', `${OP_NS}-coffer-operator`])).code).not.toBe(0);
    expect(await canI('list', 'vaultclusters.coffer.dev', NS)).toBe(true);
    expect(await canI('create', 'secrets', NS)).toBe(true);
    expect(await canI('list', 'vaultclusters.coffer.dev', OTHER_NS)).toBe(false);
    expect(await canI('get', 'secrets', OTHER_NS)).toBe(false);
    expect(await canI('list', 'secrets')).toBe(false);
    const env = (await getJson(['-n', OP_NS, 'get', 'deployment', 'coffer-operator'])).spec.template.spec.containers[0].env as { name: string; value?: string }[];
    expect(env.find((e) => e.name === 'COFFER_OPERATOR_NAMESPACE')?.value).toBe(NS);
  });

  it('with sync.enabled=false, removes the sync controller and keeps the CofferSecret CRD', async () => {
    helm(['upgrade', 'coffer-operator', CHART, '--namespace', OP_NS, '--reuse-values', '--set', 'sync.enabled=false']);
    expect((await cp().kubectl(['-n', OP_NS, 'get', 'deployment', 'coffer-sync'])).code).not.toBe(0);
    expect((await cp().kubectl(['-n', OP_NS, 'get', 'serviceaccount', 'coffer-sync'])).code).not.toBe(0);
    expect((await cp().kubectl(['get', 'clusterrole', `${OP_NS}-coffer-sync`])).code).not.toBe(0);
    expect((await cp().kubectl(['get', 'crd', 'coffersecrets.coffer.dev'])).code).toBe(0);
  });

  it('keeps the CRD (and so every VaultCluster) on helm uninstall', async () => {
    helm(['uninstall', 'coffer-operator', '--namespace', OP_NS, '--wait']);
    expect((await cp().kubectl(['-n', OP_NS, 'get', 'deployment', 'coffer-operator'])).code).not.toBe(0);
    expect((await cp().kubectl(['get', 'crd', 'vaultclusters.coffer.dev'])).code).toBe(0);
    expect((await cp().kubectl(['-n', NS, 'get', 'vaultcluster', 'vault'])).code).toBe(0);
  });
});
