// Replay guard for authenticated Raft requests: remembers each accepted
// nonce until its timestamp leaves the clock window (after that the time check
// alone refuses it). Memory is bounded: when the cap is reached the oldest
// nonce is dropped and its timestamp becomes a floor, so a request at or
// below the floor is refused as a possible replay of a forgotten nonce.
// Legitimate requests are fresh, far above the floor unless the cap covers
// less time than the members' clock skew.

export class NonceCache {
  /** nonce -> the request's own timestamp (ms), in insertion order. */
  private readonly seen = new Map<string, number>();
  private floor = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly windowMs: number,
    private readonly max: number,
  ) {
    if (max < 1) throw new Error('NonceCache needs room for at least one nonce');
  }

  /**
   * True when `nonce` is new (it is remembered from now on); false for a
   * nonce seen before or a timestamp at or below the floor.
   */
  admit(nonce: string, time: number, now: number): boolean {
    this.expire(now);
    if (time <= this.floor || this.seen.has(nonce)) return false;
    if (this.seen.size >= this.max) {
      const [oldest, t] = this.seen.entries().next().value as [string, number];
      this.seen.delete(oldest);
      if (t > this.floor) this.floor = t;
    }
    this.seen.set(nonce, time);
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  clear(): void {
    this.seen.clear();
  }

  /** Drops nonces from the front whose timestamp is out of the window (stops at the first one still in it). */
  private expire(now: number): void {
    const oldest = now - this.windowMs;
    for (const [n, t] of this.seen) {
      if (t >= oldest) return;
      this.seen.delete(n);
    }
  }
}
