import { describe, expect, it } from 'vitest';
import { KMS_RULES, REPLICA_COUNTS, SPEC_RULES, WIREGUARD_TRANSITION_RULES } from '../../../operator/api/schema.js';
import {
  VaultClusterValidationError, parseVaultCluster, validateVaultCluster, type ValidationIssue,
} from '../../../operator/api/validate.js';
import { rawCluster } from './fixtures.js';

function errorsOf(obj: unknown): ValidationIssue[] {
  const r = validateVaultCluster(obj);
  if (r.ok) throw new Error('expected validation to fail');
  return r.errors;
}

describe('VaultCluster validation', () => {
  it('applies every documented default to a minimal spec', () => {
    const vc = parseVaultCluster(rawCluster());
    expect(vc.spec).toEqual({
      image: 'registry.example/coffer:1.0.0',
      replicas: 3,
      readAllowlist: [],
      readAllowlistFrom: [],
      trustProxy: false,
      trustedProxies: [],
      kms: { mode: 'local', dekCacheTtlSecs: 300, rewrap: { enabled: false, pollSecs: 86_400, maxPerSec: 20 } },
      bootstrap: {},
      wireguard: { enabled: false, port: 51_820, cidr: '10.77.0.0/24', keyGeneration: 1, managementOnOverlay: false },
      storage: { size: '1Gi', deleteClaimsOnScaleDown: false, deleteClaimsOnDelete: false },
      serviceAccount: { annotations: {} },
      audit: { retention: '30d', stdout: true },
    });
  });

  it('readAllowlistFrom: a namespace and at least one label are required; lengths and label syntax are bounded', () => {
    const entry = (e: Record<string, unknown>) => rawCluster({ readAllowlistFrom: [e] });
    const ok = { namespace: 'coffer-system', podSelector: { matchLabels: { 'app.kubernetes.io/name': 'coffer-sync', tier: '' } } };
    expect(validateVaultCluster(entry(ok)).ok).toBe(true);
    expect(parseVaultCluster(entry(ok)).spec.readAllowlistFrom).toEqual([ok]);
    expect(errorsOf(entry({ podSelector: ok.podSelector }))).toEqual([{ path: 'spec.readAllowlistFrom[0].namespace', message: 'is required' }]);
    expect(errorsOf(entry({ namespace: 'Bad_NS', podSelector: ok.podSelector }))[0]?.path).toBe('spec.readAllowlistFrom[0].namespace');
    expect(errorsOf(entry({ namespace: 'a', podSelector: { matchLabels: {} } }))[0]?.path).toBe('spec.readAllowlistFrom[0].podSelector.matchLabels');
    expect(errorsOf(entry({ namespace: 'a', podSelector: {} }))[0]?.path).toBe('spec.readAllowlistFrom[0].podSelector.matchLabels');
    expect(errorsOf(entry({ namespace: 'a', podSelector: { matchLabels: { 'bad key!': 'x' } } }))[0]?.path).toMatch(/^spec\.readAllowlistFrom\[0\]\.podSelector\.matchLabels/);
    expect(errorsOf(entry({ namespace: 'a', podSelector: { matchLabels: { a: 'v'.repeat(64) } } }))[0]?.path).toBe('spec.readAllowlistFrom[0].podSelector.matchLabels.a');
    expect(errorsOf(entry({ namespace: 'a', podSelector: { matchLabels: { a: 'x,y=z' } } }))[0]?.path).toBe('spec.readAllowlistFrom[0].podSelector.matchLabels.a');
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, 'v']));
    expect(errorsOf(entry({ namespace: 'a', podSelector: { matchLabels: many } }))[0]?.path).toBe('spec.readAllowlistFrom[0].podSelector.matchLabels');
    expect(errorsOf(rawCluster({ readAllowlistFrom: Array.from({ length: 17 }, () => ok) }))[0]?.path).toBe('spec.readAllowlistFrom');
    expect(errorsOf(entry({ ...ok, namespaceSelector: {} }))[0]?.path).toBe('spec.readAllowlistFrom[0].namespaceSelector');
  });

  it('fills nested defaults under a partially given object and keeps given values', () => {
    const vc = parseVaultCluster(rawCluster({ kms: { mode: 'aws', keyId: 'alias/coffer', rewrap: { enabled: true } }, replicas: 5 }));
    expect(vc.spec.replicas).toBe(5);
    expect(vc.spec.kms).toEqual({
      mode: 'aws', keyId: 'alias/coffer', dekCacheTtlSecs: 300, rewrap: { enabled: true, pollSecs: 86_400, maxPerSec: 20 },
    });
  });

  it('does not modify its input', () => {
    const raw = rawCluster();
    const copy = structuredClone(raw);
    parseVaultCluster(raw);
    expect(raw).toEqual(copy);
  });

  it.each(REPLICA_COUNTS)('accepts %i replicas', (n) => {
    expect(validateVaultCluster(rawCluster({ replicas: n })).ok).toBe(true);
  });

  it.each([0, 2, 4, 6, 8, 3.5, '3'])('refuses replicas %s', (n) => {
    expect(errorsOf(rawCluster({ replicas: n }))).toEqual([{ path: 'spec.replicas', message: 'must be 1, 3, 5 or 7' }]);
  });

  it('requires an image', () => {
    const raw = rawCluster();
    delete (raw.spec as Record<string, unknown>).image;
    expect(errorsOf(raw)).toEqual([{ path: 'spec.image', message: 'is required' }]);
  });

  it.each(['10.0.0.0/8', '192.168.1.7', '0.0.0.0/0', '255.255.255.255/32'])('accepts allowlist entry %s', (entry) => {
    expect(validateVaultCluster(rawCluster({ readAllowlist: [entry] })).ok).toBe(true);
  });

  it.each(['10.0.0.0/33', '10.0.0', '256.1.1.1', '10.0.0.01', 'fd00::/8', '10.0.0.0/8 ', 'example.com', ''])(
    'refuses allowlist entry %j',
    (entry) => {
      expect(errorsOf(rawCluster({ readAllowlist: ['127.0.0.1', entry] }))).toEqual([
        { path: 'spec.readAllowlist[1]', message: 'must be an IPv4 address or CIDR such as 10.0.0.0/8' },
      ]);
    },
  );

  it('refuses trustProxy without trustedProxies (the server would refuse to start), naming the missing field', () => {
    const message = 'trustedProxies is required when trustProxy is true: list the addresses or CIDRs of the proxies whose X-Forwarded-For is believed';
    expect(errorsOf(rawCluster({ trustProxy: true }))).toEqual([{ path: 'spec.trustedProxies', message }]);
    expect(errorsOf(rawCluster({ trustProxy: true, trustedProxies: [] }))).toEqual([{ path: 'spec.trustedProxies', message }]);
    expect(() => parseVaultCluster(rawCluster({ trustProxy: true }))).toThrow(`spec.trustedProxies: ${message}`);
    expect(parseVaultCluster(rawCluster({ trustProxy: true, trustedProxies: ['10.42.0.0/16', '192.168.1.7'] })).spec).toMatchObject({
      trustProxy: true, trustedProxies: ['10.42.0.0/16', '192.168.1.7'],
    });
    // Listing proxies without believing them is harmless (and lets trustProxy be switched off and on again).
    expect(validateVaultCluster(rawCluster({ trustedProxies: ['10.42.0.0/16'] })).ok).toBe(true);
    // A malformed entry is reported once, as itself, not again as "required".
    expect(errorsOf(rawCluster({ trustProxy: true, trustedProxies: ['10.42.0.0/16', 'ingress.example'] }))).toEqual([
      { path: 'spec.trustedProxies[1]', message: 'must be an IPv4 address or CIDR such as 10.0.0.0/8' },
    ]);
    expect(errorsOf(rawCluster({ trustProxy: 'yes' })).map((e) => e.path)).toEqual(['spec.trustProxy']);
  });

  it.each(['10.0.0.0/33', '10.0.0', '256.1.1.1', 'fd00::/8', 'example.com', ''])('refuses trusted proxy entry %j', (entry) => {
    expect(errorsOf(rawCluster({ trustedProxies: [entry] }))).toEqual([
      { path: 'spec.trustedProxies[0]', message: 'must be an IPv4 address or CIDR such as 10.0.0.0/8' },
    ]);
  });

  it('requires kms.keyId in aws mode (the same rule the CRD carries as CEL)', () => {
    expect(errorsOf(rawCluster({ kms: { mode: 'aws' } }))).toEqual([
      { path: 'spec.kms', message: 'kms.keyId is required when kms.mode is aws' },
    ]);
    expect(validateVaultCluster(rawCluster({ kms: { mode: 'aws', keyId: 'arn:aws:kms:eu-west-1:1:key/x' } })).ok).toBe(true);
    expect(validateVaultCluster(rawCluster({ kms: { mode: 'local' } })).ok).toBe(true);
  });

  it('refuses a local master key reference in aws mode', () => {
    const errors = errorsOf(rawCluster({ kms: { mode: 'aws', keyId: 'k', localMasterKeySecretRef: { name: 'mk', key: 'k' } } }));
    expect(errors).toEqual([{ path: 'spec.kms', message: 'kms.localMasterKeySecretRef is only used when kms.mode is local' }]);
  });

  it('refuses an unknown kms mode', () => {
    expect(errorsOf(rawCluster({ kms: { mode: 'vault' } }))).toEqual([{ path: 'spec.kms.mode', message: 'must be aws or local' }]);
  });

  it('validates secret key references', () => {
    expect(errorsOf(rawCluster({ bootstrap: { tokenSecretRef: { name: 'Bad_Name' } } }))).toEqual([
      { path: 'spec.bootstrap.tokenSecretRef.key', message: 'is required' },
      { path: 'spec.bootstrap.tokenSecretRef.name', message: 'must be a valid Secret name (lowercase RFC 1123 subdomain)' },
    ]);
    expect(errorsOf(rawCluster({ kms: { localMasterKeySecretRef: { name: 'mk', key: 'a/b' } } }))).toEqual([
      { path: 'spec.kms.localMasterKeySecretRef.key', message: 'must be a valid Secret key (letters, digits, -, _ and .)' },
    ]);
  });

  it('reports unknown fields (typos) instead of silently ignoring them', () => {
    expect(errorsOf(rawCluster({ replica: 3, storage: { sise: '2Gi' } }))).toEqual([
      { path: 'spec.replica', message: 'unknown field' },
      { path: 'spec.storage.sise', message: 'unknown field' },
    ]);
  });

  it('validates wireguard, storage, resources and ranges', () => {
    const errors = errorsOf(
      rawCluster({
        wireguard: { cidr: '10.77.0.0', port: 70_000 },
        storage: { size: 'lots' },
        resources: { limits: { memory: '1 Gi' } },
        kms: { dekCacheTtlSecs: -1, rewrap: { maxPerSec: 0 } },
      }),
    );
    expect(errors).toEqual(
      expect.arrayContaining([
        { path: 'spec.wireguard.cidr', message: 'must be an IPv4 CIDR such as 10.77.0.0/24' },
        expect.objectContaining({ path: 'spec.wireguard.port' }),
        { path: 'spec.storage.size', message: 'must be a Kubernetes quantity such as 1Gi' },
        { path: 'spec.resources.limits.memory', message: 'must be a Kubernetes quantity such as 500m, 1Gi or 2' },
        expect.objectContaining({ path: 'spec.kms.dekCacheTtlSecs' }),
        expect.objectContaining({ path: 'spec.kms.rewrap.maxPerSec' }),
      ]),
    );
    expect(errors).toHaveLength(6);
    expect(validateVaultCluster(rawCluster({ resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: 1 } } })).ok).toBe(true);
  });

  it('refuses an overlay CIDR too small for the replicas, readably, only when the overlay is on', () => {
    expect(errorsOf(rawCluster({ replicas: 3, wireguard: { enabled: true, cidr: '10.77.0.0/30' } }))).toEqual([
      {
        path: 'spec.wireguard.cidr',
        message: '10.77.0.0/30 has room for 2 pod addresses (the network and broadcast addresses are not used) but replicas is 3; use a /29 or larger',
      },
    ]);
    expect(errorsOf(rawCluster({ replicas: 7, wireguard: { enabled: true, cidr: '10.77.0.0/29' } }))[0]?.message).toContain('use a /28 or larger');
    expect(errorsOf(rawCluster({ replicas: 1, wireguard: { enabled: true, cidr: '10.77.0.1/30' } }))[0]?.message).toContain('10.77.0.1/30 is not a network address (host bits are set); use 10.77.0.0/30');
    expect(errorsOf(rawCluster({ replicas: 1, wireguard: { enabled: true, cidr: '10.77.0.0/32' } }))[0]?.message).toContain('room for 0 pod addresses');
    expect(errorsOf(rawCluster({ wireguard: { enabled: true, cidr: '10.77.0.8/28' } }))[0]?.message).toContain('use 10.77.0.0/28');
    expect(validateVaultCluster(rawCluster({ replicas: 3, wireguard: { enabled: true, cidr: '10.77.0.0/29' } })).ok).toBe(true);
    expect(validateVaultCluster(rawCluster({ replicas: 1, wireguard: { enabled: true, cidr: '10.77.0.4/30' } })).ok).toBe(true);
    expect(validateVaultCluster(rawCluster({ replicas: 7, wireguard: { enabled: false, cidr: '10.77.0.0/30' } })).ok).toBe(true);
    // A bad replicas value is reported once, not again as a CIDR problem.
    expect(errorsOf(rawCluster({ replicas: 4, wireguard: { enabled: true, cidr: '10.77.0.0/30' } })).map((e) => e.path)).toEqual(['spec.replicas']);
    expect(errorsOf(rawCluster({ wireguard: { enabled: true, keyGeneration: 0 } })).map((e) => e.path)).toEqual(['spec.wireguard.keyGeneration']);
  });

  it('checks the object envelope and the name', () => {
    expect(errorsOf({ ...rawCluster(), apiVersion: 'coffer.dev/v1' })).toEqual([{ path: 'apiVersion', message: 'must be coffer.dev/v1alpha1' }]);
    expect(errorsOf({ ...rawCluster(), kind: 'Vault' })).toEqual([{ path: 'kind', message: 'must be VaultCluster' }]);
    expect(errorsOf(rawCluster({}, { name: 'Vault.Prod' }))[0]?.path).toBe('metadata.name');
    expect(errorsOf(rawCluster({}, { name: 'v'.repeat(53) }))[0]?.path).toBe('metadata.name');
    expect(validateVaultCluster(rawCluster({}, { name: 'v'.repeat(52) })).ok).toBe(true);
    expect(errorsOf('not an object')).toEqual([{ path: '(root)', message: expect.any(String) }]);
  });

  it('accepts a status written by the operator and checks its shape', () => {
    const status = {
      observedGeneration: 4,
      readyReplicas: 3,
      leader: 'vault-1',
      rollout: { phase: 'WaitingForGate', targetImage: 'img:2', targetRewrap: true, currentRewrap: false, startedAt: '2025-01-02T03:04:05Z' },
      conditions: [{ type: 'Ready', status: 'True', observedGeneration: 4, lastTransitionTime: '2025-01-02T03:04:05Z', reason: 'AllReady', message: '' }],
    };
    const vc = parseVaultCluster({ ...rawCluster(), status });
    expect(vc.status).toEqual(status);
    expect(errorsOf({ ...rawCluster(), status: { ...status, rollout: { phase: 'Sleeping' } } })).toEqual([
      { path: 'status.rollout.phase', message: expect.any(String) },
    ]);
    expect(errorsOf({ ...rawCluster(), status: { rollout: { phase: 'Idle', startedAt: 'yesterday' } } })[0]?.path).toBe('status.rollout.startedAt');
    const wireguard = { keyGeneration: 1, targetKeyGeneration: 2, rotatingOrdinal: 1, step: 'RestartingPod', podUID: 'u-1', startedAt: '2025-01-02T03:04:05Z', message: 'x' };
    expect(parseVaultCluster({ ...rawCluster(), status: { ...status, wireguard } }).status?.wireguard).toEqual(wireguard);
    expect(errorsOf({ ...rawCluster(), status: { wireguard: { ...wireguard, step: 'Dancing' } } })[0]?.path).toBe('status.wireguard.step');
  });

  it('throws a readable error from parseVaultCluster', () => {
    expect(() => parseVaultCluster(rawCluster({ replicas: 2 }))).toThrow(VaultClusterValidationError);
    expect(() => parseVaultCluster(rawCluster({ replicas: 2 }))).toThrow('spec.replicas: must be 1, 3, 5 or 7');
  });

  it('pairs every cross-field CEL rule with a runtime check', () => {
    for (const rule of [...KMS_RULES, ...SPEC_RULES, ...WIREGUARD_TRANSITION_RULES]) expect(rule.rule).toMatch(/self\./);
    for (const rule of SPEC_RULES) {
      expect(rule.at).toBe('spec');
      expect(typeof rule.check).toBe('function');
      // The CEL rule and the check agree on the cases that matter.
      expect(rule.check({ trustProxy: false, trustedProxies: [] })).toBe(true);
      expect(rule.check({ trustProxy: true, trustedProxies: [] })).toBe(false);
      expect(rule.check({ trustProxy: true, trustedProxies: ['10.0.0.1'] })).toBe(true);
    }
    expect(WIREGUARD_TRANSITION_RULES[0]!.rule).toContain('oldSelf.keyGeneration');
    for (const rule of KMS_RULES) {
      expect(rule.rule).toMatch(/self\./);
      expect(typeof rule.check).toBe('function');
    }
  });
});
