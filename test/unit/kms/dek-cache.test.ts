import { describe, expect, it, vi } from 'vitest';
import { DekCache, type DekMemo } from '../../../server/kms/dek-cache.js';
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

describe('DekCache.useDerivedKey (the per-version subkey beside the DEK)', () => {
  // A stand-in derivation; the cache must not care what it computes, only keep and zero its result.
  const derive = (dek: Uint8Array, salt: Uint8Array) => Uint8Array.from(dek, (b, i) => b ^ salt[i % salt.length]!);
  const salt = Uint8Array.of(1, 2, 3, 4);
  const isPromise = (x: unknown): x is Promise<unknown> => typeof (x as { then?: unknown })?.then === 'function';

  /** Runs useDerivedKey and returns [a copy of the key `use` saw, the very array it saw, whether the call was synchronous]. */
  async function use(
    c: DekCache, dk: { keyId: string; wrapped: Uint8Array }, opts: { cx?: EncryptionContext; salt?: Uint8Array; d?: typeof derive; memo?: DekMemo } = {},
  ) {
    let seen: Uint8Array | undefined;
    const out = c.useDerivedKey(dk.keyId, dk.wrapped, opts.cx ?? ctx(), opts.d ?? derive, opts.salt ?? salt, (k) => {
      seen = k;
      return k.slice();
    }, opts.memo);
    const sync = !isPromise(out);
    return { copy: await out, seen: seen!, sync };
  }

  it('a hit is synchronous and hands over the key derived once per entry and salt', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const counted = vi.fn(derive);
    const first = await use(s.cache, dk, { d: counted });
    expect(first.sync).toBe(false); // the miss went to KMS
    expect(first.copy).toEqual(derive(dk.plaintext, salt));
    const second = await use(s.cache, dk, { d: counted });
    expect(second.sync).toBe(true);
    expect(second.copy).toEqual(first.copy);
    expect(second.seen).toBe(first.seen); // the cached key itself, not a new derivation
    expect(counted).toHaveBeenCalledTimes(1);
    expect(s.decrypt).toHaveBeenCalledTimes(1);
    expect(s.cache.stats()).toMatchObject({ hits: 1, misses: 1, size: 1 });
  });

  it('another salt (or derivation) derives again and zeroes the key it replaces', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const a = await use(s.cache, dk);
    const otherSalt = Uint8Array.of(9, 9, 9, 9);
    const b = await use(s.cache, dk, { salt: otherSalt });
    expect(b.sync).toBe(true);
    expect(b.copy).toEqual(derive(dk.plaintext, otherSalt));
    expect(a.seen).toEqual(new Uint8Array(32));
    const other = (dek: Uint8Array, sl: Uint8Array) => derive(dek, sl).map((x) => x ^ 0xff);
    const c = await use(s.cache, dk, { salt: otherSalt, d: other });
    expect(c.copy).toEqual(other(dk.plaintext, otherSalt));
    expect(b.seen).toEqual(new Uint8Array(32));
    expect(s.decrypt).toHaveBeenCalledTimes(1);
  });

  it('the salt is copied: changing the caller\'s array later does not change what a hit is bound to', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const mine = salt.slice();
    const a = await use(s.cache, dk, { salt: mine });
    mine[0]! ^= 0xff;
    const b = await use(s.cache, dk, { salt: mine });
    expect(b.copy).toEqual(derive(dk.plaintext, mine));
    expect(b.copy).not.toEqual(a.copy);
  });

  it('derived keys are zeroed with their DEK on expiry, eviction, clear and close', async () => {
    const s = setup({ ttlSecs: 10, maxEntries: 1 });
    const one = await s.kms.generateDataKey(ctx(1));
    const two = await s.kms.generateDataKey(ctx(2));
    const expired = await use(s.cache, one, { cx: ctx(1) });
    s.clock.t += 10_000;
    s.cache.sweep();
    expect(expired.seen).toEqual(new Uint8Array(32));
    const evicted = await use(s.cache, one, { cx: ctx(1) });
    await use(s.cache, two, { cx: ctx(2) }); // maxEntries 1: evicts version 1
    expect(evicted.seen).toEqual(new Uint8Array(32));
    const cleared = await use(s.cache, one, { cx: ctx(1) });
    s.cache.clear();
    expect(cleared.seen).toEqual(new Uint8Array(32));
    const closed = await use(s.cache, one, { cx: ctx(1) });
    s.cache.close();
    expect(closed.seen).toEqual(new Uint8Array(32));
    expect(s.returned.every((d) => d.every((x) => x === 0))).toBe(true);
    expect(() => s.cache.useDerivedKey(one.keyId, one.wrapped, ctx(1), derive, salt, (k) => k)).toThrow(/closed/);
  });

  it('is bound to the wrapped DEK, key id and context: a changed one misses and goes to KMS, the good entry stays', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const good = await use(s.cache, dk);
    const flipped = dk.wrapped.slice();
    flipped[flipped.length >> 1]! ^= 0x01;
    await expect(use(s.cache, { ...dk, wrapped: flipped })).rejects.toThrow(KmsIntegrityError);
    await expect(use(s.cache, { ...dk, wrapped: dk.wrapped.subarray(1) })).rejects.toThrow(KmsIntegrityError);
    await expect(use(s.cache, { ...dk, keyId: 'local:0000000000000000' })).rejects.toThrow(KmsIntegrityError);
    await expect(use(s.cache, dk, { cx: ctx(2) })).rejects.toThrow(KmsIntegrityError);
    expect(s.decrypt).toHaveBeenCalledTimes(5);
    const again = await use(s.cache, dk);
    expect(again.sync).toBe(true);
    expect(again.seen).toBe(good.seen);
    expect(s.cache.stats()).toMatchObject({ size: 1 });
  });

  it('a new wrap of the same version (re-wrap) that unwraps replaces the entry and zeroes the old one', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const before = await use(s.cache, dk);
    const rewrapped = await s.kms.reEncrypt(dk.wrapped, dk.keyId, ctx());
    const after = await use(s.cache, rewrapped);
    expect(after.sync).toBe(false);
    expect(after.copy).toEqual(before.copy); // same DEK underneath
    expect(before.seen).toEqual(new Uint8Array(32));
    expect(s.returned[0]).toEqual(new Uint8Array(32));
    expect(s.cache.stats()).toMatchObject({ size: 1 });
    expect((await use(s.cache, rewrapped)).sync).toBe(true);
  });

  it('an error thrown by `use` on a hit propagates synchronously and keeps the entry', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    await use(s.cache, dk);
    expect(() => s.cache.useDerivedKey(dk.keyId, dk.wrapped, ctx(), derive, salt, () => { throw new Error('bad tag'); })).toThrow('bad tag');
    expect((await use(s.cache, dk)).sync).toBe(true);
  });

  it('ttl 0: every call unwraps, derives from that DEK, and zeroes both afterwards', async () => {
    const s = setup({ ttlSecs: 0 });
    const dk = await s.kms.generateDataKey(ctx());
    const a = await use(s.cache, dk);
    const b = await use(s.cache, dk);
    expect(a.sync).toBe(false);
    expect(b.sync).toBe(false);
    expect(a.copy).toEqual(derive(dk.plaintext, salt));
    expect(a.seen).toEqual(new Uint8Array(32));
    expect(b.seen).toEqual(new Uint8Array(32));
    expect(s.returned.every((d) => d.every((x) => x === 0))).toBe(true);
    expect(s.decrypt).toHaveBeenCalledTimes(2);
  });

  it('concurrent misses share one KMS call and all get the key', async () => {
    const s = setup();
    const dk = await s.kms.generateDataKey(ctx());
    const release = s.hold();
    const calls = Array.from({ length: 5 }, () => use(s.cache, dk));
    await Promise.resolve();
    release();
    for (const r of await Promise.all(calls)) expect(r.copy).toEqual(derive(dk.plaintext, salt));
    expect(s.decrypt).toHaveBeenCalledTimes(1);
  });

  describe('through a memo (kept per cached row by the sealing layer)', () => {
    const memo = (): DekMemo => ({ entry: undefined });

    it('hits through the memo: synchronous, no KMS call, the same derived key, counted as a hit', async () => {
      const s = setup();
      const dk = await s.kms.generateDataKey(ctx());
      const row = memo();
      const first = await use(s.cache, dk, { memo: row });
      const second = await use(s.cache, dk, { memo: row });
      expect(second.sync).toBe(true);
      expect(second.seen).toBe(first.seen);
      expect(s.decrypt).toHaveBeenCalledTimes(1);
      expect(s.cache.stats()).toMatchObject({ hits: 1, misses: 1 });
    });

    it('never hands over a dropped entry: expiry, clear and a re-wrap that replaced it all go back to KMS or the new entry', async () => {
      const s = setup({ ttlSecs: 10 });
      const dk = await s.kms.generateDataKey(ctx());
      const row = memo();
      const a = await use(s.cache, dk, { memo: row });
      s.clock.t += 10_000; // expired, not yet swept
      const b = await use(s.cache, dk, { memo: row });
      expect(b.sync).toBe(false);
      expect(a.seen).toEqual(new Uint8Array(32));
      s.cache.clear();
      const c = await use(s.cache, dk, { memo: row });
      expect(c.sync).toBe(false);
      expect(b.seen).toEqual(new Uint8Array(32));
      expect(s.decrypt).toHaveBeenCalledTimes(3);
      // Another row's memo with a new wrap of this version replaces the entry; the old memo's entry is dead.
      const rewrapped = await s.kms.reEncrypt(dk.wrapped, dk.keyId, ctx());
      await use(s.cache, rewrapped, { memo: memo() });
      expect(c.seen).toEqual(new Uint8Array(32));
      const d = await use(s.cache, dk, { memo: row });
      expect(d.copy).toEqual(derive(dk.plaintext, salt));
      expect(d.sync).toBe(false); // the old wrap is no longer cached: KMS again
      expect(s.decrypt).toHaveBeenCalledTimes(5);
    });

    it('a memo shared by two caches never hands one cache\'s entry to the other', async () => {
      const s = setup();
      const other = new DekCache(s.kms, { ttlSecs: 60, sweepIntervalMs: 0 });
      const dk = await s.kms.generateDataKey(ctx());
      const row = memo();
      await use(s.cache, dk, { memo: row });
      expect((await use(other, dk, { memo: row })).sync).toBe(false);
      expect(other.stats()).toMatchObject({ hits: 0, misses: 1 });
      other.close();
    });

    it('a new memo for changed bytes is compared in full: a flipped wrapped DEK still misses', async () => {
      const s = setup();
      const dk = await s.kms.generateDataKey(ctx());
      await use(s.cache, dk, { memo: memo() });
      const flipped = dk.wrapped.slice();
      flipped[3]! ^= 0x01;
      await expect(use(s.cache, { ...dk, wrapped: flipped }, { memo: memo() })).rejects.toThrow(KmsIntegrityError);
      expect(s.decrypt).toHaveBeenCalledTimes(2);
    });

    it('keeps LRU order: a row read through its memo at least once a second stays, an idle one is evicted', async () => {
      const s = setup({ maxEntries: 2 });
      const one = await s.kms.generateDataKey(ctx(1));
      const two = await s.kms.generateDataKey(ctx(2));
      const three = await s.kms.generateDataKey(ctx(3));
      const rowOne = memo();
      await use(s.cache, one, { cx: ctx(1), memo: rowOne });
      s.clock.t += 1;
      await use(s.cache, two, { cx: ctx(2), memo: memo() });
      s.clock.t += 1_000;
      expect((await use(s.cache, one, { cx: ctx(1), memo: rowOne })).sync).toBe(true); // moves version 1 to most recent
      await use(s.cache, three, { cx: ctx(3), memo: memo() }); // evicts version 2, the least recently used
      expect((await use(s.cache, one, { cx: ctx(1), memo: rowOne })).sync).toBe(true);
      expect((await use(s.cache, two, { cx: ctx(2) })).sync).toBe(false);
      expect(s.cache.stats().evictions).toBe(2);
    });
  });
});
