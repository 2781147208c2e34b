// The per-row binding of the value read path. The reader hands out a cached
// row that is frozen and replaced (never changed) when its version changes, so
// the row object stands for exactly one stored record while it lives. Its
// binding (context, AAD, the record view and the DEK cache entry it was last
// opened with) is built on the first read and found by the row's identity on
// every later one; it goes when the row is dropped.
import type { StoredVersion } from '../store/queries.js';
import { openBinding, type OpenBinding } from './envelope.js';

const bindings = new WeakMap<StoredVersion, OpenBinding>();

export function rowBinding(row: StoredVersion): OpenBinding {
  let b = bindings.get(row);
  if (b === undefined) {
    b = openBinding(row.name, row.version, {
      ciphertext: row.ciphertext,
      nonce: row.nonce,
      wrappedDek: row.wrapped_dek,
      kmsKeyId: row.kms_key_id,
    });
    bindings.set(row, b);
  }
  return b;
}
