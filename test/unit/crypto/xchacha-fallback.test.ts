// Without libsodium (missing, failed to start, or its stack buffer not found),
// the node must still seal and open, through OpenSSL, with the same results.
import { describe, expect, it, vi } from 'vitest';

vi.mock('../../../server/crypto/sodium-aead.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../../server/crypto/sodium-aead.js')>()),
  loadSodiumAead: async () => null,
}));

const { XCHACHA_IMPL, loadedSodiumXChaCha, nobleXChaCha, openXChaCha, openXChaChaWithSubkeyAs, sealXChaCha, xchachaSubkey } = await import(
  '../../../server/crypto/xchacha.js'
);

describe('XChaCha20-Poly1305 without libsodium', () => {
  it('selects the OpenSSL construction, which agrees with noble', () => {
    expect(loadedSodiumXChaCha).toBeNull();
    expect(XCHACHA_IMPL).toBe('native');
    const key = new Uint8Array(32).fill(7);
    const nonce = new Uint8Array(24).fill(9);
    const aad = new TextEncoder().encode('app/db:1');
    const value = new TextEncoder().encode('fallback value');
    const sealed = sealXChaCha(key, nonce, value, aad);
    expect(sealed).toEqual(nobleXChaCha.seal(key, nonce, value, aad));
    expect(openXChaCha(key, nonce, sealed, aad)).toEqual(value);
    expect(openXChaChaWithSubkeyAs(xchachaSubkey(key, nonce), nonce, sealed, aad, (p) => Buffer.from(p).toString('utf8'))).toBe('fallback value');
  });
});
