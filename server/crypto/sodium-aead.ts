// IETF ChaCha20-Poly1305 (RFC 8439) through libsodium compiled to WebAssembly.
//
// Why: a value read opens one small record. node:crypto builds a cipher
// object and OpenSSL 3 fetches the cipher on every createDecipheriv, which
// costs ~3 µs per 256-byte open on the event loop; libsodium's own
// implementation in WebAssembly, called on a fixed scratch region, does the
// same open in ~1.2 µs (bench/README.md).
//
// Key material never stays in WebAssembly memory: every call copies its
// inputs into one scratch region, and the region (key, nonce, AAD, input and
// output) is zeroed before the call returns or throws. libsodium zeroes its
// own ChaCha20 state, Poly1305 state and one-time key. One thing it leaves:
// ChaCha20's 64-byte buffer for a final partial block, on libsodium's stack,
// holds the last partial block of the output (for an open: plaintext). At
// load we find that buffer by opening a probe record and searching the
// module's memory for its plaintext, and every call zeroes it afterwards; if
// it cannot be found exactly once, below the heap, libsodium is not used.
// Decryption verifies the tag before it writes any plaintext (libsodium's
// *_decrypt_detached), so no unauthenticated plaintext ever exists.
//
// The module is loaded once; `loadSodiumAead()` returns null when it cannot
// be loaded or its exports are not the expected shape, and the caller falls
// back to node:crypto (xchacha.ts also runs known-answer checks against noble).
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

interface LibSodium {
  ready: Promise<void>;
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(ptr: number): void;
  /** 0 on success, 1 when already initialized, -1 on failure. */
  _sodium_init(): number;
  // wasm32 builds pass each `unsigned long long` as two i32 halves (low, high).
  _crypto_aead_chacha20poly1305_ietf_encrypt(
    c: number, clenP: number, m: number, mlenLo: number, mlenHi: number,
    ad: number, adlenLo: number, adlenHi: number, nsec: number, npub: number, k: number,
  ): number;
  _crypto_aead_chacha20poly1305_ietf_decrypt(
    m: number, mlenP: number, nsec: number, c: number, clenLo: number, clenHi: number,
    ad: number, adlenLo: number, adlenHi: number, npub: number, k: number,
  ): number;
}

export const IETF_KEY_BYTES = 32;
export const IETF_NONCE_BYTES = 12;
export const IETF_TAG_BYTES = 16;
/** What openXAs returns for a record that does not authenticate (distinct from anything `read` returns). */
export const NOT_AUTHENTIC: unique symbol = Symbol('not authentic');

/** Raw IETF ChaCha20-Poly1305; `null` from open means the record did not authenticate. */
export interface SodiumAead {
  seal(key: Uint8Array, nonce12: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  open(key: Uint8Array, nonce12: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null;
  /**
   * Opens with the IETF nonce 0x00000000 || xnonce[16..24] (the XChaCha20
   * split, given its subkey) and calls `read` with a view of the plaintext in
   * WebAssembly memory, which is zeroed as soon as `read` returns or throws:
   * `read` must not keep the view or call back into this object. Returns what
   * `read` returns, or NOT_AUTHENTIC (without calling it) when the record
   * does not authenticate.
   */
  openXAs<T>(subkey: Uint8Array, xnonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T | typeof NOT_AUTHENTIC;
}

// Scratch layout: key (32) | nonce (12, padded to 16) | AAD | input | output.
const HEADER = 48;
const INITIAL_SCRATCH = 4096;

function alignedSize(n: number): number {
  let size = INITIAL_SCRATCH;
  while (size < n) size *= 2;
  return size;
}

/** ChaCha20's partial-block buffer (`tmp[64]` in libsodium's chacha20_ref.c). */
const PARTIAL_BLOCK_BYTES = 64;

class WasmAead implements SodiumAead {
  private base: number;
  private capacity: number;
  /** Address of ChaCha20's partial-block buffer on the module's stack; -1 until located. */
  private partialBlock = -1;

  constructor(private readonly lib: LibSodium) {
    this.capacity = INITIAL_SCRATCH;
    this.base = lib._malloc(this.capacity);
    if (this.base === 0) throw new Error('libsodium: out of memory');
  }

  /**
   * Finds ChaCha20's partial-block buffer: opens a probe record whose
   * plaintext is one random partial block and searches memory for it. True
   * when it is found exactly once, below the heap, and a second probe of
   * another length leaves nothing behind once the buffer is zeroed.
   */
  locatePartialBlock(): boolean {
    const find = (needle: Uint8Array): number[] => {
      const heap = this.lib.HEAPU8;
      const hay = Buffer.from(heap.buffer, heap.byteOffset, heap.byteLength);
      const hits: number[] = [];
      for (let at = hay.indexOf(needle); at !== -1; at = hay.indexOf(needle, at + 1)) hits.push(at);
      return hits;
    };
    const probe = (length: number): { plaintext: Uint8Array; opened: Uint8Array | null } => {
      const key = randomBytes(IETF_KEY_BYTES);
      const nonce = new Uint8Array(IETF_NONCE_BYTES);
      const plaintext = new Uint8Array(randomBytes(length));
      const sealed = this.seal(key, nonce, plaintext, new Uint8Array(0));
      return { plaintext, opened: this.open(key, nonce, sealed, new Uint8Array(0)) };
    };
    const first = probe(40);
    if (first.opened === null || !first.opened.every((v, i) => v === first.plaintext[i])) return false;
    const hits = find(first.plaintext);
    if (hits.length !== 1 || hits[0]! + PARTIAL_BLOCK_BYTES > this.base) return false;
    this.partialBlock = hits[0]!;
    this.scrubStack();
    if (find(first.plaintext).length !== 0) return false;
    // A record of one full block plus 20 bytes: its tail must land in the same buffer, and go with it.
    const second = probe(PARTIAL_BLOCK_BYTES + 20);
    return second.opened !== null && find(second.plaintext.subarray(PARTIAL_BLOCK_BYTES)).length === 0;
  }

  private scrubStack(): void {
    if (this.partialBlock >= 0) this.lib.HEAPU8.fill(0, this.partialBlock, this.partialBlock + PARTIAL_BLOCK_BYTES);
  }

  /** Address of a scratch region of at least `need` bytes (grown once for large values; the old one is zeroed first). */
  private scratch(need: number): number {
    if (need > this.capacity) {
      const size = alignedSize(need);
      const next = this.lib._malloc(size);
      if (next === 0) throw new Error('libsodium: out of memory');
      this.lib.HEAPU8.fill(0, this.base, this.base + this.capacity);
      this.lib._free(this.base);
      this.base = next;
      this.capacity = size;
    }
    return this.base;
  }

  seal(key: Uint8Array, nonce12: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    checkSizes(key, nonce12);
    const outLen = plaintext.length + IETF_TAG_BYTES;
    const used = HEADER + aad.length + plaintext.length + outLen;
    const base = this.scratch(used);
    const heap = this.lib.HEAPU8; // read after any growth: a grown memory has a new view
    const ad = base + HEADER;
    const m = ad + aad.length;
    const c = m + plaintext.length;
    try {
      heap.set(key, base);
      heap.set(nonce12, base + IETF_KEY_BYTES);
      heap.set(aad, ad);
      heap.set(plaintext, m);
      const rc = this.lib._crypto_aead_chacha20poly1305_ietf_encrypt(c, 0, m, plaintext.length, 0, ad, aad.length, 0, 0, base + IETF_KEY_BYTES, base);
      if (rc !== 0) throw new Error('libsodium: encryption failed');
      return heap.slice(c, c + outLen);
    } finally {
      heap.fill(0, base, base + used);
      this.scrubStack();
    }
  }

  open(key: Uint8Array, nonce12: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
    checkSizes(key, nonce12);
    const out = this.decrypt(key, nonce12, false, sealed, aad, copyOut);
    return out === NOT_AUTHENTIC ? null : out;
  }

  openXAs<T>(subkey: Uint8Array, xnonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T | typeof NOT_AUTHENTIC {
    if (subkey.length !== IETF_KEY_BYTES) throw new RangeError(`ChaCha20-Poly1305 key must be ${IETF_KEY_BYTES} bytes`);
    if (xnonce.length !== 24) throw new RangeError('XChaCha20 nonce must be 24 bytes');
    return this.decrypt(subkey, xnonce, true, sealed, aad, read);
  }

  /**
   * Decrypts in the scratch region and lends the plaintext to `read`. The
   * IETF nonce is `nonce` itself, or with `xnonce` 0x00000000 || nonce[16..24]
   * (written in place: no array per call on the read path).
   */
  private decrypt<T>(key: Uint8Array, nonce: Uint8Array, xnonce: boolean, sealed: Uint8Array, aad: Uint8Array, read: (plain: Uint8Array) => T): T | typeof NOT_AUTHENTIC {
    if (sealed.length < IETF_TAG_BYTES) return NOT_AUTHENTIC;
    const outLen = sealed.length - IETF_TAG_BYTES;
    const used = HEADER + aad.length + sealed.length + outLen;
    const base = this.scratch(used);
    const heap = this.lib.HEAPU8; // read after any growth: a grown memory has a new view
    const npub = base + IETF_KEY_BYTES;
    const ad = base + HEADER;
    const c = ad + aad.length;
    const m = c + sealed.length;
    try {
      heap.set(key, base);
      if (xnonce) {
        heap[npub] = 0; heap[npub + 1] = 0; heap[npub + 2] = 0; heap[npub + 3] = 0;
        for (let i = 0; i < 8; i++) heap[npub + 4 + i] = nonce[16 + i]!;
      } else {
        heap.set(nonce, npub);
      }
      heap.set(aad, ad);
      heap.set(sealed, c);
      const rc = this.lib._crypto_aead_chacha20poly1305_ietf_decrypt(m, 0, 0, c, sealed.length, 0, ad, aad.length, 0, npub, base);
      return rc === 0 ? read(heap.subarray(m, m + outLen)) : NOT_AUTHENTIC;
    } finally {
      heap.fill(0, base, base + used);
      this.scrubStack();
    }
  }
}

const copyOut = (plain: Uint8Array): Uint8Array => plain.slice();

function checkSizes(key: Uint8Array, nonce12: Uint8Array): void {
  if (key.length !== IETF_KEY_BYTES) throw new RangeError(`ChaCha20-Poly1305 key must be ${IETF_KEY_BYTES} bytes`);
  if (nonce12.length !== IETF_NONCE_BYTES) throw new RangeError(`ChaCha20-Poly1305 nonce must be ${IETF_NONCE_BYTES} bytes`);
}

/** Loads libsodium once; null when it is missing, fails to start, or its exports are not the shape this file calls. */
export async function loadSodiumAead(): Promise<SodiumAead | null> {
  try {
    const lib = createRequire(import.meta.url)('libsodium') as LibSodium;
    await lib.ready;
    // The argument counts pin the i32-pair calling convention the calls above use.
    if (lib._crypto_aead_chacha20poly1305_ietf_encrypt?.length !== 11) return null;
    if (lib._crypto_aead_chacha20poly1305_ietf_decrypt?.length !== 11) return null;
    if (typeof lib._malloc !== 'function' || !(lib.HEAPU8 instanceof Uint8Array)) return null;
    if (lib._sodium_init() < 0) return null;
    const aead = new WasmAead(lib);
    return aead.locatePartialBlock() ? aead : null;
  } catch {
    return null;
  }
}
