// What the secret service needs from sealing: seal a value for the version it
// will be stored as, and open a stored row as text. Writes generate a DEK with
// the KMS provider; reads unwrap through the DEK cache.
import type { DekCache } from '../kms/dek-cache.js';
import type { KmsProvider } from '../kms/provider.js';
import type { StoredVersion } from '../store/queries.js';
import { openBoundAs, sealVersion, type SealedVersion } from './envelope.js';
import { rowBinding } from './row-binding.js';

export interface VersionSealer {
  seal(name: string, version: number, value: Uint8Array): Promise<SealedVersion>;
  /** The value of a stored version as UTF-8 text; its plaintext bytes are zeroed before this returns. */
  openText(row: StoredVersion): string | Promise<string>;
}

export function createVersionSealer(kms: { provider: KmsProvider; cache: DekCache }): VersionSealer {
  const { provider, cache } = kms;
  return {
    seal: (name, version, value) => sealVersion(provider, name, version, value),
    openText: (row) => openBoundAs(cache, rowBinding(row), utf8Text),
  };
}

/** Decodes lent plaintext bytes (zeroed by the lender once this returns) to the value's text. */
function utf8Text(plain: Uint8Array): string {
  return Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength).toString('utf8');
}
