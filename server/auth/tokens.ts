// Bearer tokens: 256 random bits, shown once, stored only as sha256.
import crypto, { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RoleRule } from '../rbac/rules.js';
import type { StateReader } from '../store/queries.js';

const PREFIX = 'cft_';

export function generateToken(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

// Node's one-shot hash (20.12 and later) skips the Hash object: ~1 µs less per authenticated request.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'buffer') => Buffer }).hash;

export function tokenSha256(token: string): Uint8Array {
  return new Uint8Array(oneShot ? oneShot('sha256', token, 'buffer') : createHash('sha256').update(token, 'utf8').digest());
}

export interface Principal {
  /** Token name; recorded as the audit actor. */
  name: string;
  role: string;
  rules: readonly RoleRule[];
}

export type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown' | 'expired' | 'revoked' | 'role_gone' };

/** Extracts the token from an `Authorization: Bearer …` header. */
export function bearerToken(header: string | undefined): string | null | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header.trim());
  return m ? (m[1] as string) : null;
}

export function authenticate(reader: StateReader, header: string | undefined, now: Date): AuthOutcome {
  const token = bearerToken(header);
  if (token === undefined) return { ok: false, reason: 'missing' };
  if (token === null) return { ok: false, reason: 'malformed' };
  const digest = tokenSha256(token);
  const row = reader.tokenByHash(digest);
  // The lookup is by digest; compare again in constant time so equality is never decided byte by byte.
  if (!row || !timingSafeEqual(Buffer.from(row.token_sha256), Buffer.from(digest))) return { ok: false, reason: 'unknown' };
  if (row.revoked_at !== null) return { ok: false, reason: 'revoked' };
  if (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()) return { ok: false, reason: 'expired' };
  // A token outlives no role: once its role is deleted it is refused, also by releases whose role.delete did not revoke it.
  const role = reader.role(row.role);
  if (!role) return { ok: false, reason: 'role_gone' };
  return { ok: true, principal: { name: row.name, role: row.role, rules: role.rules } };
}
