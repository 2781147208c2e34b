// In-memory cache of unwrapped DEKs, so reads survive short KMS outages and
// do not pay a KMS round trip each (DESIGN §1 "KMS-outage resilience").
//
// - An entry is bound to (kms_key_id, encryption context, wrapped DEK bytes):
//   a hit needs all three to match exactly, so a hit can never skip the
//   KMS-side context check, and a row whose wrapped DEK was changed underneath
//   misses and goes to KMS. Entries are found by context (secret, version);
//   another key id or wrapped DEK for the same version is a miss (a successful
//   unwrap of it replaces the entry, e.g. after a re-wrap).
// - Lifetime is counted from the unwrap, not refreshed by hits: TTL bounds how
//   long key material stays in memory. ttlSecs = 0 disables caching entirely.
// - LRU-bounded; every entry is zeroed on eviction, expiry, clear and close.
// - DEKs are lent: `withDek` hands the callback a copy that is zeroed when the
//   callback settles, so no caller can keep a live reference.
// - `useDerivedKey` keeps one key derived from the DEK per entry (the value
//   read path: the XChaCha20 subkey of the version's nonce), bound to the salt
//   it was derived with, with the DEK's lifetime and zeroed with it. A hit
//   calls a synchronous callback with it directly: no KMS call, no derivation,
//   no copy, no promise.
// - Concurrent misses for one key share a single KMS call.
// Only DEKs and keys derived from them live here; plaintext secret values are never cached.

import type { EncryptionContext, KmsProvider } from './provider.js';

export interface DekCacheOptions {
  /** Seconds an unwrapped DEK may stay in memory; 0 disables the cache. */
  ttlSecs: number;
  /** LRU bound (default 10 000). */
  maxEntries?: number;
  /** Milliseconds clock, injectable for tests (default Date.now). */
  now?: () => number;
  /** How often expired entries are swept, ms; 0 = no timer (tests call sweep()). Default min(ttl, 60 s). */
  sweepIntervalMs?: number;
}

export interface DekCacheStats {
  hits: number;
  misses: number;
  /** Entries dropped by the LRU bound. */
  evictions: number;
  /** Entries dropped because their TTL passed. */
  expirations: number;
  size: number;
}

/** Anything that can lend an unwrapped DEK; openVersion depends only on this. */
export interface DekSource {
  withDek<T>(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext, fn: (dek: Uint8Array) => T | Promise<T>): Promise<T>;
}

/**
 * Kept by a caller for one record it opens again and again (the sealing layer
 * keeps one per cached row): the cache notes in `entry` which entry the
 * record was last opened with, so the next open finds it by identity. Only
 * the cache reads or writes `entry`; a memo must never be used for another record.
 */
export interface DekMemo {
  entry: unknown;
}

/** Derives a key from a DEK and a non-secret salt (e.g. HChaCha20 of a nonce). Returns a new array the cache owns. */
export type DeriveKey = (dek: Uint8Array, salt: Uint8Array) => Uint8Array;

interface Derived {
  derive: DeriveKey;
  /** A copy of the salt the key was derived with. */
  salt: Uint8Array;
  key: Uint8Array;
}

interface Entry {
  /** The cache holding it: a memo shared by two caches never hands one's entry to the other. */
  owner: DekCache;
  /** Key in `entries`. */
  slot: string;
  /** False once dropped (zeroed): a reference kept in a DekMemo must not be used. */
  live: boolean;
  /** When a memo hit last moved the entry to most-recently-used (ms). */
  touchedAt: number;
  secret: string;
  version: number;
  keyId: string;
  /** A copy of the wrapped DEK this entry was unwrapped from (ciphertext, not secret). */
  wrapped: Uint8Array;
  dek: Uint8Array;
  expiresAt: number;
  derived: Derived | null;
}

export const DEFAULT_DEK_CACHE_MAX_ENTRIES = 10_000;

/** Lends a copy of `dek` and zeroes the copy once `fn` settles. */
async function lend<T>(dek: Uint8Array, fn: (dek: Uint8Array) => T | Promise<T>): Promise<T> {
  const copy = dek.slice();
  try {
    return await fn(copy);
  } finally {
    copy.fill(0);
  }
}

export class DekCache implements DekSource {
  readonly ttlMs: number;
  readonly maxEntries: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>(); // insertion order = LRU order
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly timer: NodeJS.Timeout | undefined;
  private counters = { hits: 0, misses: 0, evictions: 0, expirations: 0 };
  private generation = 0; // bumped by clear()/close() so in-flight loads do not repopulate
  private closed = false;

  constructor(private readonly kms: KmsProvider, opts: DekCacheOptions) {
    if (!Number.isFinite(opts.ttlSecs) || opts.ttlSecs < 0) throw new RangeError('DEK cache TTL must be a non-negative number of seconds');
    this.ttlMs = opts.ttlSecs * 1000;
    this.maxEntries = Math.max(1, opts.maxEntries ?? DEFAULT_DEK_CACHE_MAX_ENTRIES);
    this.now = opts.now ?? Date.now;
    const sweepMs = opts.sweepIntervalMs ?? Math.min(this.ttlMs, 60_000);
    if (this.ttlMs > 0 && sweepMs > 0) {
      this.timer = setInterval(() => this.sweep(), sweepMs);
      this.timer.unref(); // never keeps the process alive
    }
  }

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  async withDek<T>(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext, fn: (dek: Uint8Array) => T | Promise<T>): Promise<T> {
    if (this.closed) throw new Error('DEK cache is closed');
    if (!this.enabled) return this.direct(keyId, wrapped, ctx, fn);

    const hit = this.lookup(keyId, wrapped, ctx);
    if (hit) {
      this.counters.hits++;
      return lend(hit.dek, fn);
    }
    this.counters.misses++;
    await this.loadShared(keyId, wrapped, ctx);
    // Between the load and now the entry may have been evicted or cleared;
    // then this caller unwraps on its own rather than failing.
    const entry = this.lookup(keyId, wrapped, ctx);
    return entry ? lend(entry.dek, fn) : this.direct(keyId, wrapped, ctx, fn);
  }

  /**
   * Calls `use` with `derive(DEK, salt)` for the DEK wrapped in `wrapped` and
   * returns what it returns. On a hit this is synchronous: the derived key is
   * kept beside the cached DEK (derived again only if `derive` or `salt`
   * differ from the last call for this entry) and handed over as is, not as a
   * copy, so `use` must be synchronous and must not keep a reference. On a
   * miss (or with caching disabled) it returns a promise: the DEK is unwrapped
   * through KMS first. Errors from KMS or from `use` propagate unchanged
   * (thrown on the synchronous path, rejected otherwise).
   *
   * `memo`: kept by the caller for exactly this (keyId, wrapped, ctx). The
   * entry it was last opened with is then found through it, without building
   * the slot key or comparing the wrapped DEK; the entry must still be live
   * and unexpired, and it moves to most-recently-used at most once a second
   * through this path.
   */
  useDerivedKey<T>(
    keyId: string, wrapped: Uint8Array, ctx: EncryptionContext, derive: DeriveKey, salt: Uint8Array, use: (key: Uint8Array) => T,
    memo?: DekMemo,
  ): T | Promise<T> {
    if (this.closed) throw new Error('DEK cache is closed');
    if (this.enabled) {
      let hit = memo === undefined ? undefined : this.memoHit(memo);
      if (hit === undefined) {
        hit = this.lookup(keyId, wrapped, ctx);
        if (hit !== undefined && memo !== undefined) memo.entry = hit;
      }
      if (hit) {
        this.counters.hits++;
        return use(derivedKey(hit, derive, salt));
      }
      this.counters.misses++;
    }
    return this.useDerivedSlow(keyId, wrapped, ctx, derive, salt, use);
  }

  private async useDerivedSlow<T>(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext, derive: DeriveKey, salt: Uint8Array, use: (key: Uint8Array) => T): Promise<T> {
    if (this.enabled) {
      await this.loadShared(keyId, wrapped, ctx);
      const entry = this.lookup(keyId, wrapped, ctx);
      if (entry) return use(derivedKey(entry, derive, salt));
    }
    return this.direct(keyId, wrapped, ctx, (dek) => {
      const key = derive(dek, salt);
      try {
        return use(key);
      } finally {
        key.fill(0);
      }
    });
  }

  stats(): DekCacheStats {
    return { ...this.counters, size: this.entries.size };
  }

  /** Zeroes and drops entries whose TTL has passed. */
  sweep(): void {
    const t = this.now();
    for (const e of this.entries.values()) {
      if (t >= e.expiresAt) {
        this.drop(e);
        this.counters.expirations++;
      }
    }
  }

  /** Zeroes and drops every entry (e.g. after a master-key change). */
  clear(): void {
    this.generation++;
    for (const e of this.entries.values()) this.drop(e);
  }

  /** Stops the sweep timer and zeroes everything; later calls throw. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.clear();
    this.closed = true;
  }

  private async direct<T>(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext, fn: (dek: Uint8Array) => T | Promise<T>): Promise<T> {
    const dek = await this.kms.decrypt(wrapped, keyId, ctx);
    try {
      return await fn(dek);
    } finally {
      dek.fill(0);
    }
  }

  /** One KMS unwrap per distinct (key id, context, wrapped DEK) at a time; callers look the entry up afterwards. */
  private loadShared(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): Promise<void> {
    const key = inflightKey(keyId, wrapped, ctx);
    let load = this.inflight.get(key);
    if (!load) {
      load = this.load(keyId, wrapped, ctx);
      this.inflight.set(key, load);
      const done = () => { this.inflight.delete(key); };
      load.then(done, done);
    }
    return load;
  }

  private async load(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): Promise<void> {
    const gen = this.generation;
    const dek = await this.kms.decrypt(wrapped, keyId, ctx);
    if (gen !== this.generation || this.closed) {
      dek.fill(0);
      return;
    }
    const slot = slotOf(ctx);
    const old = this.entries.get(slot);
    if (old) this.drop(old); // another wrap of this version (or a stale one): the newest unwrap wins
    const t = this.now();
    this.entries.set(slot, {
      owner: this,
      slot,
      live: true,
      touchedAt: t,
      secret: ctx.secret,
      version: ctx.version,
      keyId,
      wrapped: wrapped.slice(),
      dek,
      expiresAt: t + this.ttlMs,
      derived: null,
    });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.values().next().value as Entry;
      this.drop(oldest);
      this.counters.evictions++;
    }
  }

  /** The live, unexpired entry noted in `memo`; expired entries are left to lookup() to drop. */
  private memoHit(memo: DekMemo): Entry | undefined {
    const e = memo.entry as Entry | undefined;
    if (e === undefined || !e.live || e.owner !== this) return undefined;
    const t = this.now();
    if (t >= e.expiresAt) return undefined;
    if (t - e.touchedAt >= 1000) {
      e.touchedAt = t;
      this.entries.delete(e.slot);
      this.entries.set(e.slot, e);
    }
    return e;
  }

  /** The live entry for exactly (keyId, wrapped, ctx), moved to most-recently-used; expired ones are dropped. */
  private lookup(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): Entry | undefined {
    const slot = slotOf(ctx);
    const e = this.entries.get(slot);
    if (!e) return undefined;
    const t = this.now();
    if (t >= e.expiresAt) {
      this.drop(e);
      this.counters.expirations++;
      return undefined;
    }
    if (e.version !== ctx.version || e.secret !== ctx.secret || e.keyId !== keyId || !sameBytes(e.wrapped, wrapped)) return undefined;
    this.entries.delete(slot); // move to most-recently-used
    this.entries.set(slot, e);
    e.touchedAt = t;
    return e;
  }

  private drop(e: Entry): void {
    e.live = false;
    e.dek.fill(0);
    e.derived?.key.fill(0);
    if (this.entries.get(e.slot) === e) this.entries.delete(e.slot);
  }
}

/** The entry's derived key for (derive, salt), deriving (and replacing the zeroed old one) when either changed. */
function derivedKey(e: Entry, derive: DeriveKey, salt: Uint8Array): Uint8Array {
  const d = e.derived;
  if (d !== null && d.derive === derive && sameBytes(d.salt, salt)) return d.key;
  const key = derive(e.dek, salt);
  d?.key.fill(0);
  e.derived = { derive, salt: salt.slice(), key };
  return key;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where an entry lives: by context only (the entry itself holds what a hit must match). */
function slotOf(ctx: EncryptionContext): string {
  return `${ctx.version}:${ctx.secret}`;
}

/** Unambiguous key of one unwrap; the wrapped DEK is ciphertext (stored on disk anyway), so base64 in a string is fine. */
function inflightKey(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): string {
  return JSON.stringify([keyId, ctx.secret, ctx.version, Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength).toString('base64')]);
}
