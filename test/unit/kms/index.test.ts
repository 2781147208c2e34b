import { KMSClient } from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import { openVersion, sealVersion } from '../../../server/sealing/envelope.js';
import { AwsKms, EPHEMERAL_MASTER_KEY_WARNING, LocalKms, createKms, parseLocalMasterKey } from '../../../server/kms/index.js';

describe('createKms', () => {
  it('local mode with a configured master key: same key -> same key id, values readable across instances', async () => {
    const b64 = Buffer.alloc(32, 0x11).toString('base64');
    const a = createKms({ mode: 'local', localMasterKey: parseLocalMasterKey(b64), dekCacheTtlSecs: 300 });
    const b = createKms({ mode: 'local', localMasterKey: parseLocalMasterKey(b64), dekCacheTtlSecs: 300 });
    expect(a.provider).toBeInstanceOf(LocalKms);
    expect(a.ephemeralMasterKey).toBe(false);
    expect(a.provider.currentKeyId).toBe(b.provider.currentKeyId);
    const rec = await sealVersion(a.provider, 'x/y', 1, Uint8Array.of(1, 2, 3));
    expect(await openVersion(b.cache, 'x/y', 1, rec)).toEqual(Uint8Array.of(1, 2, 3));
    a.close();
    b.close();
  });

  it('local mode without a key is ephemeral and says so', () => {
    const a = createKms({ mode: 'local', dekCacheTtlSecs: 300 });
    const b = createKms({ mode: 'local', dekCacheTtlSecs: 300 });
    expect(a.ephemeralMasterKey).toBe(true);
    expect(a.provider.currentKeyId).not.toBe(b.provider.currentKeyId);
    expect(EPHEMERAL_MASTER_KEY_WARNING).toMatch(/VAULT_LOCAL_MASTER_KEY.*undecryptable/s);
    a.close();
    b.close();
  });

  it('passes the TTL to the cache (0 disables it)', () => {
    const on = createKms({ mode: 'local', dekCacheTtlSecs: 300 });
    const off = createKms({ mode: 'local', dekCacheTtlSecs: 0 });
    expect(on.cache.ttlMs).toBe(300_000);
    expect(on.cache.enabled).toBe(true);
    expect(off.cache.enabled).toBe(false);
    on.close();
    off.close();
  });

  it('close() zeroes the local master key and the cache', async () => {
    const kms = createKms({ mode: 'local', localMasterKey: new Uint8Array(32).fill(1), dekCacheTtlSecs: 300 });
    const rec = await sealVersion(kms.provider, 'a', 1, Uint8Array.of(1));
    await openVersion(kms.cache, 'a', 1, rec);
    kms.close();
    await expect(openVersion(kms.cache, 'a', 1, rec)).rejects.toThrow(/closed/);
    const held = (kms.provider as unknown as { keys: Map<string, Uint8Array> }).keys;
    expect(held.size).toBe(0);
  });

  it('aws mode requires VAULT_KMS_KEY_ID', () => {
    expect(() => createKms({ mode: 'aws', dekCacheTtlSecs: 300 })).toThrow(/VAULT_KMS_KEY_ID/);
  });

  it('aws mode builds an AwsKms; its own SDK client does not retry (AwsKms does)', async () => {
    const kms = createKms({ mode: 'aws', keyId: 'alias/coffer', dekCacheTtlSecs: 300 });
    expect(kms.provider).toBeInstanceOf(AwsKms);
    expect(kms.provider.currentKeyId).toBe('alias/coffer');
    const client = (kms.provider as unknown as { client: KMSClient }).client;
    expect(await client.config.maxAttempts()).toBe(1);
    kms.close();
  });

  it('rejects an unknown mode', () => {
    expect(() => createKms({ mode: 'gcp' as 'aws', dekCacheTtlSecs: 1 })).toThrow(/VAULT_KMS_MODE/);
  });
});
