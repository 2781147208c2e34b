// Admin routes that work on one node: this node's audit trail and cluster status.
import type { FastifyPluginAsync } from 'fastify';
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT } from '../../audit/audit-log.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, nonNegativeIntText, positiveIntText } from '../schemas.js';

const auditRecord = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    ts: { type: 'string' },
    node_id: { type: 'string' },
    request_id: { type: 'string' },
    actor: { type: 'string' },
    client_ip: { type: 'string' },
    action: { type: 'string' },
    target: { type: ['string', 'null'] },
    version: { type: ['integer', 'null'] },
    outcome: { type: 'string' },
    status: { type: 'integer' },
  },
} as const;

export const adminRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.get<{ Querystring: { since?: string; limit?: string } }>(
    '/v1/admin/audit',
    {
      config: { action: 'admin.audit.read' },
      schema: {
        querystring: { type: 'object', additionalProperties: false, properties: { since: nonNegativeIntText, limit: positiveIntText } },
        response: {
          200: {
            type: 'object',
            properties: { records: { type: 'array', items: auditRecord }, next_since: { type: ['integer', 'null'] } },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      const limit = Number(req.query.limit ?? AUDIT_DEFAULT_LIMIT);
      if (limit > AUDIT_MAX_LIMIT) throw new ApiError('bad_request', `limit must be at most ${AUDIT_MAX_LIMIT}`);
      return deps.audit.query({ since: Number(req.query.since ?? 0), limit });
    },
  );

  app.get(
    '/v1/admin/cluster',
    {
      config: { action: 'admin.cluster.read' },
      schema: {
        response: {
          200: {
            type: 'object',
            properties: {
              node_id: { type: 'string' },
              leader_id: { type: ['string', 'null'] },
              term: { type: 'integer' },
              commit_index: { type: 'integer' },
              applied_index: { type: 'integer' },
              peers: {
                type: 'array',
                items: { type: 'object', properties: { id: { type: 'string' }, address: { type: 'string' }, voter: { type: 'boolean' } } },
              },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      return deps.replicator.status();
    },
  );
};
