// Envelope encryption of one secret version (DESIGN §1):
// a fresh DEK per version from KMS GenerateDataKey seals the value with
// XChaCha20-Poly1305 under a fresh random 24-byte nonce and AAD `name:version`;
// only the ciphertext, nonce, KMS-wrapped DEK and its key id are stored.

import { randomFillSync } from 'node:crypto';
import { KmsIntegrityError, type EncryptionContext, type KmsProvider } from '../kms/provider.js';
import type { DekSource } from '../kms/dek-cache.js';
import { IntegrityError } from './errors.js';
import { NONCE_BYTES, openXChaCha, sealXChaCha } from './xchacha.js';

/** The stored columns of `secret_versions` this module produces and consumes. */
export interface SealedVersion {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  wrappedDek: Uint8Array;
  kmsKeyId: string;
}

const utf8 = new TextEncoder();

/** AAD binding a ciphertext to its row: UTF-8 of `name:version`. */
export function versionAad(name: string, version: number): Uint8Array {
  return utf8.encode(`${name}:${version}`);
}

function context(name: string, version: number): EncryptionContext {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError('secret version must be a positive integer');
  return { secret: name, version };
}

export async function sealVersion(kms: KmsProvider, name: string, version: number, value: Uint8Array): Promise<SealedVersion> {
  const ctx = context(name, version);
  const nonce = randomFillSync(new Uint8Array(NONCE_BYTES));
  const dk = await kms.generateDataKey(ctx);
  try {
    const ciphertext = sealXChaCha(dk.plaintext, nonce, value, versionAad(name, version));
    return { ciphertext, nonce, wrappedDek: dk.wrapped, kmsKeyId: dk.keyId };
  } finally {
    dk.plaintext.fill(0); // the DEK is used once, then zeroized
  }
}

/**
 * Unwraps the DEK (through the cache when `keys` is a DekCache, or straight
 * from a KmsProvider) and opens the value. A record that does not
 * authenticate, or whose wrapped DEK KMS rejects, is an IntegrityError;
 * KmsUnavailableError passes through untouched.
 */
export async function openVersion(keys: DekSource | KmsProvider, name: string, version: number, record: SealedVersion): Promise<Uint8Array> {
  const ctx = context(name, version);
  const source = 'withDek' in keys ? keys : uncached(keys);
  try {
    return await source.withDek(record.kmsKeyId, record.wrappedDek, ctx, (dek) =>
      openXChaCha(dek, record.nonce, record.ciphertext, versionAad(name, version)),
    );
  } catch (err) {
    if (err instanceof KmsIntegrityError) throw new IntegrityError('wrapped data key failed authentication');
    throw err;
  }
}

/** A DekSource without caching: unwrap, use, zero. */
function uncached(kms: KmsProvider): DekSource {
  return {
    async withDek(keyId, wrapped, ctx, fn) {
      const dek = await kms.decrypt(wrapped, keyId, ctx);
      try {
        return await fn(dek);
      } finally {
        dek.fill(0);
      }
    },
  };
}
