// Shared VaultCluster inputs for the operator unit tests.
import type { VaultCluster } from '../../../operator/api/types.js';
import { parseVaultCluster } from '../../../operator/api/validate.js';

export function rawCluster(spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'coffer.dev/v1alpha1',
    kind: 'VaultCluster',
    metadata: { name: 'vault', namespace: 'secrets', uid: '0b1c2d3e-0000-4000-8000-000000000001', ...metadata },
    spec: { image: 'registry.example/coffer:1.0.0', ...spec },
  };
}

export function cluster(spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): VaultCluster {
  return parseVaultCluster(rawCluster(spec, metadata));
}
