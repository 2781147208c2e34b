// spec.audit on a real control plane: the CRD defaults it and refuses a
// malformed one, the operator refuses a cap the volume cannot hold
// (Degraded, InvalidSpec) without touching the pods, and the vault
// container's VAULT_AUDIT_* environment follows a change. A StatefulSet
// rendered by an operator release without spec.audit gets all three
// variables in a single template change.
import { describe, expect, it } from 'vitest';
import type { RunningOperator } from '../../operator/operator.js';
import { eventually, kubectlJson, useControlPlane } from './harness/use-control-plane.js';
import { useOperator } from './harness/use-operator.js';

const NS = 'audit';
const IMAGE = 'registry.invalid/coffer:1.0.0';
const MI = 1024 * 1024;
const AUDIT_VARS = ['VAULT_AUDIT_RETENTION', 'VAULT_AUDIT_MAX_BYTES', 'VAULT_AUDIT_STDOUT'];

const cp = useControlPlane();
const ops = useOperator(cp, { namespace: NS, release: () => '1.0.0' });
const getJson = (args: string[]) => kubectlJson(cp(), args);
const get = (kind: string, name: string) => getJson(['-n', NS, 'get', kind, name]);
const cond = (obj: any, type: string) => obj.status?.conditions?.find((c: any) => c.type === type);
const vaultEnv = (sts: any): any[] => sts.spec.template.spec.containers.find((c: any) => c.name === 'vault').env;
const auditEnv = (sts: any): Record<string, string> =>
  Object.fromEntries(vaultEnv(sts).filter((e: any) => AUDIT_VARS.includes(e.name)).map((e: any) => [e.name, e.value]));
const patchAudit = (audit: unknown) =>
  cp().kubectl(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=merge', '-p', JSON.stringify({ spec: { audit } })]);

function cluster(spec: Record<string, unknown> = {}): string {
  return JSON.stringify({
    apiVersion: 'coffer.dev/v1alpha1', kind: 'VaultCluster', metadata: { name: 'vault', namespace: NS },
    spec: { replicas: 1, image: IMAGE, kms: { mode: 'local' }, ...spec },
  });
}

/** Ready, the current generation observed, the StatefulSet fully rolled. */
async function settled(): Promise<{ vc: any; sts: any }> {
  return eventually('VaultCluster Ready and the StatefulSet rolled', async () => {
    const vc = await get('vaultcluster', 'vault');
    const sts = await get('statefulset', 'vault');
    const rolled = sts.status?.observedGeneration === sts.metadata.generation && sts.status?.updateRevision === sts.status?.currentRevision &&
      sts.status?.updatedReplicas === sts.spec.replicas && sts.status?.readyReplicas === sts.spec.replicas;
    return vc.status?.observedGeneration === vc.metadata.generation && cond(vc, 'Ready')?.status === 'True' && rolled ? { vc, sts } : undefined;
  }, 180_000);
}

describe('spec.audit on a real control plane', () => {
  let op: RunningOperator;

  it('the CRD refuses a malformed retention or cap', async () => {
    const week = await cp().kubectl(['apply', '-f', '-'], cluster({ audit: { retention: '1w' } }));
    expect(week.code).not.toBe(0);
    expect(week.stderr).toContain('spec.audit.retention');
    const mb = await cp().kubectl(['apply', '-f', '-'], cluster({ audit: { maxBytes: '256MB' } }));
    expect(mb.code).not.toBe(0);
    expect(mb.stderr).toContain('spec.audit.maxBytes');
    const typo = await cp().kubectl(['apply', '-f', '-'], cluster({ audit: { stdout: 'yes' } }));
    expect(typo.code).not.toBe(0);
  });

  it('a VaultCluster without spec.audit gets the defaults from the CRD, and the pods 30d, a quarter of the volume, stdout on, in one template', async () => {
    op = ops.start('audit-a');
    await eventually('audit-a to lead', async () => op.isLeader(), 30_000);
    await cp().kubectlOk(['apply', '-f', '-'], cluster());
    const { vc, sts } = await settled();
    expect(vc.spec.audit).toEqual({ retention: '30d', stdout: true });
    expect(auditEnv(sts)).toEqual({ VAULT_AUDIT_RETENTION: '30d', VAULT_AUDIT_MAX_BYTES: String(256 * MI), VAULT_AUDIT_STDOUT: 'true' });
    // Created once with everything in it: no second template.
    expect(sts.metadata.generation).toBe(1);
  });

  it('refuses a cap as large as the volume (Degraded, InvalidSpec) and leaves the pods alone; a valid change rolls them with the new env', async () => {
    const before = (await settled()).sts;
    expect((await patchAudit({ maxBytes: '2Gi' })).code).toBe(0); // the API server cannot compare quantities; the operator does
    const refused = await eventually('Degraded InvalidSpec', async () => {
      const o = await get('vaultcluster', 'vault');
      return o.status?.observedGeneration === o.metadata.generation && cond(o, 'Degraded')?.reason === 'InvalidSpec' ? o : undefined;
    }, 60_000);
    expect(cond(refused, 'Degraded')).toMatchObject({ status: 'True' });
    expect(cond(refused, 'Degraded').message).toContain('spec.audit.maxBytes: 2Gi (2147483648 bytes) must be smaller than storage.size 1Gi');
    const events = await getJson(['-n', NS, 'get', 'events', '--field-selector', 'involvedObject.kind=VaultCluster,involvedObject.name=vault']);
    expect(events.items.map((e: any) => e.reason)).toContain('InvalidSpec');
    const untouched = await get('statefulset', 'vault');
    expect(untouched.metadata.generation).toBe(before.metadata.generation);
    expect(auditEnv(untouched)).toEqual(auditEnv(before));

    expect((await patchAudit({ retention: '7d', maxBytes: '100Mi', stdout: false })).code).toBe(0);
    const { vc, sts } = await settled();
    expect(cond(vc, 'Degraded')).toMatchObject({ status: 'False' });
    expect(vc.spec.audit).toEqual({ retention: '7d', maxBytes: '100Mi', stdout: false });
    expect(auditEnv(sts)).toEqual({ VAULT_AUDIT_RETENTION: '7d', VAULT_AUDIT_MAX_BYTES: String(100 * MI), VAULT_AUDIT_STDOUT: 'false' });
    expect(sts.metadata.generation).toBe(before.metadata.generation + 1);
    expect(sts.status.updateRevision).not.toBe(before.status.updateRevision);
  });

  it('a StatefulSet from a release without spec.audit gets the three variables in one template change', async () => {
    // Back to the defaults, then take the variables out as an older operator rendered the template.
    await cp().kubectlOk(['-n', NS, 'patch', 'vaultcluster', 'vault', '--type=json', '-p', JSON.stringify([{ op: 'remove', path: '/spec/audit' }])]);
    await eventually('defaults back in the template', async () => {
      const { sts } = await settled();
      return auditEnv(sts).VAULT_AUDIT_RETENTION === '30d' ? true : undefined;
    });
    await ops.stop(op);
    const env = vaultEnv(await get('statefulset', 'vault'));
    const removals = env.map((e: any, i: number) => [e.name, i] as const).filter(([n]) => AUDIT_VARS.includes(n)).reverse()
      .map(([, i]) => ({ op: 'remove', path: `/spec/template/spec/containers/0/env/${i}` }));
    expect(removals).toHaveLength(3);
    expect((await get('statefulset', 'vault')).spec.template.spec.containers[0].name).toBe('vault');
    await cp().kubectlOk(['-n', NS, 'patch', 'statefulset', 'vault', '--type=json', '-p', JSON.stringify(removals)]);
    const old = await get('statefulset', 'vault');
    expect(auditEnv(old)).toEqual({});

    op = ops.start('audit-b');
    await eventually('audit-b to lead', async () => op.isLeader(), 30_000);
    const upgraded = await eventually('the audit env back', async () => {
      const sts = await get('statefulset', 'vault');
      return Object.keys(auditEnv(sts)).length > 0 ? sts : undefined;
    }, 60_000);
    expect(auditEnv(upgraded)).toEqual({ VAULT_AUDIT_RETENTION: '30d', VAULT_AUDIT_MAX_BYTES: String(256 * MI), VAULT_AUDIT_STDOUT: 'true' });
    expect(upgraded.metadata.generation).toBe(old.metadata.generation + 1);
    const { sts } = await settled();
    expect(sts.metadata.generation).toBe(old.metadata.generation + 1);
    await ops.stop(op);
  });
});
