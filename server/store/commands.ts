// Replicated commands: the only way state.db changes. Each carries a type and
// a version; every field the apply step needs (timestamps included) is decided
// by the proposer, so applying the same log yields the same state on every node.
//
// Wire form: UTF-8 JSON with binary fields as base64. A node that meets a type
// or version it does not know must stop applying (UnknownCommandError), never skip.
import type { RoleRule } from '../rbac/rules.js';

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

export interface RoleDeleteV1 {
  t: 'role.delete';
  v: 1;
  name: string;
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
  | SecretDeleteV1
  | TokenCreateV1
  | TokenBootstrapV1
  | TokenRevokeV1
  | RolePutV1
  | RoleDeleteV1
  | ClusterPeerV1
  | StateRestoreV1
  | SecretRewrapV1
  | KmsStateV1;

export type CommandType = Command['t'];

/** Binary fields per type, for the base64 wire form. */
const BINARY_FIELDS: Record<string, readonly string[]> = {
  'secret.put': ['ciphertext', 'nonce', 'wrapped_dek'],
  'token.create': ['token_sha256'],
  'token.bootstrap': ['token_sha256'],
  'state.restore': ['image'],
  'secret.rewrap': ['expected_wrapped_dek', 'wrapped_dek'],
};

/** Highest version this build decodes, per type. Advertised as capabilities (`type@version`). */
const BUILT_IN_COMMANDS: Record<CommandType, number> = {
  'secret.put': 1,
  'secret.delete': 1,
  'token.create': 1,
  'token.bootstrap': 1,
  'token.revoke': 1,
  'role.put': 1,
  'role.delete': 1,
  'cluster.peer': 1,
  'state.restore': 1,
  'secret.rewrap': 1,
  'kms.state': 1,
};

/**
 * COFFER_UNSUPPORTED_COMMANDS (comma list of types) makes this process behave
 * like an older release that lacks them: it neither advertises nor decodes
 * them. Tests use it to exercise rollout gating; never set it in production.
 */
function withoutUnsupported(all: Record<CommandType, number>): Record<CommandType, number> {
  const off = new Set((process.env.COFFER_UNSUPPORTED_COMMANDS ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  return Object.fromEntries(Object.entries(all).filter(([t]) => !off.has(t))) as Record<CommandType, number>;
}

export const SUPPORTED_COMMANDS = withoutUnsupported(BUILT_IN_COMMANDS);

export function capabilities(): string[] {
  return Object.entries(SUPPORTED_COMMANDS).map(([t, v]) => `${t}@${v}`);
}

export class UnknownCommandError extends Error {
  override readonly name = 'UnknownCommandError';
}

export function encodeCommand(cmd: Command): Uint8Array {
  const bin = BINARY_FIELDS[cmd.t] ?? [];
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(cmd)) {
    out[k] = bin.includes(k) ? Buffer.from(val as Uint8Array).toString('base64') : val;
  }
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/**
 * What the leader accepts from a follower on /raft/v1/propose: a command it
 * could have built itself. Throws UnknownCommandError for anything else.
 */
export function admitForwardedCommand(data: Uint8Array): Command {
  return decodeCommand(data);
}

export function decodeCommand(data: Uint8Array): Command {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new UnknownCommandError('command is not valid JSON');
  }
  const t = raw.t;
  const v = raw.v;
  if (typeof t !== 'string' || !(t in SUPPORTED_COMMANDS)) {
    throw new UnknownCommandError(`unknown command type ${JSON.stringify(t)}`);
  }
  if (typeof v !== 'number' || v < 1 || v > SUPPORTED_COMMANDS[t as CommandType]) {
    throw new UnknownCommandError(`unsupported version ${JSON.stringify(v)} of command ${t}`);
  }
  for (const k of BINARY_FIELDS[t] ?? []) {
    if (typeof raw[k] !== 'string') throw new UnknownCommandError(`command ${t} lacks ${k}`);
    raw[k] = new Uint8Array(Buffer.from(raw[k] as string, 'base64'));
  }
  return raw as unknown as Command;
}
