// Envelope encryption of one secret version (DESIGN §1):
// a fresh DEK per version from KMS GenerateDataKey seals the value with
// XChaCha20-Poly1305 under a fresh random 24-byte nonce and AAD `name:version`;
// only the ciphertext, nonce, KMS-wrapped DEK and its key id are stored.

import { IntegrityError } from '../crypto/errors.js';
import { randomArray } from '../crypto/random-pool.js';
import { NONCE_BYTES, openXChaCha, openXChaChaWithSubkeyAs, sealXChaCha, xchachaSubkey } from '../crypto/xchacha.js';
import { DekCache, type DekMemo, type DekSource } from '../kms/dek-cache.js';
import { KmsIntegrityError, type EncryptionContext, type KmsProvider } from '../kms/provider.js';

/** The stored columns of `secret_versions` this module produces and consumes. */
export interface SealedVersion {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  wrappedDek: Uint8Array;
  kmsKeyId: string;
}

/**
 * Everything an open of one record needs besides the DEK: its KMS context,
 * its AAD and the record itself. Being a DekMemo, it also remembers the DEK
 * cache entry the record was last opened with; a binding kept for as long as
 * its record lives (row-binding.ts) makes a repeated read one lookup.
 */
export interface OpenBinding extends DekMemo {
  readonly ctx: EncryptionContext;
  readonly aad: Uint8Array;
  readonly record: SealedVersion;
}

/** AAD binding a ciphertext to its row: UTF-8 of `name:version`. */
export function versionAad(name: string, version: number): Uint8Array {
  // Buffer.from allocates small results from Node's pool: cheaper than TextEncoder on the read path.
  const b = Buffer.from(`${name}:${version}`, 'utf8');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

function context(name: string, version: number): EncryptionContext {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError('secret version must be a positive integer');
  return { secret: name, version };
}

/** The binding of `record` as version `version` of `name`; throws RangeError for a version that cannot exist. */
export function openBinding(name: string, version: number, record: SealedVersion): OpenBinding {
  return { ctx: context(name, version), aad: versionAad(name, version), record, entry: undefined };
}

export async function sealVersion(kms: KmsProvider, name: string, version: number, value: Uint8Array): Promise<SealedVersion> {
  const ctx = context(name, version);
  const nonce = randomArray(NONCE_BYTES);
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
 * KmsUnavailableError passes through untouched. The caller zeroes the
 * returned plaintext.
 */
export async function openVersion(keys: DekSource | KmsProvider, name: string, version: number, record: SealedVersion): Promise<Uint8Array> {
  return openVersionAs(keys, name, version, record, (plain) => plain.slice());
}

/**
 * openVersion that lends the plaintext to `read` (synchronous; it must not
 * keep the bytes, which are zeroed when it returns) and returns what `read`
 * returns: synchronously on a DEK cache hit, else as a promise.
 */
export function openVersionAs<T>(
  keys: DekSource | KmsProvider, name: string, version: number, record: SealedVersion, read: (plain: Uint8Array) => T,
): T | Promise<T> {
  return openBoundAs(keys, openBinding(name, version, record), read);
}

/**
 * openVersionAs for a record already bound. Through a DekCache, the XChaCha20
 * subkey of the record's nonce is cached beside the DEK (bound to the same key
 * id, context and wrapped DEK, and to the nonce), so a cached read is one
 * ChaCha20-Poly1305 open and nothing else; the binding's memo finds the cache
 * entry by identity rather than by slot key and a byte comparison.
 */
export function openBoundAs<T>(keys: DekSource | KmsProvider, b: OpenBinding, read: (plain: Uint8Array) => T): T | Promise<T> {
  const record = b.record;
  try {
    if (keys instanceof DekCache) {
      const opened = keys.useDerivedKey(
        record.kmsKeyId, record.wrappedDek, b.ctx, xchachaSubkey, record.nonce,
        (subkey) => openXChaChaWithSubkeyAs(subkey, record.nonce, record.ciphertext, b.aad, read),
        b,
      );
      return opened instanceof Promise ? opened.catch(integrity) : opened;
    }
    const source = 'withDek' in keys ? keys : uncached(keys);
    return source
      .withDek(record.kmsKeyId, record.wrappedDek, b.ctx, (dek) => {
        const plain = openXChaCha(dek, record.nonce, record.ciphertext, b.aad);
        try {
          return read(plain);
        } finally {
          plain.fill(0);
        }
      })
      .catch(integrity);
  } catch (err) {
    if (err instanceof KmsIntegrityError) throw new IntegrityError('wrapped data key failed authentication');
    throw err;
  }
}

/** A wrapped DEK that KMS rejects is a stored record that failed authentication. */
function integrity(err: unknown): Promise<never> {
  if (err instanceof KmsIntegrityError) return Promise.reject(new IntegrityError('wrapped data key failed authentication'));
  return Promise.reject(err);
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
