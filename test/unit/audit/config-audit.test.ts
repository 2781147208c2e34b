// VAULT_AUDIT_RETENTION and VAULT_AUDIT_MAX_BYTES (issue 16).
import { describe, expect, it } from 'vitest';
import { loadConfig, parseBytes, parseDuration } from '../../../server/config/config.js';

describe('audit configuration', () => {
  it('defaults: 30 days of retention, the cap left to the node (a quarter of the volume)', () => {
    const c = loadConfig({ VAULT_NODE_ID: 'a' });
    expect(c.auditRetentionMs).toBe(30 * 86_400_000);
    expect(c.auditMaxBytes).toBeNull();
  });

  it('reads durations and sizes', () => {
    expect(loadConfig({ VAULT_NODE_ID: 'a', VAULT_AUDIT_RETENTION: '12h' }).auditRetentionMs).toBe(12 * 3_600_000);
    expect(parseDuration('90m')).toBe(90 * 60_000);
    expect(parseDuration('45s')).toBe(45_000);
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(loadConfig({ VAULT_NODE_ID: 'a', VAULT_AUDIT_MAX_BYTES: '4Mi' }).auditMaxBytes).toBe(4 * 1024 * 1024);
    expect(parseBytes('268435456')).toBe(268_435_456);
    expect(parseBytes('512Ki')).toBe(512 * 1024);
    expect(parseBytes('1Gi')).toBe(1024 ** 3);
  });

  it('refuses malformed values, naming the variable', () => {
    for (const bad of ['30', '1w', '-1d', '0d', '1.5h', 'd']) {
      expect(() => loadConfig({ VAULT_NODE_ID: 'a', VAULT_AUDIT_RETENTION: bad }), bad).toThrow(/VAULT_AUDIT_RETENTION/);
    }
    for (const bad of ['4MB', '4M', '1.5Gi', 'lots', '-1']) {
      expect(() => loadConfig({ VAULT_NODE_ID: 'a', VAULT_AUDIT_MAX_BYTES: bad }), bad).toThrow(/VAULT_AUDIT_MAX_BYTES/);
    }
    expect(() => loadConfig({ VAULT_NODE_ID: 'a', VAULT_AUDIT_MAX_BYTES: '512Ki' })).toThrow(/at least 1Mi/);
  });
});
