// spec.audit: schema, the operator-side checks (retention range, the cap
// against the volume) and the vault container's VAULT_AUDIT_* environment.
import { describe, expect, it } from 'vitest';
import type { V1EnvVar } from '@kubernetes/client-node';
import { auditMaxBytes, formatBytes, quantityBytes, retentionSecs } from '../../../operator/api/audit.js';
import { validateVaultCluster, type ValidationIssue } from '../../../operator/api/validate.js';
import { buildManifests } from '../../../operator/manifests/build.js';
import { cluster, rawCluster } from './fixtures.js';

const MI = 1024 * 1024;

function errorsOf(obj: unknown): ValidationIssue[] {
  const r = validateVaultCluster(obj);
  if (r.ok) throw new Error('expected validation to fail');
  return r.errors;
}

function auditEnvOf(spec: Record<string, unknown>): Record<string, string | undefined> {
  const sts = buildManifests(cluster(spec), { rewrapEnabled: false }).statefulSet;
  const env: V1EnvVar[] = sts.spec!.template.spec!.containers.find((c) => c.name === 'vault')!.env ?? [];
  return Object.fromEntries(env.filter((e) => e.name.startsWith('VAULT_AUDIT_')).map((e) => [e.name, e.value]));
}

describe('quantities and durations', () => {
  it.each([
    ['256Mi', 268_435_456n], ['1Gi', 1_073_741_824n], ['1G', 1_000_000_000n], ['1.5Gi', 1_610_612_736n], ['2e6', 2_000_000n],
    ['1048576', 1_048_576n], ['1k', 1_000n], ['1500m', 2n], ['.5Ki', 512n], ['+4Mi', 4_194_304n], ['-1Mi', -1_048_576n],
  ] as const)('%s is %s bytes', (q, bytes) => {
    expect(quantityBytes(q)).toBe(bytes);
  });
  it('takes integers and refuses what is not a quantity', () => {
    expect(quantityBytes(268_435_456)).toBe(268_435_456n);
    for (const q of ['lots', '1 Gi', '1GB', '', 'Mi', '1e999']) expect(quantityBytes(q), q).toBeUndefined();
  });
  it('reads retentions', () => {
    expect(retentionSecs('30d')).toBe(30 * 86_400);
    expect(retentionSecs('12h')).toBe(43_200);
    expect(retentionSecs('90m')).toBe(5_400);
    expect(retentionSecs('7200s')).toBe(7_200);
    for (const r of ['30', '1w', '1h30m', '1.5h', '-1h', 'P30D']) expect(retentionSecs(r), r).toBeUndefined();
  });
  it('formats byte counts readably', () => {
    expect(formatBytes(268_435_456n)).toBe('256Mi');
    expect(formatBytes(1536n)).toBe('1536 bytes');
    expect(formatBytes(2048n)).toBe('2Ki');
  });
});

describe('spec.audit', () => {
  it('defaults: 30d, stdout on, the cap a quarter of storage.size (256Mi on the default 1Gi volume)', () => {
    const r = validateVaultCluster(rawCluster());
    expect(r.ok && r.value.spec.audit).toEqual({ retention: '30d', stdout: true });
    expect(auditEnvOf({})).toEqual({ VAULT_AUDIT_RETENTION: '30d', VAULT_AUDIT_MAX_BYTES: String(256 * MI), VAULT_AUDIT_STDOUT: 'true' });
    // A smaller volume gets a smaller default cap, never an invalid spec.
    expect(auditEnvOf({ storage: { size: '256Mi' } }).VAULT_AUDIT_MAX_BYTES).toBe(String(64 * MI));
    expect(auditEnvOf({ storage: { size: '10Gi' } }).VAULT_AUDIT_MAX_BYTES).toBe(String(2560 * MI));
    expect(auditMaxBytes({ retention: '30d', stdout: true }, '1Gi')).toBe(BigInt(256 * MI));
  });

  it('renders given values, the cap in plain bytes', () => {
    expect(auditEnvOf({ audit: { retention: '12h', maxBytes: '100Mi', stdout: false } })).toEqual({
      VAULT_AUDIT_RETENTION: '12h', VAULT_AUDIT_MAX_BYTES: String(100 * MI), VAULT_AUDIT_STDOUT: 'false',
    });
    expect(auditEnvOf({ audit: { maxBytes: 50_000_000 } }).VAULT_AUDIT_MAX_BYTES).toBe('50000000');
    expect(auditEnvOf({ audit: { maxBytes: '0.5Gi' } }).VAULT_AUDIT_MAX_BYTES).toBe(String(512 * MI));
    expect(auditEnvOf({ audit: { retention: '90m' } })).toMatchObject({ VAULT_AUDIT_RETENTION: '90m', VAULT_AUDIT_STDOUT: 'true' });
  });

  it.each(['30', '1w', '1h30m', '1.5h', '-1h', 'thirty days', ''])('refuses retention %j by its form', (retention) => {
    expect(errorsOf(rawCluster({ audit: { retention } }))).toEqual([
      { path: 'spec.audit.retention', message: 'must be a duration such as 30d, 12h or 90m (a whole number and s, m, h or d)' },
    ]);
  });

  it('refuses a retention out of 1h..3650d', () => {
    expect(errorsOf(rawCluster({ audit: { retention: '59m' } }))).toEqual([{ path: 'spec.audit.retention', message: '59m is shorter than the 1h minimum' }]);
    expect(errorsOf(rawCluster({ audit: { retention: '3599s' } }))[0]?.path).toBe('spec.audit.retention');
    expect(errorsOf(rawCluster({ audit: { retention: '3651d' } }))).toEqual([{ path: 'spec.audit.retention', message: '3651d is longer than the 3650d maximum' }]);
    for (const retention of ['1h', '60m', '3600s', '3650d', '87600h']) expect(validateVaultCluster(rawCluster({ audit: { retention } })).ok, retention).toBe(true);
  });

  it('refuses a cap that is not a quantity', () => {
    expect(errorsOf(rawCluster({ audit: { maxBytes: '256MB' } }))).toEqual([{ path: 'spec.audit.maxBytes', message: 'must be a Kubernetes quantity such as 256Mi' }]);
    expect(errorsOf(rawCluster({ audit: { maxBytes: 1.5 } }))[0]?.path).toBe('spec.audit.maxBytes');
  });

  it('refuses a cap as large as the volume or larger, naming both', () => {
    const [issue, ...rest] = errorsOf(rawCluster({ audit: { maxBytes: '2Gi' } }));
    expect(rest).toEqual([]);
    expect(issue!.path).toBe('spec.audit.maxBytes');
    expect(issue!.message).toBe(
      '2Gi (2147483648 bytes) must be smaller than storage.size 1Gi (1073741824 bytes): audit.db shares the data volume with the Raft log and snapshots, so the volume would fill before the cap is reached; a quarter of the volume is a good start',
    );
    expect(errorsOf(rawCluster({ audit: { maxBytes: '1Gi' } }))[0]?.path).toBe('spec.audit.maxBytes');
    expect(errorsOf(rawCluster({ storage: { size: '5Gi' }, audit: { maxBytes: '6G' } }))[0]?.path).toBe('spec.audit.maxBytes');
    expect(validateVaultCluster(rawCluster({ storage: { size: '5Gi' }, audit: { maxBytes: '5G' } })).ok).toBe(true);
    expect(validateVaultCluster(rawCluster({ audit: { maxBytes: '1023Mi' } })).ok).toBe(true);
  });

  it('refuses a cap below 1Mi (given, or the default quarter of a tiny volume)', () => {
    expect(errorsOf(rawCluster({ audit: { maxBytes: '512Ki' } }))).toEqual([
      { path: 'spec.audit.maxBytes', message: 'the audit cap 512Ki (524288 bytes) is below the 1Mi minimum a node needs to keep writing audit records' },
    ]);
    expect(errorsOf(rawCluster({ audit: { maxBytes: '-1Gi' } }))[0]?.path).toBe('spec.audit.maxBytes');
    expect(errorsOf(rawCluster({ audit: { maxBytes: 0 } }))[0]?.path).toBe('spec.audit.maxBytes');
    expect(validateVaultCluster(rawCluster({ audit: { maxBytes: '1Mi' } })).ok).toBe(true);
    expect(errorsOf(rawCluster({ storage: { size: '2Mi' } }))).toEqual([
      { path: 'spec.storage.size', message: 'the audit cap 512Ki (a quarter of storage.size 2Mi) is below the 1Mi minimum a node needs to keep writing audit records; set audit.maxBytes or a larger storage.size' },
    ]);
    expect(validateVaultCluster(rawCluster({ storage: { size: '4Mi' } })).ok).toBe(true);
  });

  it('reports unknown fields and a bad storage.size once', () => {
    expect(errorsOf(rawCluster({ audit: { retension: '30d' } }))).toEqual([{ path: 'spec.audit.retension', message: 'unknown field' }]);
    expect(errorsOf(rawCluster({ storage: { size: 'lots' }, audit: { maxBytes: '1Mi' } })).map((e) => e.path)).toEqual(['spec.storage.size']);
    expect(errorsOf(rawCluster({ audit: { stdout: 'yes' } })).map((e) => e.path)).toEqual(['spec.audit.stdout']);
    // The quantity pattern lets absurd exponents through; they are refused, not rendered.
    expect(errorsOf(rawCluster({ audit: { maxBytes: '1e99' } }))).toEqual([{ path: 'spec.audit.maxBytes', message: '1e99 is not a size (the exponent is out of range)' }]);
    expect(errorsOf(rawCluster({ storage: { size: '1e99' } })).map((e) => e.path)).toEqual(['spec.storage.size']);
  });
});
