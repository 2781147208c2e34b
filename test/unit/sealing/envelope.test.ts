import { describe, expect, it, vi } from 'vitest';
import { openVersion, openVersionAs, sealVersion, versionAad, type SealedVersion } from '../../../server/sealing/envelope.js';
import { createVersionSealer } from '../../../server/sealing/version-sealer.js';
import type { StoredVersion } from '../../../server/store/queries.js';
import { IntegrityError } from '../../../server/crypto/errors.js';
import { openXChaCha } from '../../../server/crypto/xchacha.js';
import { DekCache } from '../../../server/kms/dek-cache.js';
import { LocalKms } from '../../../server/kms/local.js';
import { KmsUnavailableError, type KmsProvider } from '../../../server/kms/provider.js';

const value = new TextEncoder().encode('s3cr3t-password');
const newKms = () => new LocalKms(new Uint8Array(32).fill(5));

/** Wraps a provider so the DEK buffers it hands out can be inspected afterwards. */
function spying(kms: KmsProvider) {
  const deks: Uint8Array[] = [];
  const spy: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, {
    generateDataKey: vi.fn(async (c: Parameters<KmsProvider['generateDataKey']>[0]) => {
      const dk = await kms.generateDataKey(c);
      deks.push(dk.plaintext);
      return { ...dk, plaintext: dk.plaintext };
    }),
  });
  return { spy, deks };
}

function flip(rec: SealedVersion, field: 'ciphertext' | 'nonce' | 'wrappedDek', i: number): SealedVersion {
  const b = rec[field].slice();
  b[i]! ^= 0x04;
  return { ...rec, [field]: b };
}

describe('envelope', () => {
  it('AAD is the UTF-8 of name:version', () => {
    expect(Buffer.from(versionAad('app/db/pass', 12)).toString('utf8')).toBe('app/db/pass:12');
    expect(versionAad('ä', 1)).toEqual(Uint8Array.of(0xc3, 0xa4, 0x3a, 0x31));
  });

  it('seals with a fresh 24-byte nonce and DEK, asks KMS with the right context, and zeroes the DEK', async () => {
    const kms = newKms();
    const { spy, deks } = spying(kms);
    const a = await sealVersion(spy, 'app/db', 3, value);
    const b = await sealVersion(spy, 'app/db', 3, value);
    expect(spy.generateDataKey).toHaveBeenCalledWith({ secret: 'app/db', version: 3 });
    expect(a.nonce.length).toBe(24);
    expect(a.nonce).not.toEqual(b.nonce);
    expect(a.wrappedDek).not.toEqual(b.wrappedDek);
    expect(a.kmsKeyId).toBe(kms.currentKeyId);
    expect(a.ciphertext.length).toBe(value.length + 16);
    expect(deks.every((d) => d.length === 32 && d.every((x) => x === 0))).toBe(true);
    // the ciphertext is XChaCha20-Poly1305 under the DEK with AAD name:version
    const dek = await kms.decrypt(a.wrappedDek, a.kmsKeyId, { secret: 'app/db', version: 3 });
    expect(openXChaCha(dek, a.nonce, a.ciphertext, versionAad('app/db', 3))).toEqual(value);
  });

  it('zeroes the DEK even when sealing throws', async () => {
    const { spy, deks } = spying(newKms());
    await expect(sealVersion(spy, 'x', 1, null as unknown as Uint8Array)).rejects.toThrow();
    expect(deks[0]).toEqual(new Uint8Array(32));
  });

  it('opens through a provider and through the DEK cache', async () => {
    const kms = newKms();
    const rec = await sealVersion(kms, 'app/db', 1, value);
    expect(await openVersion(kms, 'app/db', 1, rec)).toEqual(value);
    const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
    expect(await openVersion(cache, 'app/db', 1, rec)).toEqual(value);
    expect(await openVersion(cache, 'app/db', 1, rec)).toEqual(value);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 });
  });

  it('seals and opens the empty value', async () => {
    const kms = newKms();
    const rec = await sealVersion(kms, 'e', 1, new Uint8Array(0));
    expect((await openVersion(kms, 'e', 1, rec)).length).toBe(0);
  });

  it('a record moved to another version or name fails with IntegrityError', async () => {
    const kms = newKms();
    const rec = await sealVersion(kms, 'app/db', 1, value);
    await expect(openVersion(kms, 'app/db', 2, rec)).rejects.toThrow(IntegrityError);
    await expect(openVersion(kms, 'app/dc', 1, rec)).rejects.toThrow(IntegrityError);
  });

  it('only the ciphertext moved onto another row (same DEK row kept) fails, even with a warm cache', async () => {
    const kms = newKms();
    const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
    const v1 = await sealVersion(kms, 'app/db', 1, value);
    const v2 = await sealVersion(kms, 'app/db', 2, new TextEncoder().encode('other'));
    await openVersion(cache, 'app/db', 1, v1);
    await openVersion(cache, 'app/db', 2, v2);
    await expect(openVersion(cache, 'app/db', 2, { ...v2, ciphertext: v1.ciphertext, nonce: v1.nonce })).rejects.toThrow(IntegrityError);
    await expect(openVersion(cache, 'app/db', 2, { ...v1 })).rejects.toThrow(IntegrityError);
  });

  it('any flipped byte of ciphertext, nonce or wrapped DEK fails with IntegrityError', async () => {
    const kms = newKms();
    const rec = await sealVersion(kms, 'app/db', 1, value);
    for (const field of ['ciphertext', 'nonce', 'wrappedDek'] as const) {
      for (let i = 0; i < rec[field].length; i++) {
        await expect(openVersion(kms, 'app/db', 1, flip(rec, field, i)), `${field}[${i}]`).rejects.toThrow(IntegrityError);
      }
    }
  });

  it('with a warm cache (DEK and subkey cached), any flipped byte still fails and the good record still opens', async () => {
    const kms = newKms();
    const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
    const rec = await sealVersion(kms, 'app/db', 1, value);
    expect(await openVersion(cache, 'app/db', 1, rec)).toEqual(value);
    expect(await openVersion(cache, 'app/db', 1, rec)).toEqual(value);
    for (const field of ['ciphertext', 'nonce', 'wrappedDek'] as const) {
      for (let i = 0; i < rec[field].length; i++) {
        await expect(openVersion(cache, 'app/db', 1, flip(rec, field, i)), `${field}[${i}]`).rejects.toThrow(IntegrityError);
        expect(await openVersion(cache, 'app/db', 1, rec), `${field}[${i}] then the good record`).toEqual(value);
      }
    }
    await expect(openVersion(cache, 'app/db', 1, { ...rec, kmsKeyId: 'local:0000000000000000' })).rejects.toThrow(IntegrityError);
    await expect(openVersion(cache, 'app/db', 2, rec)).rejects.toThrow(IntegrityError);
    await expect(openVersion(cache, 'app/dc', 1, rec)).rejects.toThrow(IntegrityError);
  });

  it('a warm read neither calls KMS nor leaves the DEK anywhere but the cache', async () => {
    const kms = newKms();
    const decrypt = vi.spyOn(kms, 'decrypt');
    const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
    const rec = await sealVersion(kms, 'app/db', 1, value);
    await openVersion(cache, 'app/db', 1, rec);
    const plain = await openVersion(cache, 'app/db', 1, rec);
    expect(plain).toEqual(value);
    expect(Object.getPrototypeOf(plain)).toBe(Uint8Array.prototype);
    expect(decrypt).toHaveBeenCalledTimes(1);
    cache.close();
    await expect(openVersion(cache, 'app/db', 1, rec)).rejects.toThrow(/closed/);
  });

  it('a record wrapped under another master key fails with IntegrityError', async () => {
    const rec = await sealVersion(newKms(), 'app/db', 1, value);
    const other = new LocalKms(new Uint8Array(32).fill(6));
    await expect(openVersion(other, 'app/db', 1, rec)).rejects.toThrow(IntegrityError);
  });

  it('KmsUnavailableError passes through unchanged', async () => {
    const kms = newKms();
    const rec = await sealVersion(kms, 'app/db', 1, value);
    const down: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, {
      decrypt: async () => { throw new KmsUnavailableError('KMS Decrypt failed (ThrottlingException)'); },
    });
    await expect(openVersion(down, 'app/db', 1, rec)).rejects.toThrow(KmsUnavailableError);
    await expect(openVersion(new DekCache(down, { ttlSecs: 60, sweepIntervalMs: 0 }), 'app/db', 1, rec)).rejects.toThrow(KmsUnavailableError);
  });

  it('a warm cache serves reads while KMS is down (outage resilience)', async () => {
    const kms = newKms();
    let up = true;
    const flaky: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, {
      decrypt: async (...a: Parameters<KmsProvider['decrypt']>) => {
        if (!up) throw new KmsUnavailableError('down');
        return kms.decrypt(...a);
      },
    });
    const cache = new DekCache(flaky, { ttlSecs: 60, sweepIntervalMs: 0 });
    const rec = await sealVersion(kms, 'app/db', 1, value);
    await openVersion(cache, 'app/db', 1, rec);
    up = false;
    expect(await openVersion(cache, 'app/db', 1, rec)).toEqual(value);
  });

  it('rejects non-positive or fractional versions', async () => {
    await expect(sealVersion(newKms(), 'a', 0, value)).rejects.toThrow(RangeError);
    await expect(sealVersion(newKms(), 'a', 1.5, value)).rejects.toThrow(RangeError);
  });

  describe('openVersionAs (the value read path)', () => {
    const text = (p: Uint8Array) => Buffer.from(p).toString('utf8');

    it('lends the plaintext to read() and zeroes it afterwards, through a provider, a cold cache and a warm one', async () => {
      const kms = newKms();
      const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
      const rec = await sealVersion(kms, 'app/db', 1, value);
      for (const keys of [kms, cache, cache]) {
        let lent: Uint8Array | undefined;
        const out = await openVersionAs(keys, 'app/db', 1, rec, (p) => { lent = p; return text(p); });
        expect(out).toBe('s3cr3t-password');
        expect(lent!.every((b) => b === 0)).toBe(true);
      }
    });

    it('tampered records fail on the warm synchronous path too, and read() never sees their bytes', async () => {
      const kms = newKms();
      const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
      const rec = await sealVersion(kms, 'app/db', 1, value);
      await openVersionAs(cache, 'app/db', 1, rec, text);
      const read = vi.fn(text);
      for (const field of ['ciphertext', 'nonce'] as const) {
        for (let i = 0; i < rec[field].length; i++) {
          expect(() => openVersionAs(cache, 'app/db', 1, flip(rec, field, i), read)).toThrow(IntegrityError);
        }
      }
      expect(read).not.toHaveBeenCalled();
    });
  });

  describe('createVersionSealer().openText (the value read path, by the reader\'s cached row)', () => {
    /** A row as StateReader.getVersion hands it out: frozen, replaced rather than changed. */
    const row = (name: string, version: number, rec: SealedVersion): StoredVersion => Object.freeze({
      name, version, ciphertext: rec.ciphertext, nonce: rec.nonce, wrapped_dek: rec.wrappedDek, kms_key_id: rec.kmsKeyId, created_at: '2026-01-01T00:00:00.000Z',
    });
    const sealerOver = (kms: LocalKms) => {
      const cache = new DekCache(kms, { ttlSecs: 60, sweepIntervalMs: 0 });
      return { cache, sealer: createVersionSealer({ provider: kms, cache }) };
    };

    it('seals a value that opens as text; a warm read of the same row is synchronous', async () => {
      const kms = newKms();
      const decrypt = vi.spyOn(kms, 'decrypt');
      const { sealer } = sealerOver(kms);
      const r = row('app/db', 1, await sealer.seal('app/db', 1, value));
      expect(await sealer.openText(r)).toBe('s3cr3t-password');
      expect(sealer.openText(r)).toBe('s3cr3t-password');
      expect(decrypt).toHaveBeenCalledTimes(1);
    });

    it('each row opens with its own name and version: a record stored under another version fails', async () => {
      const kms = newKms();
      const { sealer } = sealerOver(kms);
      const v1 = await sealer.seal('app/db', 1, value);
      const v2 = await sealer.seal('app/db', 2, value);
      expect(await sealer.openText(row('app/db', 1, v1))).toBe('s3cr3t-password');
      expect(await sealer.openText(row('app/db', 2, v2))).toBe('s3cr3t-password');
      await expect(Promise.resolve().then(() => sealer.openText(row('app/db', 2, v1)))).rejects.toThrow(IntegrityError);
    });

    it('a tampered row fails on the warm synchronous path too', async () => {
      const kms = newKms();
      const { cache, sealer } = sealerOver(kms);
      const rec = await sealer.seal('app/db', 1, value);
      await sealer.openText(row('app/db', 1, rec));
      for (const field of ['ciphertext', 'nonce'] as const) {
        expect(() => sealer.openText(row('app/db', 1, flip(rec, field, 3)))).toThrow(IntegrityError);
      }
      expect(cache.stats().misses).toBe(1);
    });
  });
});
