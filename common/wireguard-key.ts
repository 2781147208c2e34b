// WireGuard keys in wg's text form (base64 of 32 bytes, 44 characters).
// The private key stays in Buffers that are zeroed when replaced or at exit;
// it is never turned into a JS string (those cannot be wiped), never logged,
// and reaches `wg` only on its stdin.
import { createPrivateKey, createPublicKey } from 'node:crypto';

const KEY_TEXT = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** True for a 44-character base64 text of exactly 32 bytes (canonical padding). */
export function isWgKey(text: string): boolean {
  return KEY_TEXT.test(text);
}

export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

// PKCS#8 DER prefix of an X25519 private key (RFC 8410); the 32 key bytes follow.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

const CANONICAL_LAST = Buffer.from('AEIMQUYcgkosw048');

function isB64Byte(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

export class PrivateKey {
  private constructor(
    /** The 44 base64 characters, as wg reads them from a key file. */
    private readonly text: Buffer,
    readonly publicKey: string,
  ) {}

  /**
   * Parses a key file's bytes (surrounding whitespace trimmed). The input
   * buffer is left as it is; the caller zeroes it.
   */
  static fromFile(bytes: Buffer): PrivateKey {
    let start = 0;
    let end = bytes.length;
    while (start < end && isSpace(bytes[start] as number)) start++;
    while (end > start && isSpace(bytes[end - 1] as number)) end--;
    const len = end - start;
    if (len !== 44 || bytes[end - 1] !== 0x3d) {
      throw new KeyFileError(`expected a WireGuard private key (44 characters of base64, as \`wg genkey\` prints), got ${len} characters`);
    }
    for (let i = start; i < end - 1; i++) {
      if (!isB64Byte(bytes[i] as number)) throw new KeyFileError('expected a WireGuard private key: not base64');
    }
    // The last character before '=' carries 4 bits of key and 2 zero bits, as wg writes it.
    if (!CANONICAL_LAST.includes(bytes[end - 2] as number)) throw new KeyFileError('expected a WireGuard private key: not canonical base64');
    const text = Buffer.alloc(44);
    bytes.copy(text, 0, start, end);
    const der = Buffer.alloc(PKCS8_X25519.length + 32);
    PKCS8_X25519.copy(der);
    const n = decodeBase64Into(text, der, PKCS8_X25519.length);
    if (n !== 32) {
      der.fill(0);
      text.fill(0);
      throw new KeyFileError('expected a WireGuard private key: does not decode to 32 bytes');
    }
    let publicKey: string;
    try {
      const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
      publicKey = spki.subarray(spki.length - 32).toString('base64');
    } finally {
      der.fill(0);
    }
    return new PrivateKey(text, publicKey);
  }

  /** The key text followed by a newline, for `wg set … private-key /dev/stdin`. Zero it after use. */
  stdinBytes(): Buffer {
    const b = Buffer.alloc(45);
    this.text.copy(b);
    b[44] = 0x0a;
    return b;
  }

  /** True when both hold the same key. */
  sameAs(other: PrivateKey): boolean {
    return this.text.equals(other.text);
  }

  zero(): void {
    this.text.fill(0);
  }

  /** Keys never print themselves. */
  toJSON(): string {
    return '[private key]';
  }

  toString(): string {
    return '[private key]';
  }
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_VALUE[B64.charCodeAt(i)] = i;

/** Decodes padded base64 bytes into `out` at `offset` without making a string; returns the byte count, or -1. */
export function decodeBase64Into(src: Buffer, out: Buffer, offset: number): number {
  let bits = 0;
  let acc = 0;
  let n = 0;
  for (const c of src) {
    if (c === 0x3d) break;
    const v = c < 128 ? (B64_VALUE[c] as number) : -1;
    if (v < 0) return -1;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (offset + n >= out.length) return -1;
      out[offset + n++] = (acc >> bits) & 0xff;
    }
  }
  acc = 0;
  return n;
}
