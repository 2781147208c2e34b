// WireGuard key pairs: X25519 through node:crypto, in the text form `wg`
// uses (standard base64 of the raw 32 bytes: 44 characters with padding).
//
// Private keys are only ever handled as opaque strings that go into the key
// Secret; nothing here logs them or puts them into an error message.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';

/** DER prefix of a PKCS#8 X25519 private key (RFC 8410); the raw 32 bytes follow. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** DER prefix of an SPKI X25519 public key; the raw 32 bytes follow. */
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

export const KEY_BYTES = 32;
/** A WireGuard key as text: 43 base64 characters (the last one carries 2 bits) and one `=`. */
const KEY_TEXT = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

/** True when `text` is a key in wg's text form (44 characters, 32 bytes). */
export function isWireguardKey(text: unknown): text is string {
  return typeof text === 'string' && KEY_TEXT.test(text);
}

/**
 * A fresh key pair from node:crypto's X25519. The private key is clamped the
 * way `wg genkey` does (OpenSSL already generates clamped scalars; X25519
 * clamps on use anyway, so the public key is the same either way).
 */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const raw = Buffer.from(der.subarray(der.length - KEY_BYTES));
  der.fill(0);
  raw[0]! &= 248;
  raw[31] = (raw[31]! & 127) | 64;
  const text = raw.toString('base64');
  raw.fill(0);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  return { privateKey: text, publicKey: spki.subarray(spki.length - KEY_BYTES).toString('base64') };
}

/** A fresh private key (text form). */
export function generatePrivateKey(): string {
  return generateKeyPair().privateKey;
}

/** The public key of a private key, both in text form. Throws (without the key in the message) when it is not a key. */
export function publicKeyOf(privateKey: string): string {
  if (!isWireguardKey(privateKey)) throw new Error('not a WireGuard private key (44 base64 characters)');
  const raw = Buffer.from(privateKey, 'base64');
  const der = Buffer.concat([PKCS8_X25519, raw]);
  raw.fill(0);
  try {
    const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
    if (!spki.subarray(0, SPKI_X25519.length).equals(SPKI_X25519)) throw new Error('unexpected public key encoding');
    return spki.subarray(SPKI_X25519.length).toString('base64');
  } finally {
    der.fill(0);
  }
}
