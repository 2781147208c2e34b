// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) seal/open.
//
// Three constructions of the same AEAD:
//  - `noble`: @noble/ciphers, pure JS, the reference.
//  - `native`: HChaCha20(key, nonce[0..16]) gives a subkey, then OpenSSL's
//    IETF ChaCha20-Poly1305 runs with the 12-byte nonce 0x00000000 || nonce[16..24].
//    That is exactly how the draft defines XChaCha20-Poly1305, and it runs in C.
//  - `sodium`: the same split, with libsodium's IETF ChaCha20-Poly1305 in
//    WebAssembly (sodium-aead.ts). It skips node:crypto's per-call cipher
//    object and OpenSSL's per-init cipher fetch, which dominate a small open.
// At load we run known-answer self-tests of `sodium` and `native` against
// `noble` and use the first that passes: `sodium` if libsodium loads and
// agrees, else `native` if OpenSSL has chacha20-poly1305 (not e.g. in a FIPS
// build) and agrees, else `noble`. Output format: ciphertext || 16-byte tag.
//
// The subkey depends only on the key and the first 16 nonce bytes, i.e. it is
// fixed per stored version; `xchachaSubkey` + `openXChaChaWithSubkey` split
// open in two so a caller that keeps the subkey (the DEK cache, beside the
// DEK, with the same lifetime and zeroization) skips HChaCha20 on every read.

import { createCipheriv, createDecipheriv, getCiphers } from 'node:crypto';
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { IntegrityError } from './errors.js';
import { loadSodiumAead, NOT_AUTHENTIC, type SodiumAead } from './sodium-aead.js';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;

const AUTH_FAILED = 'ciphertext failed authentication';

export interface XChaChaImpl {
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array;
  /** `open` given `subkey` = HChaCha20(key, nonce[0..16]) instead of the key. */
  openWithSubkey(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array;
  /**
   * `openWithSubkey`, but the plaintext is lent to `read` and zeroed when it
   * returns or throws; `read` must be synchronous and must not keep it.
   */
  openWithSubkeyAs<T>(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T;
}

/** openWithSubkeyAs for constructions that return a fresh plaintext array. */
function lendPlaintext<T>(plain: Uint8Array, read: (plain: Uint8Array) => T): T {
  try {
    return read(plain);
  } finally {
    plain.fill(0);
  }
}

// Length errors are programming errors, so RangeError; messages never show bytes.
function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError(`XChaCha20-Poly1305 key must be ${KEY_BYTES} bytes`);
}
function checkSealNonce(nonce: Uint8Array): void {
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`XChaCha20-Poly1305 nonce must be ${NONCE_BYTES} bytes`);
}
// On open, a malformed nonce or a too-short record is a stored record that does not authenticate.
function checkOpenInputs(nonce: Uint8Array, sealed: Uint8Array): void {
  if (nonce.length !== NONCE_BYTES || sealed.length < TAG_BYTES) throw new IntegrityError(AUTH_FAILED);
}

const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];

function quarterRound(s: Uint32Array, a: number, b: number, c: number, d: number): void {
  // Uint32Array stores wrap mod 2^32, so plain + is the 32-bit add.
  s[a] = s[a]! + s[b]!; s[d] = rotl(s[d]! ^ s[a]!, 16);
  s[c] = s[c]! + s[d]!; s[b] = rotl(s[b]! ^ s[c]!, 12);
  s[a] = s[a]! + s[b]!; s[d] = rotl(s[d]! ^ s[a]!, 8);
  s[c] = s[c]! + s[d]!; s[b] = rotl(s[b]! ^ s[c]!, 7);
}
function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

/** HChaCha20 (draft §2.2): 32-byte subkey from a 32-byte key and a 16-byte nonce. Caller zeroes the result. */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  checkKey(key);
  if (nonce16.length !== 16) throw new RangeError('HChaCha20 nonce must be 16 bytes');
  const s = new Uint32Array(16);
  const kv = new DataView(key.buffer, key.byteOffset, key.byteLength);
  const nv = new DataView(nonce16.buffer, nonce16.byteOffset, nonce16.byteLength);
  s.set(SIGMA);
  for (let i = 0; i < 8; i++) s[4 + i] = kv.getUint32(4 * i, true);
  for (let i = 0; i < 4; i++) s[12 + i] = nv.getUint32(4 * i, true);
  for (let round = 0; round < 10; round++) {
    quarterRound(s, 0, 4, 8, 12); quarterRound(s, 1, 5, 9, 13);
    quarterRound(s, 2, 6, 10, 14); quarterRound(s, 3, 7, 11, 15);
    quarterRound(s, 0, 5, 10, 15); quarterRound(s, 1, 6, 11, 12);
    quarterRound(s, 2, 7, 8, 13); quarterRound(s, 3, 4, 9, 14);
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) {
    ov.setUint32(4 * i, s[i]!, true);
    ov.setUint32(16 + 4 * i, s[12 + i]!, true);
  }
  s.fill(0); // the state held key words
  return out;
}

function nativeIv(nonce: Uint8Array): Uint8Array {
  const iv = new Uint8Array(12);
  iv.set(nonce.subarray(16, 24), 4);
  return iv;
}

/** Copies Buffers into one plain Uint8Array and zeroes the Buffers (they may hold plaintext). */
function joinAndWipe(parts: Buffer[], extra?: Uint8Array): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0) + (extra?.length ?? 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; p.fill(0); }
  if (extra) out.set(extra, off);
  return out;
}

/**
 * IETF ChaCha20-Poly1305 under an XChaCha20 subkey, with the 12-byte nonce
 * 0x00000000 || nonce[16..24] of the 24-byte XChaCha20 nonce it is given.
 * Inputs are checked by xchachaOver; open throws IntegrityError.
 */
interface IetfUnderSubkey {
  seal(subkey: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  open(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array;
  openAs<T>(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T;
}

/** Calls `fn` with HChaCha20(key, nonce[0..16]) and zeroes the subkey afterwards. */
function withSubkey<T>(key: Uint8Array, nonce: Uint8Array, fn: (subkey: Uint8Array) => T): T {
  const subkey = hchacha20(key, nonce.subarray(0, 16));
  try {
    return fn(subkey);
  } finally {
    subkey.fill(0);
  }
}

/** The draft's construction, once for every IETF implementation: HChaCha20(key, nonce[0..16]), then `ietf`. */
function xchachaOver(ietf: IetfUnderSubkey): XChaChaImpl {
  return {
    seal(key, nonce, plaintext, aad) {
      checkKey(key); checkSealNonce(nonce);
      return withSubkey(key, nonce, (subkey) => ietf.seal(subkey, nonce, plaintext, aad));
    },
    open(key, nonce, sealed, aad) {
      checkKey(key); checkOpenInputs(nonce, sealed);
      return withSubkey(key, nonce, (subkey) => ietf.open(subkey, nonce, sealed, aad));
    },
    openWithSubkey(subkey, nonce, sealed, aad) {
      checkKey(subkey); checkOpenInputs(nonce, sealed);
      return ietf.open(subkey, nonce, sealed, aad);
    },
    openWithSubkeyAs(subkey, nonce, sealed, aad, read) {
      checkKey(subkey); checkOpenInputs(nonce, sealed);
      return ietf.openAs(subkey, nonce, sealed, aad, read);
    },
  };
}

export const nativeXChaCha: XChaChaImpl = xchachaOver({
  seal(subkey, nonce, plaintext, aad) {
    const c = createCipheriv('chacha20-poly1305', subkey, nativeIv(nonce), { authTagLength: TAG_BYTES });
    c.setAAD(aad, { plaintextLength: plaintext.length });
    const body = [c.update(plaintext), c.final()];
    return joinAndWipe(body, c.getAuthTag());
  },
  open: nativeOpenWithSubkey,
  openAs: (subkey, nonce, sealed, aad, read) => lendPlaintext(nativeOpenWithSubkey(subkey, nonce, sealed, aad), read),
});

/**
 * IETF ChaCha20-Poly1305 open under the subkey. ChaCha20 is a stream cipher:
 * update() yields the whole plaintext and final() (which verifies the tag)
 * yields nothing, so the plaintext is returned as a view of update()'s own
 * buffer, without a copy. Unauthenticated plaintext is zeroed before the throw.
 */
function nativeOpenWithSubkey(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  const split = sealed.length - TAG_BYTES;
  let body: Buffer | undefined;
  let rest: Buffer | undefined;
  try {
    const d = createDecipheriv('chacha20-poly1305', subkey, nativeIv(nonce), { authTagLength: TAG_BYTES });
    d.setAAD(aad, { plaintextLength: split });
    d.setAuthTag(sealed.subarray(split));
    body = d.update(sealed.subarray(0, split));
    rest = d.final(); // throws when the tag does not verify
  } catch {
    body?.fill(0); // unauthenticated plaintext must not linger
    throw new IntegrityError(AUTH_FAILED);
  }
  if (rest.length > 0) return joinAndWipe([body, rest]);
  return new Uint8Array(body.buffer, body.byteOffset, body.length);
}

export const nobleXChaCha: XChaChaImpl = {
  seal(key, nonce, plaintext, aad) {
    checkKey(key); checkSealNonce(nonce);
    return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
  },
  open(key, nonce, sealed, aad) {
    checkKey(key); checkOpenInputs(nonce, sealed);
    try {
      return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
    } catch {
      throw new IntegrityError(AUTH_FAILED);
    }
  },
  openWithSubkey(subkey, nonce, sealed, aad) {
    checkKey(subkey); checkOpenInputs(nonce, sealed);
    try {
      return chacha20poly1305(subkey, nativeIv(nonce), aad).decrypt(sealed);
    } catch {
      throw new IntegrityError(AUTH_FAILED);
    }
  },
  openWithSubkeyAs(subkey, nonce, sealed, aad, read) {
    return lendPlaintext(this.openWithSubkey(subkey, nonce, sealed, aad), read);
  },
};

/** XChaCha20-Poly1305 over libsodium's IETF ChaCha20-Poly1305; same checks and errors as the others. */
export function sodiumXChaCha(aead: SodiumAead): XChaChaImpl {
  return xchachaOver({
    seal: (subkey, nonce, plaintext, aad) => aead.seal(subkey, nativeIv(nonce), plaintext, aad),
    open(subkey, nonce, sealed, aad) {
      const plain = aead.open(subkey, nativeIv(nonce), sealed, aad);
      if (plain === null) throw new IntegrityError(AUTH_FAILED);
      return plain;
    },
    openAs(subkey, nonce, sealed, aad, read) {
      // Decrypted in place in WebAssembly memory and lent from there: no copy of the plaintext exists.
      const result = aead.openXAs(subkey, nonce, sealed, aad, read);
      if (result === NOT_AUTHENTIC) throw new IntegrityError(AUTH_FAILED);
      return result;
    },
  });
}

/** Known-answer check of `candidate` against `noble`: seal, open, open with the subkey, and a flipped tag refused. */
function agreesWithNoble(candidate: XChaChaImpl): boolean {
  try {
    const key = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
    const nonce = Uint8Array.from({ length: 24 }, (_, i) => 0x40 + i);
    const aad = Uint8Array.of(0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3);
    for (const length of [0, 1, 100, 300]) {
      const pt = Uint8Array.from({ length }, (_, i) => i & 0xff);
      const a = candidate.seal(key, nonce, pt, aad);
      const b = nobleXChaCha.seal(key, nonce, pt, aad);
      if (a.length !== b.length || !a.every((v, i) => v === b[i])) return false;
      const back = nobleXChaCha.open(key, nonce, a, aad);
      const subkey = hchacha20(key, nonce.subarray(0, 16));
      const viaSubkey = candidate.openWithSubkey(subkey, nonce, b, aad);
      const opened = candidate.open(key, nonce, b, aad);
      if (back.length !== length || viaSubkey.length !== length || opened.length !== length) return false;
      if (!opened.every((v, i) => v === back[i] && viaSubkey[i] === v)) return false;
      const forged = b.slice();
      forged[forged.length - 1]! ^= 1;
      try {
        candidate.openWithSubkey(subkey, nonce, forged, aad);
        return false;
      } catch (err) {
        if (!(err instanceof IntegrityError)) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

const sodiumAead = await loadSodiumAead();
const sodiumImpl = sodiumAead === null ? null : sodiumXChaCha(sodiumAead);

/** Which construction production uses (exported for the health/bench report). */
export const XCHACHA_IMPL: 'sodium' | 'native' | 'noble' =
  sodiumImpl !== null && agreesWithNoble(sodiumImpl)
    ? 'sodium'
    : getCiphers().includes('chacha20-poly1305') && agreesWithNoble(nativeXChaCha)
      ? 'native'
      : 'noble';
const impl = XCHACHA_IMPL === 'sodium' ? sodiumImpl! : XCHACHA_IMPL === 'native' ? nativeXChaCha : nobleXChaCha;

/** The libsodium construction, when it loaded (for tests that compare constructions). */
export const loadedSodiumXChaCha: XChaChaImpl | null = sodiumImpl;

/** Encrypts and authenticates; returns ciphertext || tag. */
export function sealXChaCha(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return impl.seal(key, nonce, plaintext, aad);
}

/** Verifies and decrypts ciphertext || tag; throws IntegrityError when it does not authenticate. */
export function openXChaCha(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  return impl.open(key, nonce, sealed, aad);
}

/** The XChaCha20 subkey of `nonce`: HChaCha20(key, nonce[0..16]). Secret key material: the caller zeroes it. */
export function xchachaSubkey(key: Uint8Array, nonce: Uint8Array): Uint8Array {
  checkKey(key);
  if (nonce.length !== NONCE_BYTES) throw new IntegrityError(AUTH_FAILED);
  return hchacha20(key, nonce.subarray(0, 16));
}

/** openXChaChaWithSubkey that lends the plaintext to `read` (synchronous, must not keep it) and zeroes it after. */
export function openXChaChaWithSubkeyAs<T>(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T {
  return impl.openWithSubkeyAs(subkey, nonce, sealed, aad, read);
}

/** openXChaCha given the subkey of `nonce` (from xchachaSubkey) instead of the key; same checks, same errors. */
export function openXChaChaWithSubkey(subkey: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  return impl.openWithSubkey(subkey, nonce, sealed, aad);
}
