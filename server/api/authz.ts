// Authentication and authorization for management routes, and the allowlist
// check for value reads. Each records what it learns in the request context
// so the audit record names the actor even when the answer is no.
import type { FastifyRequest } from 'fastify';
import { authenticate, type Principal } from '../auth/tokens.js';
import type { Allowlist } from '../../common/ipv4.js';
import { rulesAllow, type Action } from '../rbac/rules.js';
import type { WriteMode } from '../store/commands.js';
import type { StateReader } from '../store/queries.js';
import { ApiError } from './errors.js';

const REASONS = {
  missing: 'missing bearer token',
  malformed: 'malformed Authorization header',
  unknown: 'unknown token',
  expired: 'token expired',
  revoked: 'token revoked',
  role_gone: 'token revoked: its role was deleted',
} as const;

/** Allowlist answers kept per address, for one list (a new list gets a new memo); the size needs a bound. */
const ALLOWED_MEMO_MAX = 4096;

export class Authorizer {
  /** The read allowlist and its memo, replaced together as one object so no answer of an old list outlives it. */
  private allow: { list: Allowlist; memo: Map<string, boolean> };

  constructor(
    private readonly reader: StateReader,
    allowlist: Allowlist,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.allow = { list: allowlist, memo: new Map() };
  }

  /** VAULT_READ_ALLOWLIST_FILE changed: every later check uses the new list, none an old memo. */
  setReadAllowlist(list: Allowlist): void {
    this.allow = { list, memo: new Map() };
  }

  /** 401 unless the request carries a live token. */
  principal(req: FastifyRequest): Principal {
    if (req.ctx.principal) return req.ctx.principal;
    const outcome = authenticate(this.reader, req.headers.authorization, this.now());
    if (!outcome.ok) throw new ApiError('unauthorized', REASONS[outcome.reason]);
    req.ctx.principal = outcome.principal;
    return outcome.principal;
  }

  /**
   * False only when the request's token is unknown to this node (it may yet arrive through Raft);
   * a live token is kept as the request's principal.
   */
  settled(req: FastifyRequest): boolean {
    if (req.ctx.principal) return true;
    const outcome = authenticate(this.reader, req.headers.authorization, this.now());
    if (outcome.ok) req.ctx.principal = outcome.principal;
    return outcome.ok || outcome.reason !== 'unknown';
  }

  /** 401 without a live token, 403 when its role lacks `action` (on `name` for path actions). */
  require(req: FastifyRequest, action: Action, name?: string): Principal {
    const p = this.principal(req);
    if (!rulesAllow(p.rules, action, name)) {
      throw new ApiError('forbidden', `role ${p.role} does not allow ${action}${name === undefined ? '' : ' on this path'}`);
    }
    return p;
  }

  /**
   * What a value write may do to `name`, from the token's rights alone (never
   * from whether the name exists, which would be a race and an oracle):
   * `any` with both create and update, else the one it has. Neither: 403,
   * the same answer whether or not the name exists.
   */
  writeMode(req: FastifyRequest, name: string): { principal: Principal; mode: WriteMode } {
    const p = this.principal(req);
    const create = rulesAllow(p.rules, 'create', name);
    const update = rulesAllow(p.rules, 'update', name);
    if (!create && !update) throw new ApiError('forbidden', `role ${p.role} does not allow create or update on this path`);
    return { principal: p, mode: create && update ? 'any' : create ? 'create' : 'update' };
  }

  /** Names the caller in the audit record if a valid token came along, without requiring one. */
  identifyIfPresent(req: FastifyRequest): void {
    if (req.ctx.principal || req.headers.authorization === undefined) return;
    const outcome = authenticate(this.reader, req.headers.authorization, this.now());
    if (outcome.ok) req.ctx.principal = outcome.principal;
  }

  /** Value reads and metrics: by source address only, fail-closed. */
  requireAllowlisted(req: FastifyRequest): void {
    if (!this.isAllowlisted(req)) {
      throw new ApiError('ip_not_allowed', 'client address is not on the read allowlist');
    }
  }

  isAllowlisted(req: FastifyRequest): boolean {
    const ip = req.ctx.clientIp;
    if (ip === null) return false;
    const { list, memo } = this.allow;
    let allowed = memo.get(ip);
    if (allowed === undefined) {
      allowed = list.allows(ip);
      if (memo.size >= ALLOWED_MEMO_MAX) memo.clear();
      memo.set(ip, allowed);
    }
    return allowed;
  }
}
