// In-memory cache of unwrapped DEKs, so reads survive short KMS outages and
// do not pay a KMS round trip each (DESIGN §1 "KMS-outage resilience").
//
// - Keyed by (kms_key_id, encryption context, wrapped DEK bytes). The context
//   is in the key so a hit can never skip the KMS-side context check.
// - Lifetime is counted from the unwrap, not refreshed by hits: TTL bounds how
//   long key material stays in memory. ttlSecs = 0 disables caching entirely.
// - LRU-bounded; every entry is zeroed on eviction, expiry, clear and close.
// - DEKs are lent: `withDek` hands the callback a copy that is zeroed when the
//   callback settles, so no caller can keep a live reference.
// - Concurrent misses for one key share a single KMS call.
// Only DEKs live here; plaintext secret values are never cached.

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

interface Entry {
  dek: Uint8Array;
  expiresAt: number;
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

    const key = cacheKey(keyId, wrapped, ctx);
    const hit = this.lookup(key);
    if (hit) {
      this.counters.hits++;
      return lend(hit.dek, fn);
    }
    this.counters.misses++;
    let load = this.inflight.get(key);
    if (!load) {
      load = this.load(key, keyId, wrapped, ctx);
      this.inflight.set(key, load);
      const done = () => { this.inflight.delete(key); };
      load.then(done, done);
    }
    await load;
    // Between the load and now the entry may have been evicted or cleared;
    // then this caller unwraps on its own rather than failing.
    const entry = this.lookup(key);
    return entry ? lend(entry.dek, fn) : this.direct(keyId, wrapped, ctx, fn);
  }

  stats(): DekCacheStats {
    return { ...this.counters, size: this.entries.size };
  }

  /** Zeroes and drops entries whose TTL has passed. */
  sweep(): void {
    const t = this.now();
    for (const [key, e] of this.entries) {
      if (t >= e.expiresAt) {
        this.drop(key, e);
        this.counters.expirations++;
      }
    }
  }

  /** Zeroes and drops every entry (e.g. after a master-key change). */
  clear(): void {
    this.generation++;
    for (const [key, e] of this.entries) this.drop(key, e);
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

  private async load(key: string, keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): Promise<void> {
    const gen = this.generation;
    const dek = await this.kms.decrypt(wrapped, keyId, ctx);
    if (gen !== this.generation || this.closed) {
      dek.fill(0);
      return;
    }
    this.entries.set(key, { dek, expiresAt: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const [oldKey, oldest] = this.entries.entries().next().value as [string, Entry];
      this.drop(oldKey, oldest);
      this.counters.evictions++;
    }
  }

  private lookup(key: string): Entry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (this.now() >= e.expiresAt) {
      this.drop(key, e);
      this.counters.expirations++;
      return undefined;
    }
    this.entries.delete(key); // move to most-recently-used
    this.entries.set(key, e);
    return e;
  }

  private drop(key: string, e: Entry): void {
    e.dek.fill(0);
    this.entries.delete(key);
  }
}

/** Unambiguous key; the wrapped DEK is ciphertext (stored on disk anyway), so base64 in a string is fine. */
function cacheKey(keyId: string, wrapped: Uint8Array, ctx: EncryptionContext): string {
  return JSON.stringify([keyId, ctx.secret, ctx.version, Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength).toString('base64')]);
}
