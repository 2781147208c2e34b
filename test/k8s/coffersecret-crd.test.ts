// The generated CofferSecret CRD on a real API server: the structural schema,
// the COFFER_NAME pattern (RE2 has no lookahead) and the CEL rules are
// accepted, defaults are filled in by the API server, and every rule refuses
// with the message the operator-side validator (sync/api/validate.ts) gives.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DATA_RULES, VAULT_REF_RULES } from '../../sync/api/schema.js';
import { kubectlJson, useControlPlane } from './harness/use-control-plane.js';

const NS = 'csec-crd';
const CRD = readFileSync(new URL('../../crds/coffersecrets.coffer.dev.yaml', import.meta.url), 'utf8');

const cp = useControlPlane({ nodes: 1 });

function csec(name: string, spec: Record<string, unknown> = {}) {
  return {
    apiVersion: 'coffer.dev/v1alpha1', kind: 'CofferSecret', metadata: { name, namespace: NS },
    spec: {
      vaultRef: { name: 'vault', namespace: 'coffer' },
      tokenSecretRef: { name: 'coffer-token' },
      data: [{ key: 'DB_PASSWORD', name: 'app/db/password' }],
      ...spec,
    },
  };
}
const create = (obj: unknown) => cp().kubectl(['create', '-f', '-'], JSON.stringify(obj));

beforeAll(async () => {
  await cp().kubectlOk(['apply', '-f', '-'], CRD);
  await cp().kubectlOk(['wait', '--for=condition=Established', 'crd/coffersecrets.coffer.dev', '--timeout=60s']);
  await cp().kubectlOk(['create', 'namespace', NS]);
});

describe('CofferSecret CRD on a real API server', () => {
  it('accepts a valid object and fills in the defaults', async () => {
    const r = await create(csec('app-db'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = await kubectlJson(cp(), ['-n', NS, 'get', 'csec', 'app-db']);
    expect(got.spec.target).toEqual({ type: 'Opaque' });
    expect(got.spec.refreshInterval).toBe('5m');
    expect(got.spec.tokenSecretRef).toEqual({ name: 'coffer-token', key: 'token' });
    expect(got.spec.rolloutRestartTargets).toEqual([]);
  });

  it.each([
    ['both', { vaultRef: { name: 'vault', address: 'https://coffer.example:8200' } }, VAULT_REF_RULES[0]!.message],
    ['neither', { vaultRef: {} }, VAULT_REF_RULES[0]!.message],
    ['address-ns', { vaultRef: { address: 'https://coffer.example:8200', namespace: 'x' } }, VAULT_REF_RULES[1]!.message],
    ['dup', { data: [{ key: 'K', name: 'a' }, { key: 'K', name: 'b' }] }, DATA_RULES[0]!.message],
    ['dotdot', { data: [{ key: 'K', name: 'a/../b' }] }, 'spec.data[0].name'],
    ['empty', { data: [] }, 'spec.data'],
    ['kind', { rolloutRestartTargets: [{ kind: 'Pod', name: 'x' }] }, 'spec.rolloutRestartTargets[0].kind'],
  ])('refuses %s', async (name, spec, message) => {
    const r = await create(csec(`bad-${name}`, spec));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('kubectl get csec prints Ready, Reason, Synced, Age', async () => {
    await cp().kubectlOk(['-n', NS, 'patch', 'csec', 'app-db', '--subresource=status', '--type=merge', '-p', JSON.stringify({
      status: {
        syncedVersions: { 'app/db/password': 3 },
        conditions: [{ type: 'Ready', status: 'True', reason: 'Synced', message: 'ok', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      },
    })]);
    const out = await cp().kubectlOk(['-n', NS, 'get', 'csec']);
    const [header, row] = out.trim().split('\n');
    expect(header!.split(/\s+/)).toEqual(['NAME', 'READY', 'REASON', 'SYNCED', 'AGE']);
    expect(row).toMatch(/^app-db\s+True\s+Synced\s+\{"app\/db\/password":3\}\s+\S+$/);
  });

  it('accepts examples/coffersecret.yaml and examples/demo-app.yaml', async () => {
    for (const file of ['coffersecret.yaml', 'demo-app.yaml']) {
      await cp().kubectlOk(['apply', '-f', '-'], readFileSync(new URL(`../../examples/${file}`, import.meta.url), 'utf8'));
    }
    const got = await kubectlJson(cp(), ['-n', 'demo', 'get', 'csec', 'app-db']);
    expect(got.spec.rolloutRestartTargets).toEqual([{ kind: 'Deployment', name: 'demo-app' }]);
    await kubectlJson(cp(), ['-n', 'demo', 'get', 'deployment', 'demo-app']);
  });
});
