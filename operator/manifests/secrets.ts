// The Secrets a VaultCluster may need generated: the bootstrap token, the
// cluster key that authenticates Raft traffic between its pods, and, in local
// KMS mode, the master key. Manifests only ever reference them (by
// name and key, through secretKeyRef); their values exist in exactly one
// place, the Secret the reconciler creates once with buildGeneratedSecret().
//
// Create-once contract for the reconciler: when `generated` is true and the
// Secret does not exist, create it with buildGeneratedSecret(); when it
// exists (or the create returns 409 AlreadyExists), keep it untouched,
// whatever it holds. Never update or re-generate: a new bootstrap token is
// ignored by nodes that already minted `bootstrap-admin`, a new master key
// makes every stored secret undecryptable, and a new cluster key splits pods
// started before it from pods started after. The Secrets are immutable.
import { randomBytes as nodeRandomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { SecretKeyRef, VaultCluster } from '../api/types.js';
import {
  BOOTSTRAP_TOKEN_KEY, CLUSTER_KEY_KEY, LABEL_COMPONENT, MASTER_KEY_KEY, commonLabels, namespaceOf, ownerReferences, resourceNames,
} from './names.js';

export type GeneratedSecretPurpose = 'bootstrap-token' | 'cluster-key' | 'local-master-key';

export interface SecretTemplate {
  purpose: GeneratedSecretPurpose;
  /** Namespace, Secret name and key the pods read. */
  namespace: string;
  name: string;
  key: string;
  /**
   * True when the spec names no Secret: the operator creates this one once
   * and never overwrites it. False: the user supplies it (the ref in the
   * spec); the operator only reads it and reports when it is missing.
   */
  generated: boolean;
  /** What the value is, for `render` output and events. Never the value. */
  description: string;
}

/** Size of the bootstrap token, the cluster key and the local master key: 256 bits. */
export const SECRET_BYTES = 32;

/** Where the pods read the bootstrap token from. */
export function bootstrapTokenRef(vc: VaultCluster): SecretKeyRef {
  return vc.spec.bootstrap.tokenSecretRef ?? { name: resourceNames(vc.metadata.name).bootstrapTokenSecret, key: BOOTSTRAP_TOKEN_KEY };
}

/** Where the pods read VAULT_CLUSTER_KEY from: always the generated Secret. */
export function clusterKeyRef(vc: VaultCluster): SecretKeyRef {
  return { name: resourceNames(vc.metadata.name).clusterKeySecret, key: CLUSTER_KEY_KEY };
}

/** Where the pods read the local master key from; undefined in aws mode. */
export function masterKeyRef(vc: VaultCluster): SecretKeyRef | undefined {
  if (vc.spec.kms.mode !== 'local') return undefined;
  return vc.spec.kms.localMasterKeySecretRef ?? { name: resourceNames(vc.metadata.name).masterKeySecret, key: MASTER_KEY_KEY };
}

/** The Secrets the pods of this VaultCluster read, generated or user-supplied. */
export function secretTemplates(vc: VaultCluster): SecretTemplate[] {
  const namespace = namespaceOf(vc);
  const out: SecretTemplate[] = [];
  const token = bootstrapTokenRef(vc);
  out.push({
    purpose: 'bootstrap-token',
    namespace,
    ...token,
    generated: vc.spec.bootstrap.tokenSecretRef === undefined,
    description: 'bootstrap admin token (256-bit random, the same for every pod)',
  });
  out.push({
    purpose: 'cluster-key',
    namespace,
    ...clusterKeyRef(vc),
    generated: true,
    description: 'cluster key authenticating Raft traffic between the pods (base64 of 32 random bytes, shared by every pod)',
  });
  const key = masterKeyRef(vc);
  if (key) {
    out.push({
      purpose: 'local-master-key',
      namespace,
      ...key,
      generated: vc.spec.kms.localMasterKeySecretRef === undefined,
      description: 'local KMS master key (base64 of 32 random bytes, shared by every pod)',
    });
  }
  return out;
}

/**
 * A fresh value for a generated Secret, as the server reads it from its env:
 * the token is 32 random bytes as base64url (43 characters), the master key
 * and the cluster key 32 random bytes as standard base64
 * (VAULT_LOCAL_MASTER_KEY, VAULT_CLUSTER_KEY).
 */
export function generateSecretValue(purpose: GeneratedSecretPurpose, random: (n: number) => Uint8Array = nodeRandomBytes): string {
  const bytes = random(SECRET_BYTES);
  if (bytes.length !== SECRET_BYTES) throw new Error(`random source returned ${bytes.length} bytes, expected ${SECRET_BYTES}`);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = purpose === 'bootstrap-token' ? buf.toString('base64url') : buf.toString('base64');
  bytes.fill(0);
  return text;
}

/**
 * The Secret to create, once, for a generated template (throws for a
 * user-supplied one). Owned by the VaultCluster only when the spec opts into
 * deleting the PVCs with it: otherwise the data outlives the VaultCluster,
 * and so must the key that decrypts it and the token that administers it.
 */
export function buildGeneratedSecret(
  vc: VaultCluster,
  template: SecretTemplate,
  random: (n: number) => Uint8Array = nodeRandomBytes,
): V1Secret {
  if (!template.generated) throw new Error(`Secret ${template.name} is supplied by the user; the operator does not create it`);
  const value = generateSecretValue(template.purpose, random);
  const owned = vc.spec.storage.deleteClaimsOnDelete;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: template.name,
      namespace: template.namespace,
      labels: { ...commonLabels(vc.metadata.name), [LABEL_COMPONENT]: template.purpose },
      ...(owned ? { ownerReferences: ownerReferences(vc) } : {}),
    },
    type: 'Opaque',
    immutable: true,
    data: { [template.key]: Buffer.from(value, 'utf8').toString('base64') },
  };
}
