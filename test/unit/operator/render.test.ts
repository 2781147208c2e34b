import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { OPERATOR_HELP, RENDER_HELP, operatorCommand, type RenderIO } from '../../../operator/cli/render.js';

const GOOD = `
apiVersion: coffer.dev/v1alpha1
kind: VaultCluster
metadata:
  name: vault
  namespace: secrets
spec:
  replicas: 3
  image: registry.example/coffer:1.0.0
  readAllowlist: ["10.0.0.0/8"]
  kms:
    mode: local
  tls:
    secretName: vault-tls
`;

function run(argv: { positionals: string[]; flags?: Record<string, string | true> }, files: Record<string, string> = {}, stdin = '') {
  let stdout = '';
  let stderr = '';
  const io: RenderIO = {
    stdout: (t) => { stdout += t; },
    stderr: (t) => { stderr += t; },
    readFile: (p) => {
      const text = files[p];
      if (text === undefined) throw new Error(`ENOENT: no such file '${p}'`);
      return text;
    },
    readStdin: () => stdin,
  };
  const code = operatorCommand(argv.positionals, new Map(Object.entries(argv.flags ?? {})), io);
  return { code, stdout, stderr };
}

describe('coffer operator render', () => {
  it('prints every object as multi-document YAML', () => {
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': GOOD });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string; namespace: string } } | null);
    const objects = docs.filter((d) => d !== null);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ConfigMap/vault-members', 'ServiceAccount/vault', 'Service/vault-headless', 'Service/vault-client', 'StatefulSet/vault', 'PodDisruptionBudget/vault',
    ]);
    for (const o of objects) expect(o.metadata.namespace).toBe('secrets');
  });

  it('shows Secrets as references only, never values', () => {
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': GOOD });
    expect(r.stdout).toContain('# Secrets are never rendered with values');
    expect(r.stdout).toContain('Secret secrets/vault-bootstrap-token, key "token"');
    expect(r.stdout).toContain('Secret secrets/vault-master-key, key "master-key"');
    expect(r.stdout).toContain('Secret secrets/vault-cluster-key, key "cluster-key": cluster key authenticating Raft traffic');
    expect(r.stdout).toContain('Secret secrets/vault-tls');
    expect(r.stdout).not.toMatch(/^kind: Secret$/m);
    expect(r.stdout).not.toMatch(/^\s*stringData:/m);
    // The only data: the declared Raft members (addresses, nothing secret).
    const withData = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).filter((o) => o?.data !== undefined);
    expect(withData.map((o) => `${o!.kind}/${o!.metadata.name}`)).toEqual(['ConfigMap/vault-members']);
    expect(withData[0]!.data.members).toBe([0, 1, 2].map((i) => `vault-${i}=vault-${i}.vault-headless.secrets.svc:8201\n`).join(''));
  });

  it('with the overlay: the sidecar in the StatefulSet, the key Secret as a reference only, the peers described', () => {
    const wg = GOOD.replace('  tls:', '  wireguard:\n    enabled: true\n    cidr: 10.80.0.0/29\n  tls:');
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': wg });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('#   Secret secrets/vault-wireguard-keys, keys "vault-0.key", "vault-1.key", "vault-2.key": WireGuard private key of each pod');
    expect(r.stdout).toContain('# ConfigMap secrets/vault-wireguard-peers ("peers.json") is derived in the cluster from those keys (public keys only): vault-0 10.80.0.1, vault-1 10.80.0.2, vault-2 10.80.0.3; UDP port 51820');
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).filter((o) => o !== null);
    expect(objects.map((o) => o.kind)).toEqual(['ConfigMap', 'ServiceAccount', 'Service', 'Service', 'StatefulSet', 'PodDisruptionBudget']);
    // The peer ConfigMap is derived in the cluster; the only one rendered is the members list.
    expect(objects.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name)).toEqual(['vault-members']);
    expect(objects[0]!.data.members).toBe('vault-0=10.80.0.1:8201\nvault-1=10.80.0.2:8201\nvault-2=10.80.0.3:8201\n');
    const pod = objects.find((o) => o.kind === 'StatefulSet')!.spec.template.spec;
    expect(pod.initContainers.map((c: any) => [c.name, c.restartPolicy, c.args])).toEqual([['wireguard', 'Always', ['wg-agent']]]);
    expect(pod.containers[0].env.find((e: any) => e.name === 'VAULT_PEERS').value).toBe('vault-0=10.80.0.1:8201,vault-1=10.80.0.2:8201,vault-2=10.80.0.3:8201');
    // No key material anywhere: no Secret or ConfigMap objects, no data, no 44-character keys.
    expect(r.stdout).not.toMatch(/^kind: Secret$/m);
    expect(r.stdout).not.toMatch(/^\s*(stringData|binaryData):/m);
    expect(r.stdout.match(/^\s*data:/gm)).toHaveLength(1); // the members ConfigMap
    expect(r.stdout).not.toMatch(/[A-Za-z0-9+/]{43}=/);
    const small = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': wg.replace('/29', '/30') });
    expect(small.code).toBe(2);
    expect(small.stderr).toContain('spec.wireguard.cidr: 10.80.0.0/30 has room for 2 pod addresses');
  });

  it('sets the vault pods\' Host names and trusted proxies in the rendered StatefulSet', () => {
    const proxied = GOOD.replace('  kms:', '  trustProxy: true\n  trustedProxies: ["10.42.0.0/16"]\n  kms:');
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': proxied });
    expect(r.code).toBe(0);
    const sts = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).find((o) => o?.kind === 'StatefulSet')!;
    const env = new Map<string, string>(sts.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]));
    expect(env.get('VAULT_TRUST_PROXY')).toBe('true');
    expect(env.get('VAULT_TRUSTED_PROXIES')).toBe('10.42.0.0/16');
    expect(env.get('VAULT_API_HOSTNAMES')?.split(',')).toEqual(expect.arrayContaining([
      'vault-client', 'vault-client.secrets.svc.cluster.local', 'vault-headless.secrets.svc', '$(VAULT_NODE_ID).vault-headless.secrets.svc.cluster.local',
    ]));
  });

  it('with readAllowlistFrom: the file env and directory mount in the StatefulSet, the ConfigMap described', () => {
    const from = GOOD.replace('  kms:', '  readAllowlistFrom:\n    - namespace: coffer-system\n      podSelector: {matchLabels: {app.kubernetes.io/name: coffer-sync}}\n  kms:');
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': from });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('# ConfigMap secrets/vault-read-allowlist ("allowlist") is kept in the cluster: spec.readAllowlist plus the IP of each Running pod of coffer-system/{app.kubernetes.io/name=coffer-sync}');
    const sts = parseAllDocuments(r.stdout).map((d) => d.toJS() as Record<string, any> | null).find((o) => o?.kind === 'StatefulSet')!;
    const vault = sts.spec.template.spec.containers[0];
    const env = new Map<string, string>(vault.env.map((e: any) => [e.name, e.value]));
    expect(env.get('VAULT_READ_ALLOWLIST')).toBe('10.0.0.0/8');
    expect(env.get('VAULT_READ_ALLOWLIST_FILE')).toBe('/etc/coffer/read-allowlist/allowlist');
    expect(vault.volumeMounts).toContainEqual({ name: 'read-allowlist', mountPath: '/etc/coffer/read-allowlist', readOnly: true });
  });

  it('refuses trustProxy without trustedProxies, saying what is missing, before anything is rendered', () => {
    const bad = GOOD.replace('  kms:', '  trustProxy: true\n  kms:');
    const r = run({ positionals: ['render'], flags: { file: 'vc.yaml' } }, { 'vc.yaml': bad });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('spec.trustedProxies: trustedProxies is required when trustProxy is true');
  });

  it('reads stdin with -f -, skips empty documents and renders several clusters', () => {
    const second = GOOD.replace('name: vault', 'name: other');
    const r = run({ positionals: ['render'], flags: { file: '-' } }, {}, `${GOOD}---\n---\n${second}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('VaultCluster secrets/vault.');
    expect(r.stdout).toContain('VaultCluster secrets/other.');
  });

  it('refuses an invalid VaultCluster with readable errors and exit 2', () => {
    const bad = GOOD.replace('replicas: 3', 'replicas: 2').replace('10.0.0.0/8', '10.0.0.0/40').replace('mode: local', 'mode: aws');
    const r = run({ positionals: ['render'], flags: { file: 'bad.yaml' } }, { 'bad.yaml': bad });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('bad.yaml: document 1 (secrets/vault): invalid VaultCluster');
    expect(r.stderr).toContain('spec.replicas: must be 1, 3, 5 or 7');
    expect(r.stderr).toContain('spec.readAllowlist[0]: must be an IPv4 address or CIDR');
    expect(r.stderr).toContain('spec.kms: kms.keyId is required when kms.mode is aws');
  });

  it('exits 2 on bad YAML, no documents or a missing -f; 1 on an unreadable file', () => {
    expect(run({ positionals: ['render'], flags: { file: 'x' } }, { x: 'a: [' }).code).toBe(2);
    expect(run({ positionals: ['render'], flags: { file: 'x' } }, { x: '' }).stderr).toContain('no VaultCluster found');
    const noFile = run({ positionals: ['render'] });
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('-f FILE is required');
    const missing = run({ positionals: ['render'], flags: { file: 'nope.yaml' } });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read nope.yaml');
  });

  it('has help for operator and render', () => {
    expect(run({ positionals: [], flags: { help: true } })).toEqual({ code: 0, stdout: OPERATOR_HELP + '\n', stderr: '' });
    expect(run({ positionals: ['render'], flags: { help: true } })).toEqual({ code: 0, stdout: RENDER_HELP + '\n', stderr: '' });
    expect(run({ positionals: [] }).code).toBe(2);
    expect(run({ positionals: ['deploy'] }).stderr).toContain("unknown command 'deploy'");
  });
});

describe('coffer operator: usage mistakes and multi-kind files', () => {
  it('an unknown command is one line naming it with a hint, exit 2, not the whole help', () => {
    const r = run({ positionals: ['frob'] });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("coffer operator: unknown command 'frob'; see 'coffer operator --help'\n");
    expect(run({ positionals: ['frob'], flags: { help: true } }).stderr).toBe("coffer operator: unknown command 'frob'; see 'coffer operator --help'\n");
    expect(run({ positionals: [] }).stderr).toBe("coffer operator: missing command; see 'coffer operator --help'\n");
    const noFile = run({ positionals: ['render'] });
    expect(noFile.stderr).toBe("coffer operator render: -f FILE is required; see 'coffer operator render --help'\n");
    const extra = run({ positionals: ['render', 'x.yaml'], flags: { file: 'vc.yaml' } });
    expect(extra.code).toBe(2);
    expect(extra.stderr).toBe("coffer operator render: unexpected argument 'x.yaml'; see 'coffer operator render --help'\n");
  });

  it('renders examples/vaultcluster.yaml: the VaultCluster, with its Namespace document skipped and named on stderr', () => {
    const file = 'examples/vaultcluster.yaml';
    const r = run({ positionals: ['render'], flags: { file } }, { [file]: readFileSync(new URL(`../../../${file}`, import.meta.url), 'utf8') });
    expect(r.stderr).toBe(`coffer operator render: ${file}: document 1 (Namespace coffer) is not a VaultCluster; skipped\n`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('VaultCluster coffer/vault.');
    const kinds = parseAllDocuments(r.stdout).map((d) => (d.toJS() as { kind?: string } | null)?.kind).filter(Boolean);
    expect(kinds).toEqual(expect.arrayContaining(['ConfigMap', 'ServiceAccount', 'Service', 'StatefulSet', 'PodDisruptionBudget']));
    expect(kinds).not.toContain('Namespace');
  });

  it('a file with no VaultCluster at all is still refused, saying what was skipped', () => {
    const r = run({ positionals: ['render'], flags: { file: 'ns.yaml' } }, { 'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ns.yaml: document 1 (Namespace x) is not a VaultCluster; skipped');
    expect(r.stderr).toContain('ns.yaml: no VaultCluster found (1 document(s) of other kinds skipped)');
    // A document without a kind is validated as a VaultCluster, so its problems are named.
    expect(run({ positionals: ['render'], flags: { file: 'k.yaml' } }, { 'k.yaml': 'metadata:\n  name: x\n' }).code).toBe(2);
  });
});
