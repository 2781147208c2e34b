// The write path's random pool: every piece fresh, of the asked length, across refills.
import { describe, expect, it } from 'vitest';
import { randomArray } from '../../../server/crypto/random-pool.js';

describe('random pool', () => {
  it('never hands out the same bytes twice, across many refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      // 24 and 32: the nonce and DEK sizes; 4096 is not a multiple of 56, so refills come with a short tail left unused.
      const a = randomArray(i % 2 === 0 ? 24 : 32);
      expect(a.length).toBe(i % 2 === 0 ? 24 : 32);
      const hex = Buffer.from(a).toString('hex');
      expect(seen.has(hex)).toBe(false);
      seen.add(hex);
    }
  });

  it('gives each caller its own array (changing one changes no other)', () => {
    const a = randomArray(32);
    const b = randomArray(32);
    const before = Buffer.from(b).toString('hex');
    a.fill(0);
    expect(Buffer.from(b).toString('hex')).toBe(before);
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('spreads bytes evenly (no stuck or zeroed bytes leak out)', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 4000; i++) for (const x of randomArray(32)) counts[x]! += 1;
    // 128,000 bytes: 500 per value expected; a zeroed piece would push counts[0] far up.
    expect(Math.max(...counts)).toBeLessThan(650);
    expect(Math.min(...counts)).toBeGreaterThan(350);
  });

  it('serves sizes larger than the pool directly', () => {
    const big = randomArray(10_000);
    expect(big.length).toBe(10_000);
    expect(big.some((x) => x !== 0)).toBe(true);
  });
});
