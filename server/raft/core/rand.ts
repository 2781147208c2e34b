// Injected randomness. The core only draws election-timeout jitter from it,
// so a seeded generator makes a whole cluster replayable.

export interface Rng {
  /** Uniform integer in [0, n). */
  int(n: number): number;
}

/** Deterministic PRNG (mulberry32) for tests and simulations. */
export class SeededRng implements Rng {
  private state: number;

  constructor(seed: number) {
    this.state = (seed ^ 0x9e3779b9) >>> 0;
    // Warm up so nearby seeds diverge immediately.
    for (let i = 0; i < 4; i++) this.next();
  }

  /** Uniform float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** true with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from empty list');
    return items[this.int(items.length)] as T;
  }

  /** A derived generator (for handing independent streams to nodes). */
  fork(): SeededRng {
    return new SeededRng(Math.floor(this.next() * 0xffffffff));
  }
}
