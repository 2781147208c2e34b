// The Helm chart in charts/coffer-operator.
//
// Always: the generated parts are current (CRD copy byte-identical to crds/,
// RBAC rules exactly operator/rbac.ts's, versions from package.json),
// values.yaml parses and every value is documented in the chart's README.
//
// With helm (found in $COFFER_HELM, in test/tools/helm.sh's cache, or on
// PATH): `helm lint --strict` and `helm template` with several value sets,
// checking the objects that matter. Without helm these are skipped (set
// COFFER_REQUIRE_HELM=1 to fail instead); `bash test/tools/helm.sh` builds it.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { OPERATOR_RULES, leaderElectionRules, type PolicyRule } from '../../../operator/rbac.js';
import { SYNC_RULES } from '../../../sync/rbac.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHART = path.join(ROOT, 'charts', 'coffer-operator');
const CRD_SOURCE = path.join(ROOT, 'crds', 'vaultclusters.coffer.dev.yaml');
const CRD_COPY = path.join(CHART, 'files', 'crds', 'vaultclusters.coffer.dev.yaml');
const SYNC_CRD_SOURCE = path.join(ROOT, 'crds', 'coffersecrets.coffer.dev.yaml');
const SYNC_CRD_COPY = path.join(CHART, 'files', 'crds', 'coffersecrets.coffer.dev.yaml');

// Rendered Kubernetes objects, read loosely.
type Obj = Record<string, any>;
// charts/generate.mjs (a plain ESM script, typed here by hand).
interface Generator {
  LEASE_PLACEHOLDER: string;
}
const generatorUrl = pathToFileURL(path.join(ROOT, 'charts', 'generate.mjs')).href;
const gen = (await import(generatorUrl)) as Generator;

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findHelm(): string | null {
  const env = process.env.COFFER_HELM;
  if (env) return env;
  const cached = spawnSync('bash', [path.join(ROOT, 'test', 'tools', 'helm.sh'), '--print-path'], { encoding: 'utf8' });
  const cachedPath = cached.stdout.trim();
  if (cached.status === 0 && cachedPath && isExecutable(cachedPath)) return cachedPath;
  const onPath = spawnSync('helm', ['version', '--short'], { encoding: 'utf8' });
  return onPath.status === 0 ? 'helm' : null;
}

const HELM = findHelm();
if (!HELM) {
  const msg = 'helm not found ($COFFER_HELM, test/tools/helm.sh cache, PATH): helm lint/template checks skipped; build it with `bash test/tools/helm.sh`';
  if (process.env.COFFER_REQUIRE_HELM === '1') throw new Error(msg);
  console.warn(msg);
}

/** Every `a.b.c` leaf path of values.yaml (maps descended, lists and empty maps are leaves). */
function leafPaths(node: unknown, prefix = ''): string[] {
  if (node === null || typeof node !== 'object' || Array.isArray(node) || Object.keys(node).length === 0) return [prefix];
  return Object.entries(node as Obj).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

describe('chart: generated parts and documentation', () => {
  it('ships a byte-for-byte copy of crds/vaultclusters.coffer.dev.yaml (run npm run gen:chart)', () => {
    expect(existsSync(CRD_COPY)).toBe(true);
    expect(readFileSync(CRD_COPY, 'utf8')).toBe(readFileSync(CRD_SOURCE, 'utf8'));
  });

  it('ships a byte-for-byte copy of crds/coffersecrets.coffer.dev.yaml (run npm run gen:chart)', () => {
    expect(readFileSync(SYNC_CRD_COPY, 'utf8')).toBe(readFileSync(SYNC_CRD_SOURCE, 'utf8'));
  });

  it('renders, in templates/_sync-rbac-rules.tpl, exactly the rules of sync/rbac.ts', () => {
    const tpl = readFileSync(path.join(CHART, 'templates', '_sync-rbac-rules.tpl'), 'utf8');
    const define = (name: string): PolicyRule[] => {
      const m = new RegExp(`{{- define "${name}" -}}\\n([\\s\\S]*?)\\n{{- end }}`).exec(tpl);
      expect(m, name).not.toBeNull();
      return parse((m as RegExpExecArray)[1]!.replaceAll('{{ .Values.sync.leaseName | quote }}', '"the-lease"')) as PolicyRule[];
    };
    expect(tpl).toContain('from sync/rbac.ts.');
    expect(define('coffer-operator.syncRules')).toEqual(SYNC_RULES);
    expect(define('coffer-operator.syncLeaseRules')).toEqual(leaderElectionRules('the-lease'));
    expect(tpl).not.toContain(gen.LEASE_PLACEHOLDER);
  });

  it('has every generated file up to date (charts/generate.mjs --check)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'charts', 'generate.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr + r.stdout).toContain('up to date');
    expect(r.status).toBe(0);
  });

  it('renders, in templates/_rbac-rules.tpl, exactly the rules of operator/rbac.ts', () => {
    const tpl = readFileSync(path.join(CHART, 'templates', '_rbac-rules.tpl'), 'utf8');
    const define = (name: string): PolicyRule[] => {
      const m = new RegExp(`{{- define "${name}" -}}\\n([\\s\\S]*?)\\n{{- end }}`).exec(tpl);
      expect(m, name).not.toBeNull();
      // The Lease name is a template expression; put a plain name in its place to parse the YAML.
      return parse((m as RegExpExecArray)[1]!.replaceAll('{{ include "coffer-operator.leaseName" . | quote }}', '"the-lease"')) as PolicyRule[];
    };
    expect(tpl).toContain('from operator/rbac.ts.');
    expect(define('coffer-operator.rules')).toEqual(OPERATOR_RULES);
    expect(define('coffer-operator.leaseRules')).toEqual(leaderElectionRules('the-lease'));
    expect(tpl).not.toContain(gen.LEASE_PLACEHOLDER);
  });

  it('grants least privilege: no wildcards, nothing cluster-scoped, no escalation, no Secret patch or delete', () => {
    for (const r of [...OPERATOR_RULES, ...leaderElectionRules()]) {
      for (const list of [r.verbs, r.resources, r.apiGroups]) expect(list).not.toContain('*');
      for (const res of r.resources) {
        expect(['namespaces', 'nodes', 'customresourcedefinitions', 'clusterroles', 'clusterrolebindings', 'roles', 'rolebindings', 'pods/exec']).not.toContain(res);
      }
      for (const v of ['escalate', 'bind', 'impersonate', 'deletecollection']) expect(r.verbs).not.toContain(v);
    }
    const secrets = OPERATOR_RULES.filter((r) => r.apiGroups.includes('') && r.resources.includes('secrets'));
    // update: the WireGuard key Secret only (the other generated Secrets are immutable).
    expect(secrets.flatMap((r) => r.verbs).filter((v) => ['update', 'patch', 'delete'].includes(v))).toEqual(['update']);
  });

  it('keeps Chart.yaml on the package version', () => {
    const chart = parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as Obj;
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart.apiVersion).toBe('v2');
    expect(chart.name).toBe('coffer-operator');
    expect(chart.version).toBe(pkg.version);
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('documents every value in the chart README, with secure defaults in values.yaml', () => {
    const values = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Obj;
    const readme = readFileSync(path.join(CHART, 'README.md'), 'utf8');
    const documented = new Set([...readme.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]));
    const missing = leafPaths(values).filter((p) => {
      // A documented parent (e.g. `resources`, `podSecurityContext`) covers its children.
      const parts = p.split('.');
      return !parts.some((_, i) => documented.has(parts.slice(0, i + 1).join('.')));
    });
    expect(missing).toEqual([]);
    expect(values.replicas).toBe(2);
    expect(values.installCRDs).toBe(true);
    expect(values.watchNamespace).toBe('');
    expect(values.podSecurityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001 });
    expect(values.securityContext).toMatchObject({
      runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] },
    });
  });
});

// ---------------------------------------------------------------- helm

function helm(args: string[]): string {
  return execFileSync(HELM as string, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** `helm template` → objects (comments and empty documents dropped). */
function renderAll(set: Record<string, string> = {}, namespace = 'coffer-system', release = 'coffer-operator'): Obj[] {
  const args = ['template', release, CHART, '--namespace', namespace];
  for (const [k, v] of Object.entries(set)) args.push('--set', `${k}=${v}`);
  return parseAllDocuments(helm(args)).map((d) => d.toJS() as Obj).filter((o) => o !== null && typeof o === 'object');
}

/** The operator's objects only: without the sync controller's and the CofferSecret CRD. */
function render(set: Record<string, string> = {}, namespace?: string, release?: string): Obj[] {
  return renderAll(set, namespace, release).filter(
    (o) => o.metadata?.labels?.['app.kubernetes.io/name'] !== 'coffer-sync' && o.metadata?.name !== 'coffersecrets.coffer.dev',
  );
}

function renderError(set: Record<string, string>): string {
  const args = ['template', 'coffer-operator', CHART, '--namespace', 'coffer-system'];
  for (const [k, v] of Object.entries(set)) args.push('--set', `${k}=${v}`);
  const r = spawnSync(HELM as string, args, { cwd: ROOT, encoding: 'utf8' });
  expect(r.status).not.toBe(0);
  return r.stderr;
}

const find = (objs: Obj[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
const one = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = find(objs, kind, name);
  expect(found, `${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0] as Obj;
};

describe.skipIf(!HELM)('chart: helm lint and template', () => {
  it('passes helm lint --strict', () => {
    const out = helm(['lint', '--strict', CHART]);
    expect(out).toContain('0 chart(s) failed');
  });

  it('installs the operator with defaults: Deployment, ServiceAccount, ClusterRole + binding, Lease Role, CRD', () => {
    const objs = render();
    expect(objs.map((o) => o.kind).sort()).toEqual(
      ['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'Deployment', 'Role', 'RoleBinding', 'ServiceAccount'].sort(),
    );
    const dep = one(objs, 'Deployment', 'coffer-operator');
    expect(dep.metadata.namespace).toBe('coffer-system');
    expect(dep.spec.replicas).toBe(2);
    const pod = dep.spec.template.spec;
    expect(pod.serviceAccountName).toBe('coffer-operator');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
    const c = pod.containers[0];
    expect(c.image).toBe(`coffer:${(parse(readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')) as Obj).appVersion}`);
    expect(c.args).toEqual(['operator', 'run', '--leader-election-name=coffer-operator']);
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] },
    });
    expect(c.livenessProbe).toBeUndefined();
    expect(c.readinessProbe).toBeUndefined();
    const env = Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom]));
    expect(env).toEqual({
      COFFER_OPERATOR_LEADER_ELECTION_NAMESPACE: 'coffer-system',
      COFFER_OPERATOR_LOG_LEVEL: 'info',
      POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
      POD_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
    expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(one(objs, 'ServiceAccount', 'coffer-operator').metadata.namespace).toBe('coffer-system');
  });

  it('binds operator/rbac.ts\'s rules cluster-wide when watchNamespace is empty', () => {
    const objs = render();
    const role = one(objs, 'ClusterRole');
    expect(role.rules).toEqual(OPERATOR_RULES);
    const binding = one(objs, 'ClusterRoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'coffer-operator', namespace: 'coffer-system' }]);
  });

  it('confines the rules to watchNamespace with a Role when it is set', () => {
    const objs = render({ watchNamespace: 'apps' });
    expect(find(objs, 'ClusterRole')).toHaveLength(0);
    expect(find(objs, 'ClusterRoleBinding')).toHaveLength(0);
    const role = one(objs, 'Role', 'coffer-operator');
    expect(role.metadata.namespace).toBe('apps');
    expect(role.rules).toEqual(OPERATOR_RULES);
    const binding = one(objs, 'RoleBinding', 'coffer-operator');
    expect(binding.metadata.namespace).toBe('apps');
    expect(binding.roleRef.kind).toBe('Role');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'coffer-operator', namespace: 'coffer-system' }]);
    const env = Object.fromEntries((one(objs, 'Deployment').spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
    expect(env.COFFER_OPERATOR_NAMESPACE).toBe('apps');
  });

  it('grants the Lease in the release namespace with operator/rbac.ts\'s leaderElectionRules()', () => {
    const objs = render({ 'leaderElection.leaseName': 'my-lease' });
    const role = one(objs, 'Role', 'coffer-operator-leader-election');
    expect(role.metadata.namespace).toBe('coffer-system');
    expect(role.rules).toEqual(leaderElectionRules('my-lease'));
    const binding = one(objs, 'RoleBinding', 'coffer-operator-leader-election');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'coffer-operator-leader-election' });
    expect(one(objs, 'Deployment').spec.template.spec.containers[0].args).toContain('--leader-election-name=my-lease');
    const moved = render({ 'leaderElection.namespace': 'ops' });
    expect(one(moved, 'Role', 'coffer-operator-leader-election').metadata.namespace).toBe('ops');
    expect(one(moved, 'RoleBinding', 'coffer-operator-leader-election').subjects[0].namespace).toBe('coffer-system');
    const env = one(moved, 'Deployment').spec.template.spec.containers[0].env as Obj[];
    expect(env.find((e) => e.name === 'COFFER_OPERATOR_LEADER_ELECTION_NAMESPACE')?.value).toBe('ops');
  });

  it('renders the CRD from the repository file, kept on uninstall', () => {
    const crd = one(render(), 'CustomResourceDefinition', 'vaultclusters.coffer.dev');
    const source = parse(readFileSync(CRD_SOURCE, 'utf8')) as Obj;
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(crd.metadata.labels).toMatchObject(source.metadata.labels);
    expect(crd.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
    expect(crd.spec).toEqual(source.spec);
    expect(find(render({ installCRDs: 'false' }), 'CustomResourceDefinition')).toHaveLength(0);
    expect(one(render({ keepCRDs: 'false' }), 'CustomResourceDefinition').metadata.annotations).toBeUndefined();
  });

  it('honours image, scheduling, probes, serviceAccount and health-URL values', () => {
    const objs = render({
      'image.repository': 'registry.example/coffer',
      'image.digest': 'sha256:' + 'a'.repeat(64),
      'nodeSelector.pool': 'system',
      'serviceAccount.create': 'false',
      'serviceAccount.name': 'existing',
      podHealthUrl: 'http://127.0.0.1:9999/{namespace}/{pod}',
      'readinessProbe.tcpSocket.port': '1',
      'extraArgs[0]': '--workers=4',
    });
    expect(find(objs, 'ServiceAccount')).toHaveLength(0);
    const pod = one(objs, 'Deployment').spec.template.spec;
    expect(pod.serviceAccountName).toBe('existing');
    expect(pod.nodeSelector).toEqual({ pool: 'system' });
    const c = pod.containers[0];
    expect(c.image).toBe(`registry.example/coffer@sha256:${'a'.repeat(64)}`);
    expect(c.readinessProbe).toEqual({ tcpSocket: { port: 1 } });
    expect(c.args).toEqual(['operator', 'run', '--leader-election-name=coffer-operator', '--workers=4']);
    expect((c.env as Obj[]).find((e) => e.name === 'COFFER_OPERATOR_POD_HEALTH_URL')?.value).toBe('http://127.0.0.1:9999/{namespace}/{pod}');
    expect(one(objs, 'ClusterRoleBinding').subjects[0].name).toBe('existing');
  });

  it('refuses value combinations that would install a broken operator', () => {
    expect(renderError({ 'serviceAccount.create': 'false' })).toContain('serviceAccount.name is required');
    expect(renderError({ watchNamespace: 'Not_A_Namespace' })).toContain('is not a namespace name');
    // rbac.create=false: no RBAC objects at all.
    const noRbac = render({ 'rbac.create': 'false' });
    expect(noRbac.filter((o) => /Role/.test(o.kind as string))).toEqual([]);
  });
});

describe.skipIf(!HELM)('chart: the sync controller', () => {
  const isSync = (o: Obj) => o.metadata?.labels?.['app.kubernetes.io/name'] === 'coffer-sync';

  it('installs Deployment, ServiceAccount, ClusterRole + binding and Lease Role coffer-sync by default', () => {
    const objs = renderAll().filter(isSync);
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ClusterRole/coffer-system-coffer-sync', 'ClusterRoleBinding/coffer-system-coffer-sync', 'Deployment/coffer-sync',
      'Role/coffer-sync-leader-election', 'RoleBinding/coffer-sync-leader-election', 'ServiceAccount/coffer-sync',
    ]);
    const dep = one(objs, 'Deployment', 'coffer-sync');
    expect(dep.metadata.namespace).toBe('coffer-system');
    expect(dep.spec.replicas).toBe(2);
    expect(dep.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'coffer-sync', 'app.kubernetes.io/instance': 'coffer-operator' });
    const pod = dep.spec.template.spec;
    expect(pod.serviceAccountName).toBe('coffer-sync');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    const c = pod.containers[0];
    expect(c.args).toEqual(['sync', 'run', '--lease-namespace=$(POD_NAMESPACE)', '--lease-name=coffer-sync', '--metrics-addr=0.0.0.0:9090']);
    expect(Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e.valueFrom]))).toEqual({
      POD_NAME: { fieldRef: { fieldPath: 'metadata.name' } },
      POD_NAMESPACE: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.ports).toEqual([{ name: 'metrics', containerPort: 9090, protocol: 'TCP' }]);
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(c.resources).toBeDefined();
    expect(one(objs, 'ClusterRole').rules).toEqual(SYNC_RULES);
    expect(one(objs, 'ClusterRoleBinding').subjects).toEqual([{ kind: 'ServiceAccount', name: 'coffer-sync', namespace: 'coffer-system' }]);
    const lease = one(objs, 'Role', 'coffer-sync-leader-election');
    expect(lease.metadata.namespace).toBe('coffer-system');
    expect(lease.rules).toEqual(leaderElectionRules('coffer-sync'));
  });

  it('installs the CofferSecret CRD beside the VaultCluster one, following installCRDs and keepCRDs', () => {
    const crd = one(renderAll(), 'CustomResourceDefinition', 'coffersecrets.coffer.dev');
    expect(crd.spec).toEqual((parse(readFileSync(SYNC_CRD_SOURCE, 'utf8')) as Obj).spec);
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(find(renderAll({ installCRDs: 'false' }), 'CustomResourceDefinition')).toHaveLength(0);
    expect(find(renderAll({ keepCRDs: 'false' }), 'CustomResourceDefinition').map((c) => c.metadata.annotations)).toEqual([undefined, undefined]);
  });

  it('renders no sync object with sync.enabled=false', () => {
    const objs = renderAll({ 'sync.enabled': 'false' });
    expect(objs.filter(isSync)).toEqual([]);
    expect(objs.filter((o) => /coffer-sync/.test(JSON.stringify(o.metadata)))).toEqual([]);
  });

  it('honours replicas, lease name, metrics port and watchNamespace (a Role there instead of the ClusterRole)', () => {
    const objs = renderAll({
      'sync.replicas': '3', 'sync.leaseName': 'other', 'sync.metricsPort': '9191', 'sync.watchNamespace': 'apps',
    }).filter(isSync);
    const dep = one(objs, 'Deployment', 'coffer-sync');
    expect(dep.spec.replicas).toBe(3);
    expect(dep.spec.template.spec.containers[0].args).toEqual([
      'sync', 'run', '--lease-namespace=$(POD_NAMESPACE)', '--lease-name=other', '--metrics-addr=0.0.0.0:9191', '--namespace=apps',
    ]);
    expect(find(objs, 'ClusterRole')).toHaveLength(0);
    const role = one(objs, 'Role', 'coffer-sync');
    expect(role.metadata.namespace).toBe('apps');
    expect(role.rules).toEqual(SYNC_RULES);
    expect(one(objs, 'Role', 'coffer-sync-leader-election').rules).toEqual(leaderElectionRules('other'));
    expect(renderError({ 'sync.watchNamespace': 'Bad_NS' })).toContain('sync.watchNamespace');
  });
});
