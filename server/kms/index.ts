// createKms(config) -> { provider, cache, ephemeralMasterKey, close }
//
// The one place that turns already-parsed configuration into the KMS stack:
//   config.mode 'local' -> LocalKms over config.localMasterKey (parse it from
//                          VAULT_LOCAL_MASTER_KEY with parseLocalMasterKey);
//                          without one, a random ephemeral key is generated and
//                          `ephemeralMasterKey` is true: the caller must log
//                          EPHEMERAL_MASTER_KEY_WARNING loudly.
//   config.mode 'aws'   -> AwsKms for config.keyId (VAULT_KMS_KEY_ID, required);
//                          AWS region/credentials/endpoint come from the SDK env.
//   config.dekCacheTtlSecs (VAULT_DEK_CACHE_TTL_SECS) -> DekCache; 0 disables it.
// Reads go through `cache` (server/sealing opens values with it); writes and re-wraps use
// `provider` directly. close() zeroes cached DEKs and the local master key.

import type { KMSClient } from '@aws-sdk/client-kms';
import { AwsKms } from './aws.js';
import { DekCache } from './dek-cache.js';
import { generateEphemeralMasterKey, LocalKms } from './local.js';
import type { KmsProvider } from './provider.js';

export interface KmsConfig {
  mode: 'local' | 'aws';
  keyId?: string;
  localMasterKey?: Uint8Array;
  dekCacheTtlSecs: number;
  dekCacheMaxEntries?: number;
}

/** Test seams; production passes nothing. */
export interface KmsDeps {
  awsClient?: KMSClient;
  now?: () => number;
  /** Wraps the provider (e.g. to count calls); `provider` and `cache` both use the wrapped one. */
  wrap?: (inner: KmsProvider) => KmsProvider;
}

export interface Kms {
  provider: KmsProvider;
  /** The provider before `wrap`, e.g. for LocalKms.rotate() in tests. */
  raw: KmsProvider;
  cache: DekCache;
  /** True when local mode runs on a random key: every secret is lost on restart. */
  ephemeralMasterKey: boolean;
  close(): void;
}

export const EPHEMERAL_MASTER_KEY_WARNING =
  'VAULT_LOCAL_MASTER_KEY is not set: using a random ephemeral master key. ' +
  'Every secret written now becomes undecryptable when this process restarts.';

export function createKms(config: KmsConfig, deps: KmsDeps = {}): Kms {
  let provider: LocalKms | AwsKms;
  let ephemeralMasterKey = false;
  if (config.mode === 'local') {
    let key = config.localMasterKey;
    if (!key) {
      key = generateEphemeralMasterKey();
      ephemeralMasterKey = true;
    }
    provider = new LocalKms(key);
    if (ephemeralMasterKey) key.fill(0); // LocalKms holds its own copy
  } else if (config.mode === 'aws') {
    if (!config.keyId) throw new Error('VAULT_KMS_KEY_ID is required when VAULT_KMS_MODE=aws');
    provider = new AwsKms({ keyId: config.keyId, client: deps.awsClient });
  } else {
    throw new Error(`VAULT_KMS_MODE must be 'local' or 'aws'`);
  }
  const outer = deps.wrap ? deps.wrap(provider) : provider;
  const cache = new DekCache(outer, {
    ttlSecs: config.dekCacheTtlSecs,
    maxEntries: config.dekCacheMaxEntries,
    now: deps.now,
  });
  return {
    provider: outer,
    raw: provider,
    cache,
    ephemeralMasterKey,
    close() {
      cache.close();
      provider.close();
    },
  };
}

export { AwsKms, type AwsKmsOptions } from './aws.js';
export { DekCache, type DekCacheOptions, type DekCacheStats, type DekSource } from './dek-cache.js';
export { LocalKms, parseLocalMasterKey, generateEphemeralMasterKey } from './local.js';
export * from './provider.js';
