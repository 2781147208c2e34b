// The caller's own token: what a client checks a token with before keeping it
// (`coffer login`) and what `coffer token lookup` shows without a name. Any
// live token may ask; it learns its own metadata and its role's rules, never
// the digest.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, ruleSchema, tokenFields } from '../schemas.js';

const selfResponse = {
  type: 'object',
  properties: { ...tokenFields, rules: { type: 'array', items: ruleSchema } },
} as const;

export const authRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.get(
    '/v1/auth/self',
    {
      config: { action: 'auth.self' },
      // No query string is accepted, so nothing can ask for more than this.
      schema: { querystring: { type: 'object', additionalProperties: false, properties: {} }, response: { 200: selfResponse, ...errorResponses } },
    },
    async (req) => {
      // 401 for a missing, unknown, revoked or expired token, or one whose role is gone.
      const p = deps.authz.principal(req);
      req.ctx.target = p.name;
      const row = deps.reader.tokenByName(p.name);
      if (!row) throw new ApiError('unauthorized', 'unknown token');
      return {
        name: row.name,
        role: p.role,
        created_at: row.created_at,
        expires_at: row.expires_at,
        rules: p.rules.map((r) => ({ paths: [...r.paths], actions: [...r.actions] })),
      };
    },
  );
};
