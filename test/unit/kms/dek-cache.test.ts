import { describe, expect, it, vi } from 'vitest';
import { DekCache } from '../../../server/kms/dek-cache.js';
import { LocalKms } from '../../../server/kms/local.js';
import { KmsIntegrityError, KmsUnavailableError, type EncryptionContext, type KmsProvider } from '../../../server/kms/provider.js';

/** A LocalKms whose decrypt is counted, can be failed and can be held open. */
function setup(opts: { ttlSecs?: number; maxEntries?: number } = {}) {
  const kms = new LocalKms(new Uint8Array(32).fill(3));
  const clock = { t: 1_000_000 };
  const returned: Uint8Array[] = []; // every DEK buffer decrypt handed to the cache
  let gate: Promise<void> | undefined;
  let fail: Error | undefined;
  const decrypt = vi.fn(async (w: Uint8Array, id: string, c: EncryptionContext) => {
    if (gate) await gate;
    if (fail) throw fail;
    const dek = await kms.decrypt(w, id, c);
    returned.push(dek);
    return dek;
  });
  const provider: KmsProvider = Object.assign(Object.create(kms) as KmsProvider, { decrypt });
  const cache = new DekCache(provider, { ttlSecs: opts.ttlSecs ?? 300, maxEntries: opts.maxEntries, now: () => clock.t, sweepIntervalMs: 0 });
  return {
    kms, cache, clock, decrypt, returned,
    hold() { let release!: () => void; gate = new Promise((r) => { release = r; }); return () => { gate = undefined; release(); }; },
    failWith(e: Error | undefined) { fail = e; },
  };
}

const ctx = (version = 1): EncryptionContext => ({ secret: 'app/db', version });
const copyOf = (c: DekCache, dk: { keyId: string; wrapped: Uint8Array }, cx = ctx()) => c.withDek(dk.keyId, dk.wrapped, cx, (d) => d.slice());

describe('DekCache', () => {
  it('hits after the first miss and counts both', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(s.decrypt).toHaveBeenCalledTimes(1);
    expect(s.cache.stats()).toMatchObject({ hits: 1, misses: 1, size: 1 });
  });

  it('keys on the encryption context and key id, not just the wrapped bytes', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    await copyOf(s.cache, dk);
    await expect(copyOf(s.cache, dk, ctx(2))).rejects.toThrow(KmsIntegrityError);
    await expect(copyOf(s.cache, { ...dk, keyId: 'local:0000000000000000' })).rejects.toThrow(KmsIntegrityError);
    expect(s.decrypt).toHaveBeenCalledTimes(3);
  });

  it('lends a copy that is zeroed after the callback, also when it throws or is async', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    let kept: Uint8Array | undefined;
    await s.cache.withDek(dk.keyId, dk.wrapped, ctx(), (d) => { kept = d; expect(d).toEqual(dk.plaintext); });
    expect(kept).toEqual(new Uint8Array(32));
    await expect(s.cache.withDek(dk.keyId, dk.wrapped, ctx(), (d) => { kept = d; throw new Error('boom'); })).rejects.toThrow('boom');
    expect(kept).toEqual(new Uint8Array(32));
    await s.cache.withDek(dk.keyId, dk.wrapped, ctx(), async (d) => { kept = d; await Promise.resolve(); expect(d).toEqual(dk.plaintext); });
    expect(kept).toEqual(new Uint8Array(32));
    // the cached entry itself is intact
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
  });

  it('expires entries after the TTL (fake clock) and zeroes them', async () => {
    const s = setup({ ttlSecs: 300 });
    const dk = await s.kms.generateDataKey(ctx());
    await copyOf(s.cache, dk);
    const cached = s.returned[0]!;
    s.clock.t += 299_999;
    await copyOf(s.cache, dk);
    expect(s.decrypt).toHaveBeenCalledTimes(1);
    expect(cached).toEqual(dk.plaintext);
    s.clock.t += 1; // exactly 300 s after the unwrap: hits do not extend the lifetime
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(s.decrypt).toHaveBeenCalledTimes(2);
    expect(cached).toEqual(new Uint8Array(32));
    expect(s.cache.stats()).toMatchObject({ hits: 1, misses: 2, expirations: 1, size: 1 });
  });

  it('sweep() zeroes expired entries nobody asks for again', async () => {
    const s = setup({ ttlSecs: 10 });
    const a = await s.kms.generateDataKey(ctx(1));
    await copyOf(s.cache, a, ctx(1));
    s.clock.t += 5_000;
    const b = await s.kms.generateDataKey(ctx(2));
    await copyOf(s.cache, b, ctx(2));
    s.clock.t += 5_000;
    s.cache.sweep();
    expect(s.returned[0]).toEqual(new Uint8Array(32));
    expect(s.returned[1]).toEqual(b.plaintext);
    expect(s.cache.stats()).toMatchObject({ size: 1, expirations: 1 });
  });

  it('evicts the least recently used entry beyond maxEntries and zeroes it', async () => {
    const s = setup({ maxEntries: 2 });
    const dks = await Promise.all([1, 2, 3].map((v) => s.kms.generateDataKey(ctx(v))));
    await copyOf(s.cache, dks[0]!, ctx(1));
    await copyOf(s.cache, dks[1]!, ctx(2));
    await copyOf(s.cache, dks[0]!, ctx(1)); // 1 is now most recently used
    await copyOf(s.cache, dks[2]!, ctx(3)); // evicts 2
    expect(s.returned[1]).toEqual(new Uint8Array(32));
    expect(s.returned[0]).toEqual(dks[0]!.plaintext);
    expect(s.cache.stats()).toMatchObject({ evictions: 1, size: 2 });
    await copyOf(s.cache, dks[0]!, ctx(1));
    expect(s.decrypt).toHaveBeenCalledTimes(3);
    await copyOf(s.cache, dks[1]!, ctx(2));
    expect(s.decrypt).toHaveBeenCalledTimes(4);
  });

  it('clear() and close() zero every entry; close() refuses later use', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    await copyOf(s.cache, dk);
    s.cache.clear();
    expect(s.returned[0]).toEqual(new Uint8Array(32));
    expect(s.cache.stats().size).toBe(0);
    await copyOf(s.cache, dk);
    s.cache.close();
    expect(s.returned[1]).toEqual(new Uint8Array(32));
    await expect(copyOf(s.cache, dk)).rejects.toThrow(/closed/);
  });

  it('ttl 0 disables caching: every read unwraps, and the DEK is zeroed after use', async () => {
    const s = setup({ ttlSecs: 0 });
    const dk = await s.kms.generateDataKey(ctx());
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(s.decrypt).toHaveBeenCalledTimes(2);
    expect(s.returned.every((b) => b.every((x) => x === 0))).toBe(true);
    expect(s.cache.stats()).toMatchObject({ hits: 0, size: 0 });
  });

  it('concurrent misses for one key share one KMS call', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const release = s.hold();
    const reads = Array.from({ length: 10 }, () => copyOf(s.cache, dk));
    await Promise.resolve();
    release();
    for (const r of await Promise.all(reads)) expect(r).toEqual(dk.plaintext);
    expect(s.decrypt).toHaveBeenCalledTimes(1);
    expect(s.cache.stats()).toMatchObject({ misses: 10, size: 1 });
  });

  it('a failed unwrap reaches every waiter, is not cached, and the next read retries', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    s.failWith(new KmsUnavailableError('KMS Decrypt failed (ThrottlingException)'));
    const release = s.hold();
    const reads = [copyOf(s.cache, dk), copyOf(s.cache, dk)];
    release();
    for (const r of reads) await expect(r).rejects.toThrow(KmsUnavailableError);
    expect(s.decrypt).toHaveBeenCalledTimes(1);
    s.failWith(undefined);
    expect(await copyOf(s.cache, dk)).toEqual(dk.plaintext);
    expect(s.decrypt).toHaveBeenCalledTimes(2);
  });

  it('a clear() during an in-flight unwrap does not repopulate the cache, and the waiter still gets its DEK', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const release = s.hold();
    const read = copyOf(s.cache, dk);
    s.cache.clear();
    release();
    expect(await read).toEqual(dk.plaintext);
    expect(s.cache.stats().size).toBe(0);
    // the discarded load's buffer was zeroed
    expect(s.returned[0]).toEqual(new Uint8Array(32));
  });

  it('rejects a negative TTL', () => {
    expect(() => new DekCache(new LocalKms(new Uint8Array(32)), { ttlSecs: -1 })).toThrow(RangeError);
  });
});
