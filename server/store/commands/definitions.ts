// Every command type in one table: its fields per version and their checks,
// its binary fields (base64 on the wire), whether a follower may forward it
// to the leader, and which reader caches applying it invalidates.
import { imageProblem } from '../image.js';
import {
  AEAD_TAG_BYTES,
  bytes,
  type Check,
  ident,
  int,
  isoTime,
  kmsStateValues,
  MAX_CIPHERTEXT_BYTES,
  MAX_IMAGE_BYTES,
  MAX_KMS_KEY_ID,
  MAX_WRAPPED_DEK_BYTES,
  nodeId,
  NONCE_BYTES,
  nullable,
  oneOf,
  raftAddress,
  roleRules,
  secretName,
  SHA256_BYTES,
  text,
} from './fields.js';
import { WRITE_MODES, type Command, type CommandType } from './types.js';

/** Reader caches a command may make stale: stored secret rows, token and role rows, the peer address book. */
export type CacheScope = 'secrets' | 'auth' | 'peers';

export interface CommandDefinition {
  /** Fields (besides `t` and `v`) and their checks, per version this build decodes. */
  versions: Readonly<Record<number, Readonly<Record<string, Check>>>>;
  /** Checks across fields, run once every field passed its own. */
  refine?: (cmd: Command) => string | null;
  /** Fields carried as base64 text on the wire. */
  binary: readonly string[];
  /**
   * Whether the leader accepts it from a follower on /raft/v1/propose. Only
   * what API routes build on any node: what the leader builds for itself
   * (bootstrap token, re-wrap worker, membership) is never taken from outside.
   */
  forwardable: boolean;
  invalidates: readonly CacheScope[];
}

const secretPutFields = {
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

const sha256 = bytes(SHA256_BYTES, SHA256_BYTES);

export const COMMANDS: Readonly<Record<CommandType, CommandDefinition>> = {
  'secret.put': {
    versions: { 1: secretPutFields, 2: { ...secretPutFields, mode: oneOf(WRITE_MODES) } },
    // A version is always the one after the current version the value was sealed against.
    refine: (c) => (c.t === 'secret.put' && c.version !== c.expected_current + 1 ? 'version must be expected_current + 1' : null),
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
  'token.create': {
    versions: { 1: { name: ident, token_sha256: sha256, role: ident, created_at: isoTime, expires_at: nullable(isoTime) } },
    binary: ['token_sha256'],
    forwardable: true,
    invalidates: ['auth'],
  },
  'token.bootstrap': {
    versions: { 1: { token_sha256: sha256, created_at: isoTime } },
    binary: ['token_sha256'],
    // Proposed by a node that just became leader; if leadership moved meanwhile, the next leader proposes it.
    forwardable: false,
    invalidates: ['auth'],
  },
  'token.revoke': {
    versions: { 1: { name: ident, revoked_at: isoTime } },
    binary: [],
    forwardable: true,
    invalidates: ['auth'],
  },
  'role.put': {
    versions: { 1: { name: ident, rules: roleRules } },
    binary: [],
    forwardable: true,
    invalidates: ['auth'],
  },
  'role.delete': {
    versions: { 1: { name: ident }, 2: { name: ident, at: isoTime } },
    binary: [],
    forwardable: true,
    invalidates: ['auth'],
  },
  'cluster.peer': {
    versions: { 1: { id: nodeId, address: raftAddress } },
    binary: [],
    // Membership has its own forwarded route; the leader proposes this itself.
    forwardable: false,
    invalidates: ['peers'],
  },
  'state.restore': {
    versions: { 1: { image: bytes(1, MAX_IMAGE_BYTES) }, 2: { image: bytes(1, MAX_IMAGE_BYTES), at: isoTime } },
    // The whole image, again on every node at apply: a restore that cannot be applied completely is refused, never half-done.
    refine: (c) => (c.t === 'state.restore' ? imageProblem(c.image) : null),
    binary: ['image'],
    forwardable: true,
    invalidates: ['secrets', 'auth'],
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
  'kms.state': {
    versions: { 1: { values: kmsStateValues } },
    binary: [],
    forwardable: false,
    invalidates: [],
  },
};
