import { randomBytes, randomInt } from 'node:crypto';
import { createRequire } from 'node:module';
import { hchacha as nobleHChaCha } from '@noble/ciphers/chacha.js';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../../server/crypto/errors.js';
import {
  XCHACHA_IMPL, hchacha20, loadedSodiumXChaCha, nativeXChaCha, nobleXChaCha, openXChaCha, openXChaChaWithSubkey, sealXChaCha,
  xchachaSubkey, type XChaChaImpl,
} from '../../../server/crypto/xchacha.js';

// libsodium ships with the package, so on any supported install it must load.
if (loadedSodiumXChaCha === null) throw new Error('libsodium did not load');
const sodiumXChaCha: XChaChaImpl = loadedSodiumXChaCha;

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const rand = (n: number) => new Uint8Array(randomBytes(n));

// draft-irtf-cfrg-xchacha-03 §2.2.1
const H_KEY = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
const H_NONCE = hex('000000090000004a0000000031415927');
const H_SUBKEY = '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc';

// draft-irtf-cfrg-xchacha-03 §A.3.1
const KEY = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
const NONCE = hex('404142434445464748494a4b4c4d4e4f5051525354555657');
const AAD = hex('50515253c0c1c2c3c4c5c6c7');
const PLAINTEXT = new TextEncoder().encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);
const CIPHERTEXT = `bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
  731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
  2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
  21f9664c97637da9768812f615c68b13b52e`.replace(/\s+/g, '');
const TAG = 'c0875924c1c7987947deafd8780acf49';

const impls = { sodium: sodiumXChaCha, native: nativeXChaCha, noble: nobleXChaCha, exported: { seal: sealXChaCha, open: openXChaCha } };

describe('HChaCha20', () => {
  it('matches the draft §2.2.1 vector', () => {
    expect(PLAINTEXT.length).toBe(114); // the vector's plaintext length, guards the transcription
    expect(toHex(hchacha20(H_KEY, H_NONCE))).toBe(H_SUBKEY);
  });
});

describe.each(Object.entries(impls))('XChaCha20-Poly1305 (%s)', (_name, impl) => {
  it('reproduces the draft §A.3.1 vector (ciphertext || tag)', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    expect(toHex(sealed)).toBe(CIPHERTEXT + TAG);
    expect(impl.open(KEY, NONCE, sealed, AAD)).toEqual(PLAINTEXT);
  });

  it('returns plain Uint8Arrays', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    expect(Object.getPrototypeOf(sealed)).toBe(Uint8Array.prototype);
    expect(Object.getPrototypeOf(impl.open(KEY, NONCE, sealed, AAD))).toBe(Uint8Array.prototype);
  });

  it('seals and opens the empty plaintext', () => {
    const sealed = impl.seal(KEY, NONCE, new Uint8Array(0), new Uint8Array(0));
    expect(sealed.length).toBe(16);
    expect(impl.open(KEY, NONCE, sealed, new Uint8Array(0)).length).toBe(0);
  });

  it('fails with IntegrityError on any flipped byte of ciphertext, tag, nonce or AAD', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    const cases: Array<[string, Uint8Array]> = [['sealed', sealed], ['nonce', NONCE], ['aad', AAD]];
    for (const [which, buf] of cases) {
      for (let i = 0; i < buf.length; i++) {
        const bad = buf.slice();
        bad[i]! ^= 1 << (i % 8);
        const args = {
          sealed: which === 'sealed' ? bad : sealed,
          nonce: which === 'nonce' ? bad : NONCE,
          aad: which === 'aad' ? bad : AAD,
        };
        expect(() => impl.open(KEY, args.nonce, args.sealed, args.aad), `${which}[${i}]`).toThrow(IntegrityError);
      }
    }
  });

  it('fails with IntegrityError on a wrong key, a truncated record or a short nonce', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    const otherKey = KEY.slice();
    otherKey[31]! ^= 0x80;
    expect(() => impl.open(otherKey, NONCE, sealed, AAD)).toThrow(IntegrityError);
    expect(() => impl.open(KEY, NONCE, sealed.subarray(0, sealed.length - 1), AAD)).toThrow(IntegrityError);
    expect(() => impl.open(KEY, NONCE, sealed.subarray(0, 15), AAD)).toThrow(IntegrityError);
    expect(() => impl.open(KEY, NONCE.subarray(0, 23), sealed, AAD)).toThrow(IntegrityError);
  });

  it('never puts key bytes in error messages', () => {
    const key = new Uint8Array(32).fill(0xab);
    try {
      impl.open(key, NONCE, new Uint8Array(40), AAD);
      expect.unreachable();
    } catch (err) {
      expect(String((err as Error).message)).not.toMatch(/abab|171/i);
      expect((err as Error).message).toBe('ciphertext failed authentication');
    }
  });

  it('rejects wrong key and nonce lengths when sealing', () => {
    expect(() => impl.seal(new Uint8Array(31), NONCE, PLAINTEXT, AAD)).toThrow(RangeError);
    expect(() => impl.seal(KEY, new Uint8Array(12), PLAINTEXT, AAD)).toThrow(RangeError);
  });
});

const subkeyImpls = {
  sodium: sodiumXChaCha.openWithSubkey,
  native: nativeXChaCha.openWithSubkey,
  noble: nobleXChaCha.openWithSubkey,
  exported: openXChaChaWithSubkey,
};

describe.each(Object.entries(subkeyImpls))('open with the cached subkey (%s)', (_name, openWithSubkey) => {
  const sealed = sealXChaCha(KEY, NONCE, PLAINTEXT, AAD);

  it('the subkey is HChaCha20 of the first 16 nonce bytes, and opens the draft vector', () => {
    const subkey = xchachaSubkey(KEY, NONCE);
    expect(toHex(subkey)).toBe(toHex(hchacha20(KEY, NONCE.subarray(0, 16))));
    const plain = openWithSubkey(subkey, NONCE, sealed, AAD);
    expect(plain).toEqual(PLAINTEXT);
    expect(Object.getPrototypeOf(plain)).toBe(Uint8Array.prototype);
  });

  it('fails with IntegrityError on any flipped byte of ciphertext, tag, the nonce tail or AAD', () => {
    const subkey = xchachaSubkey(KEY, NONCE);
    const cases: Array<[string, Uint8Array]> = [['sealed', sealed], ['nonce', NONCE], ['aad', AAD]];
    for (const [which, buf] of cases) {
      // The first 16 nonce bytes only enter through the subkey: a flip there is the next test's case.
      for (let i = which === 'nonce' ? 16 : 0; i < buf.length; i++) {
        const bad = buf.slice();
        bad[i]! ^= 1 << (i % 8);
        const args = { sealed: which === 'sealed' ? bad : sealed, nonce: which === 'nonce' ? bad : NONCE, aad: which === 'aad' ? bad : AAD };
        expect(() => openWithSubkey(subkey, args.nonce, args.sealed, args.aad), `${which}[${i}]`).toThrow(IntegrityError);
      }
    }
  });

  it('a subkey derived for another nonce or key does not open it', () => {
    const otherNonce = NONCE.slice();
    otherNonce[3]! ^= 0x10;
    expect(() => openWithSubkey(xchachaSubkey(KEY, otherNonce), NONCE, sealed, AAD)).toThrow(IntegrityError);
    const otherKey = KEY.slice();
    otherKey[0]! ^= 0x01;
    expect(() => openWithSubkey(xchachaSubkey(otherKey, NONCE), NONCE, sealed, AAD)).toThrow(IntegrityError);
  });

  it('fails with IntegrityError on a truncated record or a short nonce; a wrong-size subkey is a RangeError', () => {
    const subkey = xchachaSubkey(KEY, NONCE);
    expect(() => openWithSubkey(subkey, NONCE, sealed.subarray(0, 15), AAD)).toThrow(IntegrityError);
    expect(() => openWithSubkey(subkey, NONCE.subarray(0, 23), sealed, AAD)).toThrow(IntegrityError);
    expect(() => xchachaSubkey(KEY, NONCE.subarray(0, 23))).toThrow(IntegrityError);
    expect(() => openWithSubkey(subkey.subarray(0, 31), NONCE, sealed, AAD)).toThrow(RangeError);
  });

  it('agrees with open() on random inputs', () => {
    for (let i = 0; i < 50; i++) {
      const key = rand(32);
      const nonce = rand(24);
      const pt = rand(randomInt(0, 600));
      const aad = rand(randomInt(0, 40));
      const sealedRandom = sealXChaCha(key, nonce, pt, aad);
      expect(openWithSubkey(xchachaSubkey(key, nonce), nonce, sealedRandom, aad)).toEqual(pt);
    }
  });
});

describe('sodium, native and noble', () => {
  it('agree on 300 random inputs of random lengths (including 0), every direction', () => {
    const lengths = [0, 1, 15, 16, 17, 63, 64, 65, 4096];
    for (let i = 0; i < 300; i++) {
      const key = rand(32);
      const nonce = rand(24);
      const pt = rand(i < lengths.length ? lengths[i]! : randomInt(0, 2048));
      const aad = rand(randomInt(0, 64));
      const a = nativeXChaCha.seal(key, nonce, pt, aad);
      const b = nobleXChaCha.seal(key, nonce, pt, aad);
      const c = sodiumXChaCha.seal(key, nonce, pt, aad);
      expect(toHex(a)).toBe(toHex(b));
      expect(toHex(c)).toBe(toHex(b));
      expect(nobleXChaCha.open(key, nonce, a, aad)).toEqual(pt);
      expect(nativeXChaCha.open(key, nonce, b, aad)).toEqual(pt);
      expect(sodiumXChaCha.open(key, nonce, b, aad)).toEqual(pt);
      expect(sodiumXChaCha.openWithSubkey(xchachaSubkey(key, nonce), nonce, b, aad)).toEqual(pt);
    }
  });

  it('our HChaCha20 agrees with noble hchacha on random keys and nonces', () => {
    const u32 = (b: Uint8Array) => new Uint32Array(b.slice().buffer); // little-endian hosts only
    const sigma = u32(new TextEncoder().encode('expand 32-byte k'));
    for (let i = 0; i < 50; i++) {
      const key = rand(32);
      const nonce = rand(16);
      const out = new Uint32Array(8);
      nobleHChaCha(sigma, u32(key), u32(nonce), out);
      expect(toHex(hchacha20(key, nonce))).toBe(toHex(new Uint8Array(out.buffer)));
    }
  });

  it('production uses the libsodium construction (its self-test against noble passed)', () => {
    expect(XCHACHA_IMPL).toBe('sodium');
  });

  it('sodium opens and seals values up to 1 MiB (the largest VAULT_MAX_VALUE_BYTES), growing its scratch region', () => {
    for (const length of [4096, 70_000, 1_048_576]) {
      const key = rand(32);
      const nonce = rand(24);
      const pt = rand(length);
      const aad = rand(30);
      const sealed = nobleXChaCha.seal(key, nonce, pt, aad);
      expect(toHex(sodiumXChaCha.seal(key, nonce, pt, aad))).toBe(toHex(sealed));
      expect(sodiumXChaCha.openWithSubkey(xchachaSubkey(key, nonce), nonce, sealed, aad)).toEqual(pt);
    }
  });

  it('handles inputs that are subarrays of larger buffers', () => {
    const big = rand(200);
    const key = big.subarray(3, 35);
    const nonce = big.subarray(40, 64);
    const pt = big.subarray(70, 170);
    const aad = big.subarray(171, 180);
    const a = nativeXChaCha.seal(key, nonce, pt, aad);
    expect(toHex(a)).toBe(toHex(nobleXChaCha.seal(key, nonce, pt, aad)));
    expect(nativeXChaCha.open(key, nonce, a, aad)).toEqual(pt);
    expect(toHex(sodiumXChaCha.seal(key, nonce, pt, aad))).toBe(toHex(a));
    expect(sodiumXChaCha.open(key, nonce, a, aad)).toEqual(pt);
  });
});

describe('libsodium leaves no key or plaintext in WebAssembly memory', () => {
  // The same module instance sodium-aead.ts loaded (require cache), so its whole linear memory can be searched.
  const lib = createRequire(import.meta.url)('libsodium') as { HEAPU8: Uint8Array; UTF8ToString(p: number): string; _sodium_version_string(): number };
  const contains = (needle: Uint8Array) => Buffer.from(lib.HEAPU8.buffer, lib.HEAPU8.byteOffset, lib.HEAPU8.length).indexOf(needle) !== -1;

  it.each([51, 64, 94, 300])('after seal, open, open with the subkey, and a refused open (%i-byte value)', (length) => {
    const key = rand(32);
    const nonce = rand(24);
    const marker = new TextEncoder().encode(`coffer-wasm-marker-${toHex(rand(length))}`.slice(0, length));
    const aad = rand(12);
    const subkey = xchachaSubkey(key, nonce);
    const sealed = sodiumXChaCha.seal(key, nonce, marker, aad);
    expect(sodiumXChaCha.open(key, nonce, sealed, aad)).toEqual(marker);
    expect(sodiumXChaCha.openWithSubkey(subkey, nonce, sealed, aad)).toEqual(marker);
    const forged = sealed.slice();
    forged[0]! ^= 1;
    expect(() => sodiumXChaCha.openWithSubkey(subkey, nonce, forged, aad)).toThrow(IntegrityError);
    // Control: the search does see the module's memory (its version string lives there).
    const version = lib.UTF8ToString(lib._sodium_version_string());
    expect(version).toMatch(/^1\.\d+\.\d+/);
    expect(contains(new TextEncoder().encode(version))).toBe(true);
    // Any 16 bytes of the value, including the last partial block (ChaCha20's stack buffer).
    for (let at = 0; at + 16 <= marker.length; at += 16) expect(contains(marker.subarray(at, at + 16)), `value[${at}..]`).toBe(false);
    expect(contains(marker.subarray(marker.length - 16)), 'value tail').toBe(false);
    expect(contains(subkey)).toBe(false);
    expect(contains(key)).toBe(false);
  });
});

describe.each(Object.entries({ sodium: sodiumXChaCha, native: nativeXChaCha, noble: nobleXChaCha }))('openWithSubkeyAs (%s)', (_name, impl) => {
  it('lends the plaintext to read() and zeroes it when read returns or throws', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    const subkey = xchachaSubkey(KEY, NONCE);
    let lent: Uint8Array | undefined;
    expect(impl.openWithSubkeyAs(subkey, NONCE, sealed, AAD, (p) => { lent = p; return Buffer.from(p).toString('utf8'); }))
      .toBe(new TextDecoder().decode(PLAINTEXT));
    expect(lent!.length).toBe(PLAINTEXT.length);
    expect(lent!.every((b) => b === 0)).toBe(true);
    expect(() => impl.openWithSubkeyAs(subkey, NONCE, sealed, AAD, (p) => { lent = p; throw new Error('reader failed'); })).toThrow('reader failed');
    expect(lent!.every((b) => b === 0)).toBe(true);
  });

  it('a record that does not authenticate is an IntegrityError and read() is never called', () => {
    const sealed = impl.seal(KEY, NONCE, PLAINTEXT, AAD);
    sealed[5]! ^= 1;
    let called = false;
    expect(() => impl.openWithSubkeyAs(xchachaSubkey(KEY, NONCE), NONCE, sealed, AAD, () => { called = true; })).toThrow(IntegrityError);
    expect(called).toBe(false);
  });
});
