// Field checks for replicated commands and restored rows. Each returns why a
// value is not acceptable, or null. They are pure functions of the value, so
// every node reaches the same verdict on the same entry.
import { roleRulesProblem } from '../../rbac/rules.js';
import { IDENT_RE, isValidSecretName, NODE_ID_PATTERN, RAFT_ADDRESS_PATTERN } from '../names.js';

export type Check = (value: unknown) => string | null;

/** What a 1 MiB value (the VAULT_MAX_VALUE_BYTES ceiling) seals to: the value and a 16-byte tag. */
export const MAX_CIPHERTEXT_BYTES = 1_048_576 + 16;
export const AEAD_TAG_BYTES = 16;
export const NONCE_BYTES = 24;
/** KMS ciphertext blobs are at most 6 KiB; a local wrap is 73 bytes. */
export const MAX_WRAPPED_DEK_BYTES = 6144;
/** A KMS key ARN is at most 2048 characters. */
export const MAX_KMS_KEY_ID = 2048;
export const SHA256_BYTES = 32;
/** Largest image a restore accepts (the POST /v1/admin/snapshot body limit). */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/** An ISO-8601 UTC instant as Date#toISOString writes it (fraction optional), and a real date. */
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

export const isoTime: Check = (v) =>
  typeof v === 'string' && ISO_RE.test(v) && !Number.isNaN(Date.parse(v)) ? null : 'must be an ISO-8601 UTC timestamp';

export const secretName: Check = (v) => (typeof v === 'string' && isValidSecretName(v) ? null : 'must be a valid secret name');

/** Token and role names. */
export const ident: Check = (v) => (typeof v === 'string' && IDENT_RE.test(v) ? null : 'must be a valid token or role name');

const NODE_ID_RE = new RegExp(NODE_ID_PATTERN);
const ADDRESS_RE = new RegExp(RAFT_ADDRESS_PATTERN);
export const nodeId: Check = (v) => (typeof v === 'string' && NODE_ID_RE.test(v) ? null : 'must be a valid node id');
export const raftAddress: Check = (v) => {
  if (typeof v !== 'string' || !ADDRESS_RE.test(v)) return 'must be host:port';
  const port = Number(v.slice(v.lastIndexOf(':') + 1));
  return port >= 1 && port <= 65535 ? null : 'must be host:port';
};

/** A safe integer of at least `min`. */
export const int =
  (min: number): Check =>
  (v) =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= min ? null : `must be an integer >= ${min}`;

export const bytes =
  (min: number, max: number): Check =>
  (v) =>
    v instanceof Uint8Array && v.byteLength >= min && v.byteLength <= max
      ? null
      : min === max
        ? `must be ${min} bytes`
        : `must be ${min} to ${max} bytes`;

/** Printable ASCII text of the given length range. */
export const text =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'string' && v.length >= min && v.length <= max && /^[\x20-\x7e]*$/.test(v) ? null : `must be ${min} to ${max} printable characters`;

export const oneOf =
  <T extends string>(values: readonly T[]): Check =>
  (v) =>
    (values as readonly unknown[]).includes(v) ? null : `must be one of ${values.join(', ')}`;

export const nullable =
  (check: Check): Check =>
  (v) =>
    v === null ? null : check(v);

export const roleRules: Check = (v) => roleRulesProblem(v);

/** kms_state: re-wrap bookkeeping keys and their (JSON or plain) text values. */
export const KMS_STATE_KEY_RE = /^[a-z][a-z0-9._-]{0,63}$/;
export const MAX_KMS_STATE_VALUE = 64 * 1024;
export const MAX_KMS_STATE_KEYS = 16;

export const kmsStateValues: Check = (v) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'must be an object';
  const entries = Object.entries(v);
  if (entries.length < 1 || entries.length > MAX_KMS_STATE_KEYS) return `must hold 1 to ${MAX_KMS_STATE_KEYS} entries`;
  for (const [k, val] of entries) {
    if (!KMS_STATE_KEY_RE.test(k)) return 'has an invalid key';
    if (typeof val !== 'string' || val.length > MAX_KMS_STATE_VALUE) return `values must be text of at most ${MAX_KMS_STATE_VALUE} characters`;
  }
  return null;
};

/**
 * Checks that `raw` has exactly the fields `t`, `v` and those of `fields`,
 * each passing its check. Returns the first problem, naming the field.
 */
export function shapeProblem(raw: Record<string, unknown>, fields: Readonly<Record<string, Check>>): string | null {
  for (const k of Object.keys(raw)) {
    if (k !== 't' && k !== 'v' && !Object.hasOwn(fields, k)) return `unexpected field ${JSON.stringify(k.slice(0, 64))}`;
  }
  for (const [k, check] of Object.entries(fields)) {
    if (!Object.hasOwn(raw, k)) return `missing field ${k}`;
    const problem = check(raw[k]);
    if (problem) return `${k} ${problem}`;
  }
  return null;
}
