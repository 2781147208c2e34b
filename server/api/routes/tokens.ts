// Token management. The raw token is returned once, at creation, and never stored.
import type { FastifyPluginAsync } from 'fastify';
import { generateToken, tokenSha256 } from '../../auth/tokens.js';
import { rulesAllow, rulesArePrivileged } from '../../rbac/rules.js';
import { tokenCreate, tokenRevoke } from '../../store/commands.js';
import { IDENT_PATTERN } from '../../store/names.js';
import { refusalError } from '../../store/results.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, identParams, tokenFields } from '../schemas.js';

const MAX_TTL_SECS = 10 * 365 * 24 * 3600;

const tokenMeta = {
  type: 'object',
  properties: { ...tokenFields, revoked_at: { type: ['string', 'null'] } },
} as const;

export const tokenRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.post<{ Body: { name: string; role: string; ttl_secs?: number } }>(
    '/v1/tokens',
    {
      config: { action: 'token.create' },
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'role'],
          properties: {
            name: { type: 'string', pattern: IDENT_PATTERN },
            role: { type: 'string', pattern: IDENT_PATTERN },
            ttl_secs: { type: 'integer', minimum: 1, maximum: MAX_TTL_SECS },
          },
        },
        response: {
          201: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              role: { type: 'string' },
              token: { type: 'string' },
              expires_at: { type: ['string', 'null'] },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { name, role, ttl_secs } = req.body;
      req.ctx.target = name;
      const caller = deps.authz.require(req, 'manage_tokens');
      const target = deps.reader.role(role);
      if (!target) throw new ApiError('bad_request', `no role named ${role}`);
      // manage_tokens alone must not mint a way to more power than data access.
      if (rulesArePrivileged(target.rules) && !rulesAllow(caller.rules, 'admin')) {
        throw new ApiError('forbidden', 'only admin may create tokens for roles with global actions');
      }
      const now = deps.now();
      const expires_at = ttl_secs === undefined ? null : new Date(now.getTime() + ttl_secs * 1000).toISOString();
      const token = generateToken();
      const result = await deps.replicator.propose(
        tokenCreate({ name, token_sha256: tokenSha256(token), role, created_at: now.toISOString(), expires_at }),
      );
      if (!result.ok) throw refusalError(result);
      void reply.code(201);
      return { name, role, token, expires_at };
    },
  );

  app.get(
    '/v1/tokens',
    {
      config: { action: 'token.list' },
      schema: {
        response: { 200: { type: 'object', properties: { tokens: { type: 'array', items: tokenMeta } } }, ...errorResponses },
      },
    },
    async (req) => {
      deps.authz.require(req, 'manage_tokens');
      // The response schema serializes only the metadata fields; the digest never leaves.
      return { tokens: deps.reader.listTokens() };
    },
  );

  app.get<{ Params: { name: string } }>(
    '/v1/tokens/:name',
    {
      config: { action: 'token.read' },
      schema: { params: identParams, response: { 200: tokenMeta, ...errorResponses } },
    },
    async (req) => {
      req.ctx.target = req.params.name;
      // The right first: without it, the same 403 whether or not the name exists (no oracle for token names).
      deps.authz.require(req, 'manage_tokens');
      let row = deps.reader.tokenByName(req.params.name);
      if (!row && !deps.replicator.isLeader()) {
        // A token minted through another node a moment ago may not be applied here yet: catch up with the
        // leader's commit once before saying 404 (only misses pay; without a leader, the local answer stands).
        await deps.replicator.readBarrier().catch(() => undefined);
        row = deps.reader.tokenByName(req.params.name);
      }
      if (!row) throw new ApiError('not_found', 'no such token');
      // Metadata only: the digest is not copied, and the response schema would drop it anyway.
      return { name: row.name, role: row.role, created_at: row.created_at, expires_at: row.expires_at, revoked_at: row.revoked_at };
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/v1/tokens/:name',
    { config: { action: 'token.revoke' }, schema: { params: identParams, response: errorResponses } },
    async (req, reply) => {
      req.ctx.target = req.params.name;
      const caller = deps.authz.require(req, 'manage_tokens');
      // Revoke only what you could mint (the rule of POST /v1/tokens): otherwise manage_tokens alone
      // could revoke every admin token and lock the admins out. A token whose role is gone is powerless; anyone may tidy it.
      const target = deps.reader.tokenByName(req.params.name);
      const role = target && deps.reader.role(target.role);
      if (role && rulesArePrivileged(role.rules) && !rulesAllow(caller.rules, 'admin')) {
        throw new ApiError('forbidden', 'only admin may revoke tokens of roles with global actions');
      }
      const result = await deps.replicator.propose(tokenRevoke({ name: req.params.name, revoked_at: deps.now().toISOString() }));
      if (!result.ok) throw refusalError(result);
      void reply.code(204);
    },
  );
};
