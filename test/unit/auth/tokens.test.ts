// Tokens are stored and looked up only as their SHA-256 (DESIGN §3): the
// digest must be exactly SHA-256 over the token's UTF-8 bytes, whichever of
// Node's hashing calls computes it, or every token minted by another release
// would stop matching.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bearerToken, generateToken, tokenSha256 } from '../../../server/auth/tokens.js';

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

describe('tokenSha256', () => {
  it('is SHA-256 of the UTF-8 bytes, as a fresh 32-byte Uint8Array', () => {
    for (const token of [generateToken(), 'cft_abc', 'cft_é€😀', '']) {
      const digest = tokenSha256(token);
      expect(digest).toBeInstanceOf(Uint8Array);
      expect(digest).toHaveLength(32);
      expect(Buffer.from(digest).toString('hex')).toBe(sha256(token));
    }
    // A known answer, so the test does not only compare two calls of the same library.
    expect(Buffer.from(tokenSha256('abc')).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const a = tokenSha256('cft_same');
    a.fill(0);
    expect(Buffer.from(tokenSha256('cft_same')).toString('hex')).toBe(sha256('cft_same')); // no shared buffer
  });

  it('bearerToken takes the token from a Bearer header and refuses malformed ones', () => {
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken('Bearer cft_x')).toBe('cft_x');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer two words')).toBeNull();
    expect(bearerToken(`Bearer ${'a'.repeat(513)}`)).toBeNull();
  });
});
