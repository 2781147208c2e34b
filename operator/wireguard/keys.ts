// WireGuard key pairs: X25519 through node:crypto, in the text form `wg`
// uses (standard base64 of the raw 32 bytes: 44 characters with padding).
//
// Private keys are only ever handled as opaque strings that go into the key
// Secret; nothing here logs them or puts them into an error message.
import { generateKeyPairSync } from 'node:crypto';
import { isWgKey, PrivateKey } from '../../common/wireguard-key.js';

export const KEY_BYTES = 32;

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

/** True when `text` is a key in wg's text form (44 characters, 32 bytes). */
export function isWireguardKey(text: unknown): text is string {
  return typeof text === 'string' && isWgKey(text);
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

/**
 * The public key of a private key, both in text form. Parsed by the agent's
 * own key reader, so the operator never writes a key the agent would refuse.
 * Throws (without the key in the message) when it is not a key.
 */
export function publicKeyOf(privateKey: string): string {
  if (!isWireguardKey(privateKey)) throw new Error('not a WireGuard private key (44 base64 characters)');
  const bytes = Buffer.from(privateKey, 'ascii');
  try {
    const key = PrivateKey.fromFile(bytes);
    key.zero();
    return key.publicKey;
  } finally {
    bytes.fill(0);
  }
}
