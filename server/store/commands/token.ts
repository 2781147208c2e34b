// token.*: a token minted, the bootstrap token created, a token revoked.
import type { Definitions, Fields } from './definition.js';
import { bytes, ident, isoTime, nullable, SHA256_BYTES } from './fields.js';

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

export type TokenCommand = TokenCreateV1 | TokenBootstrapV1 | TokenRevokeV1;

export const tokenCreate = (fields: Fields<TokenCreateV1>): TokenCreateV1 => ({ t: 'token.create', v: 1, ...fields });

export const tokenBootstrap = (fields: Fields<TokenBootstrapV1>): TokenBootstrapV1 => ({ t: 'token.bootstrap', v: 1, ...fields });

export const tokenRevoke = (fields: Fields<TokenRevokeV1>): TokenRevokeV1 => ({ t: 'token.revoke', v: 1, ...fields });

const sha256 = bytes(SHA256_BYTES, SHA256_BYTES);

export const TOKEN_COMMANDS: Definitions<TokenCommand> = {
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
};
