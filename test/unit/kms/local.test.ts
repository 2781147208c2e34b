import { describe, expect, it } from 'vitest';
import {
  LocalKms, generateEphemeralMasterKey, localKeyId, parseLocalMasterKey,
} from '../../../server/kms/local.js';
import { KmsIntegrityError, KmsUnavailableError } from '../../../server/kms/provider.js';

const key32 = (fill: number) => new Uint8Array(32).fill(fill);
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const ctx = { secret: 'app/db', version: 1 };

describe('parseLocalMasterKey', () => {
  it('accepts base64 of exactly 32 bytes (trailing newline tolerated)', () => {
    const k = generateEphemeralMasterKey();
    expect(parseLocalMasterKey(b64(k))).toEqual(k);
    expect(parseLocalMasterKey(`${b64(k)}\n`)).toEqual(k);
  });

  it.each([
    ['too short', b64(new Uint8Array(31))],
    ['too long', b64(new Uint8Array(33))],
    ['empty', ''],
    ['not base64', '!'.repeat(44)],
    ['base64url alphabet', b64(key32(0xfb)).replace(/\+/g, '-').replace(/\//g, '_')],
    ['hex instead of base64', 'ab'.repeat(32)],
  ])('rejects %s with a message naming VAULT_LOCAL_MASTER_KEY and not the value', (_label, value) => {
    let msg = '';
    try {
      parseLocalMasterKey(value);
    } catch (err) {
      msg = (err as Error).message;
    }
    expect(msg).toMatch(/VAULT_LOCAL_MASTER_KEY/);
    if (value.length > 0) expect(msg).not.toContain(value);
  });
});

describe('generateEphemeralMasterKey', () => {
  it('returns 32 fresh random bytes', () => {
    const a = generateEphemeralMasterKey();
    expect(a.length).toBe(32);
    expect(a).not.toEqual(generateEphemeralMasterKey());
  });
});

describe('LocalKms', () => {
  it('uses keyId local:<first 16 hex of sha256(master key)>', () => {
    const kms = new LocalKms(key32(1));
    // sha256 of 32 bytes of 0x01, computed independently
    expect(kms.currentKeyId).toBe('local:72cd6e8422c407fb');
    expect(localKeyId(key32(1))).toBe(kms.currentKeyId);
  });

  it('generates a 32-byte DEK that round-trips through decrypt', async () => {
    const kms = new LocalKms(key32(1));
    const dk = await kms.generateDataKey(ctx);
    expect(dk.plaintext.length).toBe(32);
    expect(dk.keyId).toBe(kms.currentKeyId);
    expect(await kms.decrypt(dk.wrapped, dk.keyId, ctx)).toEqual(dk.plaintext);
  });

  it('keeps its own copy of the master key', async () => {
    const mk = key32(7);
    const kms = new LocalKms(mk);
    const dk = await kms.generateDataKey(ctx);
    mk.fill(0);
    expect(await kms.decrypt(dk.wrapped, dk.keyId, ctx)).toEqual(dk.plaintext);
  });

  it('fails a wrapped DEK moved to another version or secret', async () => {
    const kms = new LocalKms(key32(1));
    const dk = await kms.generateDataKey(ctx);
    await expect(kms.decrypt(dk.wrapped, dk.keyId, { secret: 'app/db', version: 2 })).rejects.toThrow(KmsIntegrityError);
    await expect(kms.decrypt(dk.wrapped, dk.keyId, { secret: 'app/dc', version: 1 })).rejects.toThrow(KmsIntegrityError);
  });

  it('detects a different master key (KmsIntegrityError)', async () => {
    const a = new LocalKms(key32(1));
    const b = new LocalKms(key32(2));
    const dk = await a.generateDataKey(ctx);
    await expect(b.decrypt(dk.wrapped, dk.keyId, ctx)).rejects.toThrow(KmsIntegrityError);
    // even when presented under b's own key id, the wrap does not authenticate
    await expect(b.decrypt(dk.wrapped, b.currentKeyId, ctx)).rejects.toThrow(KmsIntegrityError);
  });

  it('rejects flipped and truncated wrapped DEKs', async () => {
    const kms = new LocalKms(key32(1));
    const dk = await kms.generateDataKey(ctx);
    for (let i = 0; i < dk.wrapped.length; i++) {
      const bad = dk.wrapped.slice();
      bad[i]! ^= 0x01;
      await expect(kms.decrypt(bad, dk.keyId, ctx)).rejects.toThrow(KmsIntegrityError);
    }
    await expect(kms.decrypt(dk.wrapped.subarray(1), dk.keyId, ctx)).rejects.toThrow(KmsIntegrityError);
  });

  it('reEncrypt re-wraps with a fresh nonce and the same DEK', async () => {
    const kms = new LocalKms(key32(1));
    const dk = await kms.generateDataKey(ctx);
    const re = await kms.reEncrypt(dk.wrapped, dk.keyId, ctx);
    expect(re.keyId).toBe(kms.currentKeyId);
    expect(re.wrapped).not.toEqual(dk.wrapped);
    expect(await kms.decrypt(re.wrapped, re.keyId, ctx)).toEqual(dk.plaintext);
  });

  it('reEncrypt fails on a context mismatch', async () => {
    const kms = new LocalKms(key32(1));
    const dk = await kms.generateDataKey(ctx);
    await expect(kms.reEncrypt(dk.wrapped, dk.keyId, { ...ctx, version: 9 })).rejects.toThrow(KmsIntegrityError);
  });

  it('rotate(): new key id, old wraps still decrypt, reEncrypt moves them, rotations are listed', async () => {
    const kms = new LocalKms(key32(1), () => new Date('2024-05-01T00:00:00Z'));
    expect(await kms.listRotations()).toEqual([]);
    const old = await kms.generateDataKey(ctx);
    const newId = kms.rotate(key32(2));
    expect(newId).not.toBe(old.keyId);
    expect(kms.currentKeyId).toBe(newId);
    expect(await kms.listRotations()).toEqual([{ rotatedAt: '2024-05-01T00:00:00.000Z', keyId: newId }]);
    expect(await kms.decrypt(old.wrapped, old.keyId, ctx)).toEqual(old.plaintext);
    const re = await kms.reEncrypt(old.wrapped, old.keyId, ctx);
    expect(re.keyId).toBe(newId);
    expect(await kms.decrypt(re.wrapped, newId, ctx)).toEqual(old.plaintext);
    expect((await kms.generateDataKey(ctx)).keyId).toBe(newId);
  });

  it('close() zeroes the master key copies and refuses service', async () => {
    const kms = new LocalKms(key32(9));
    const held = [...(kms as unknown as { keys: Map<string, Uint8Array> }).keys.values()];
    expect(held[0]).toEqual(key32(9));
    const dk = await kms.generateDataKey(ctx);
    kms.close();
    expect(held[0]).toEqual(new Uint8Array(32));
    await expect(kms.decrypt(dk.wrapped, dk.keyId, ctx)).rejects.toThrow(KmsUnavailableError);
    await expect(kms.generateDataKey(ctx)).rejects.toThrow(KmsUnavailableError);
  });
});
