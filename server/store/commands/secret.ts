// secret.*: a version written, a secret deleted, a version's DEK re-wrapped.
import type { Definitions, Fields } from './definition.js';
import {
  AEAD_TAG_BYTES, bytes, ident, int, isoTime, MAX_CIPHERTEXT_BYTES, MAX_KMS_KEY_ID, MAX_WRAPPED_DEK_BYTES, NONCE_BYTES,
  nullable, oneOf, secretName, text,
} from './fields.js';

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

export type SecretCommand = SecretPutV1 | SecretPutV2 | SecretDeleteV1 | SecretRewrapV1;

/** What a voter advertises when it decodes secret.put with the write mode. */
export const SECRET_PUT_WITH_MODE = 'secret.put@2';

/**
 * secret.put as every voter decodes it. With `modeDecodable` (every voter
 * advertises SECRET_PUT_WITH_MODE: always known on the leader, a follower
 * knows few voters' capabilities) it is v2, which carries the mode, and the
 * state machine refuses it against the state the write lands on. Otherwise
 * v1, exactly as safe: expected_current pins the write to the state its mode
 * was checked against (0 = only a create, k >= 1 = only an update).
 */
export function secretPut(fields: Fields<SecretPutV1>, mode: WriteMode, modeDecodable: boolean): SecretPutV1 | SecretPutV2 {
  return modeDecodable ? { t: 'secret.put', v: 2, ...fields, mode } : { t: 'secret.put', v: 1, ...fields };
}

export const secretDelete = (fields: Fields<SecretDeleteV1>): SecretDeleteV1 => ({ t: 'secret.delete', v: 1, ...fields });

export const secretRewrap = (fields: Fields<SecretRewrapV1>): SecretRewrapV1 => ({ t: 'secret.rewrap', v: 1, ...fields });

const putFields = {
  name: secretName,
  version: int(1),
  expected_current: int(0),
  cas: nullable(int(0)),
  ciphertext: bytes(AEAD_TAG_BYTES, MAX_CIPHERTEXT_BYTES),
  nonce: bytes(NONCE_BYTES, NONCE_BYTES),
  wrapped_dek: bytes(1, MAX_WRAPPED_DEK_BYTES),
  kms_key_id: text(1, MAX_KMS_KEY_ID),
  created_at: isoTime,
  created_by: ident,
};

export const SECRET_COMMANDS: Definitions<SecretCommand> = {
  'secret.put': {
    versions: { 1: putFields, 2: { ...putFields, mode: oneOf(WRITE_MODES) } },
    // A version is always the one after the current version the value was sealed against.
    refine: (c) => (c.version !== c.expected_current + 1 ? 'version must be expected_current + 1' : null),
    binary: ['ciphertext', 'nonce', 'wrapped_dek'],
    forwardable: true,
    invalidates: ['secrets'],
  },
  'secret.delete': {
    versions: { 1: { name: secretName, at: isoTime } },
    binary: [],
    forwardable: true,
    invalidates: ['secrets'],
  },
  'secret.rewrap': {
    versions: {
      1: {
        name: secretName,
        version: int(1),
        expected_wrapped_dek: bytes(1, MAX_WRAPPED_DEK_BYTES),
        wrapped_dek: bytes(1, MAX_WRAPPED_DEK_BYTES),
        kms_key_id: text(1, MAX_KMS_KEY_ID),
        wrapped_rotation_at: isoTime,
      },
    },
    binary: ['expected_wrapped_dek', 'wrapped_dek'],
    // The re-wrap worker runs on the leader only; a pass cut short by a leader change resumes on the next leader.
    forwardable: false,
    invalidates: ['secrets'],
  },
};
