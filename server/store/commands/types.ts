// The shapes of replicated commands, one interface per type and version.
// Every field the apply step needs (timestamps included) is decided by the
// proposer, so applying the same log yields the same state on every node.
import type { RoleRule } from '../../rbac/rules.js';

export interface SecretPutV1 {
  t: 'secret.put';
  v: 1;
  name: string;
  version: number;
  /** current_version the proposer sealed against (0 = new); apply refuses if it moved. */
  expected_current: number;
  /** Caller's check-and-set, if any; a mismatch is reported as cas_mismatch rather than a retryable race. */
  cas: number | null;
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  wrapped_dek: Uint8Array;
  kms_key_id: string;
  created_at: string;
  created_by: string;
}

/**
 * What the writer's token is authorized to do to the name: `create` (it must
 * not exist), `update` (it must exist) or `any` (both rights). Decided from
 * the token's rights, never from an existence read, and checked at apply.
 */
export type WriteMode = 'create' | 'update' | 'any';
export const WRITE_MODES: readonly WriteMode[] = ['create', 'update', 'any'];

/** secret.put carrying the authorized write mode (DESIGN §4: a create-only token never writes version 2). */
export interface SecretPutV2 extends Omit<SecretPutV1, 'v'> {
  v: 2;
  mode: WriteMode;
}

export interface SecretDeleteV1 {
  t: 'secret.delete';
  v: 1;
  name: string;
  at: string;
}

export interface TokenCreateV1 {
  t: 'token.create';
  v: 1;
  name: string;
  token_sha256: Uint8Array;
  role: string;
  created_at: string;
  expires_at: string | null;
}

/** Creates bootstrap-admin only when no token of that name exists (revoked stays revoked). */
export interface TokenBootstrapV1 {
  t: 'token.bootstrap';
  v: 1;
  token_sha256: Uint8Array;
  created_at: string;
}

export interface TokenRevokeV1 {
  t: 'token.revoke';
  v: 1;
  name: string;
  revoked_at: string;
}

export interface RolePutV1 {
  t: 'role.put';
  v: 1;
  name: string;
  rules: RoleRule[];
}

/** Deletes the role; its tokens keep their binding and merely find no role (older releases). */
export interface RoleDeleteV1 {
  t: 'role.delete';
  v: 1;
  name: string;
}

/** Deletes the role and revokes, at `at`, every token bound to it, so a new role of that name never revives them. */
export interface RoleDeleteV2 {
  t: 'role.delete';
  v: 2;
  name: string;
  at: string;
}

/** Records a member's Raft address so every node can dial it (precedes adding it as a learner). */
export interface ClusterPeerV1 {
  t: 'cluster.peer';
  v: 1;
  id: string;
  address: string;
}

/** Replaces the secrets, versions, roles, tokens and KMS state with a saved image (membership is kept). */
export interface StateRestoreV1 {
  t: 'state.restore';
  v: 1;
  image: Uint8Array;
}

/**
 * Like v1, but every revocation in the current state survives: a token
 * revoked now (by name or digest) stays revoked, and a token whose role was
 * deleted is revoked at `at` before its role comes back from the image.
 */
export interface StateRestoreV2 {
  t: 'state.restore';
  v: 2;
  image: Uint8Array;
  at: string;
}

/** Re-wrapped DEK of one version (ciphertext, nonce and AAD untouched); applies only if the stored wrap is still `expected_wrapped_dek`. */
export interface SecretRewrapV1 {
  t: 'secret.rewrap';
  v: 1;
  name: string;
  version: number;
  expected_wrapped_dek: Uint8Array;
  wrapped_dek: Uint8Array;
  kms_key_id: string;
  wrapped_rotation_at: string;
}

/** Sets re-wrap bookkeeping in kms_state (watermark, last pass). */
export interface KmsStateV1 {
  t: 'kms.state';
  v: 1;
  values: Record<string, string>;
}

export type Command =
  | SecretPutV1
  | SecretPutV2
  | SecretDeleteV1
  | TokenCreateV1
  | TokenBootstrapV1
  | TokenRevokeV1
  | RolePutV1
  | RoleDeleteV1
  | RoleDeleteV2
  | ClusterPeerV1
  | StateRestoreV1
  | StateRestoreV2
  | SecretRewrapV1
  | KmsStateV1;

export type CommandType = Command['t'];
