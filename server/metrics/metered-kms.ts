// Counts every KMS call by operation and result for coffer_kms_requests_total.
import type { EncryptionContext, KmsProvider } from '../kms/provider.js';
import { KmsIntegrityError, KmsUnavailableError } from '../kms/provider.js';
import type { CofferMetrics } from './coffer-metrics.js';

function resultOf(err: unknown): string {
  if (err instanceof KmsUnavailableError) return 'unavailable';
  if (err instanceof KmsIntegrityError) return 'integrity_error';
  return 'error';
}

export function meteredKms(inner: KmsProvider, m: CofferMetrics): KmsProvider {
  async function count<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      const out = await call();
      m.kmsRequests.inc({ operation, result: 'ok' });
      return out;
    } catch (err) {
      m.kmsRequests.inc({ operation, result: resultOf(err) });
      throw err;
    }
  }
  return {
    mode: inner.mode,
    get currentKeyId() {
      return inner.currentKeyId;
    },
    generateDataKey: (ctx: EncryptionContext) => count('generate_data_key', () => inner.generateDataKey(ctx)),
    decrypt: (wrapped, keyId, ctx) => count('decrypt', () => inner.decrypt(wrapped, keyId, ctx)),
    reEncrypt: (wrapped, keyId, ctx) => count('re_encrypt', () => inner.reEncrypt(wrapped, keyId, ctx)),
    listRotations: () => count('list_rotations', () => inner.listRotations()),
  };
}
