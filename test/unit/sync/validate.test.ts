import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../../sync/api/duration.js';
import { refreshIntervalMs, validateCofferSecret } from '../../../sync/api/validate.js';

const base = () => ({
  apiVersion: 'coffer.dev/v1alpha1',
  kind: 'CofferSecret',
  metadata: { name: 'app-db', namespace: 'demo' },
  spec: {
    vaultRef: { name: 'vault', namespace: 'coffer' },
    tokenSecretRef: { name: 'coffer-token' },
    data: [{ key: 'DB_PASSWORD', name: 'app/db/password' }] as Record<string, unknown>[],
  } as Record<string, unknown>,
});

function errorsOf(obj: unknown) {
  const r = validateCofferSecret(obj);
  return r.ok ? [] : r.errors;
}

describe('validateCofferSecret', () => {
  it('applies the defaults and leaves the input alone', () => {
    const input = base();
    const r = validateCofferSecret(input);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.spec.target).toEqual({ type: 'Opaque' });
    expect(r.value.spec.refreshInterval).toBe('5m');
    expect(r.value.spec.tokenSecretRef.key).toBe('token');
    expect(r.value.spec.rolloutRestartTargets).toEqual([]);
    expect(refreshIntervalMs(r.value)).toBe(300_000);
    expect(input.spec['target']).toBeUndefined();
  });

  it('vaultRef needs exactly one of name and address', () => {
    const both = base();
    both.spec['vaultRef'] = { name: 'vault', address: 'https://coffer.example:8200' };
    expect(errorsOf(both)).toEqual([{ path: 'spec.vaultRef', message: expect.stringContaining('exactly one of name') }]);
    const neither = base();
    neither.spec['vaultRef'] = {};
    expect(errorsOf(neither)).toEqual([{ path: 'spec.vaultRef', message: expect.stringContaining('exactly one of name') }]);
    const addr = base();
    addr.spec['vaultRef'] = { address: 'https://coffer.example:8200', namespace: 'x' };
    expect(errorsOf(addr)).toEqual([{ path: 'spec.vaultRef.namespace', message: 'vaultRef.namespace only goes with vaultRef.name' }]);
    const ok = base();
    ok.spec['vaultRef'] = { address: 'http://10.0.0.1:8200' };
    expect(errorsOf(ok)).toEqual([]);
  });

  it.each(['a/../b', '..', 'a/./b', '/a', 'a/', 'a//b', 'a b', ''])('refuses the Coffer name %j', (name) => {
    const obj = base();
    obj.spec['data'] = [{ key: 'K', name }];
    expect(errorsOf(obj).map((e) => e.path)).toEqual(['spec.data[0].name']);
  });

  it.each(['a', 'app/db/password', '.hidden/x', '..x/y', 'a.b_c-d/e'])('accepts the Coffer name %j', (name) => {
    const obj = base();
    obj.spec['data'] = [{ key: 'K', name }];
    expect(errorsOf(obj)).toEqual([]);
  });

  it('refuses a key twice, an empty list, a bad version', () => {
    const dup = base();
    dup.spec['data'] = [{ key: 'K', name: 'a' }, { key: 'K', name: 'b' }];
    expect(errorsOf(dup)).toEqual([{ path: 'spec.data', message: 'each key may appear only once in data' }]);
    const empty = base();
    empty.spec['data'] = [];
    expect(errorsOf(empty).map((e) => e.path)).toEqual(['spec.data']);
    const v0 = base();
    v0.spec['data'] = [{ key: 'K', name: 'a', version: 0 }];
    expect(errorsOf(v0).map((e) => e.path)).toEqual(['spec.data[0].version']);
  });

  it('refuses an unknown restart kind and unknown fields', () => {
    const obj = base();
    obj.spec['rolloutRestartTargets'] = [{ kind: 'Pod', name: 'x' }];
    obj.spec['extra'] = 1;
    expect(errorsOf(obj).map((e) => e.path).sort()).toEqual(['spec.extra', 'spec.rolloutRestartTargets[0].kind']);
  });

  it.each([
    ['10s', true], ['30s', true], ['1h30m', true], ['24h', true],
    ['9s', false], ['25h', false], ['24h1s', false], ['5', false], ['1m1h', false], ['x', false],
  ])('refreshInterval %j ok=%j', (refreshInterval, ok) => {
    const obj = base();
    obj.spec['refreshInterval'] = refreshInterval;
    const errors = errorsOf(obj);
    expect(errors.length === 0).toBe(ok);
    if (!ok) expect(errors[0]!.path).toBe('spec.refreshInterval');
  });

  it('names the bounds when out of range', () => {
    const obj = base();
    obj.spec['refreshInterval'] = '5s';
    expect(errorsOf(obj)).toEqual([{ path: 'spec.refreshInterval', message: 'must be between 10s and 24h' }]);
  });
});

describe('parseDuration', () => {
  it.each([
    ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['1h30m', 5_400_000], ['2m5s', 125_000], ['0s', 0],
  ])('%j = %j ms', (s, ms) => expect(parseDuration(s)).toBe(ms));
  it.each(['', 'h', '5', '1.5h', '-1s', '1s1m', ' 5m', '5ms'])('%j is not a duration', (s) => expect(parseDuration(s)).toBeUndefined());
});
