// Envelope encryption of one secret version (DESIGN §1):
// a fresh DEK per version from KMS GenerateDataKey seals the value with
// XChaCha20-Poly1305 under a fresh random 24-byte nonce and AAD `name:version`;
// only the ciphertext, nonce, KMS-wrapped DEK and its key id are stored.

import { randomFillSync } from 'node:crypto';
import { KmsIntegrityError, type EncryptionContext, type KmsProvider } from '../kms/provider.js';
import { DekCache, type DekSource } from '../kms/dek-cache.js';
import { IntegrityError } from './errors.js';
import { NONCE_BYTES, openXChaCha, openXChaChaWithSubkeyAs, sealXChaCha, xchachaSubkey } from './xchacha.js';

/** The stored columns of `secret_versions` this module produces and consumes. */
export interface SealedVersion {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  wrappedDek: Uint8Array;
  kmsKeyId: string;
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
 * KmsUnavailableError passes through untouched. The caller zeroes the
 * returned plaintext.
 */
export async function openVersion(keys: DekSource | KmsProvider, name: string, version: number, record: SealedVersion): Promise<Uint8Array> {
  return openVersionAs(keys, name, version, record, (plain) => plain.slice());
}

/** Per-record constants of a read, kept per `stable` record object. */
interface ReadBinding {
  name: string;
  version: number;
  ctx: EncryptionContext;
  aad: Uint8Array;
}
const bindings = new WeakMap<object, ReadBinding>();

function bindingOf(name: string, version: number, stable: object | undefined): ReadBinding {
  const known = stable === undefined ? undefined : bindings.get(stable);
  if (known !== undefined && known.name === name && known.version === version) return known;
  const made = { name, version, ctx: context(name, version), aad: versionAad(name, version) };
  if (stable !== undefined) bindings.set(stable, made);
  return made;
}

/**
 * openVersion that lends the plaintext to `read` (synchronous; it must not
 * keep the bytes, which are zeroed when it returns) and returns what `read`
 * returns: synchronously on a DEK cache hit, else as a promise.
 *
 * Through a DekCache, the XChaCha20 subkey of the record's nonce is cached
 * beside the DEK (bound to the same key id, context and wrapped DEK, and to
 * the nonce), so a cached read is one ChaCha20-Poly1305 open and nothing
 * else. `stable`, when given, is an object that stands for exactly this
 * record for as long as it lives (the reader's cached row, which is never
 * mutated and is replaced when the row changes): the AAD, the context and the
 * DEK cache entry are then found by its identity rather than rebuilt and
 * compared byte by byte on every read.
 */
export function openVersionAs<T>(
  keys: DekSource | KmsProvider,
  name: string,
  version: number,
  record: SealedVersion,
  read: (plain: Uint8Array) => T,
  stable?: object,
): T | Promise<T> {
  try {
    const b = bindingOf(name, version, stable);
    if (keys instanceof DekCache) {
      const opened = keys.useDerivedKey(
        record.kmsKeyId, record.wrappedDek, b.ctx, xchachaSubkey, record.nonce,
        (subkey) => openXChaChaWithSubkeyAs(subkey, record.nonce, record.ciphertext, b.aad, read),
        stable,
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
