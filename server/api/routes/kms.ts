// The re-wrap worker's admin surface: force a pass, read its status.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses } from '../schemas.js';

const passSchema = {
  type: ['object', 'null'],
  properties: {
    started: { type: 'string' },
    finished: { type: ['string', 'null'] },
    rotation: { type: ['string', 'null'] },
    rewrapped: { type: 'integer' },
    failed: { type: 'integer' },
    outcome: { type: 'string' },
  },
} as const;

export const kmsRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.post(
    '/v1/admin/kms/rewrap',
    {
      config: { action: 'admin.kms.rewrap' },
      schema: { response: { 202: { type: 'object', properties: { accepted: { type: 'boolean' }, leader_id: { type: ['string', 'null'] } } }, ...errorResponses } },
    },
    async (req, reply) => {
      deps.authz.require(req, 'admin');
      if (!deps.rewrap.status().enabled) throw new ApiError('conflict', 're-wrap worker is disabled (VAULT_KMS_REWRAP_ENABLED=false)');
      const leader = await deps.rewrap.forceOnLeader();
      void reply.code(202);
      return { accepted: true, leader_id: leader };
    },
  );

  app.get(
    '/v1/admin/kms/rewrap/status',
    {
      config: { action: 'admin.kms.rewrap_status' },
      schema: {
        response: {
          200: {
            type: 'object',
            properties: {
              enabled: { type: 'boolean' },
              watermark: { type: ['string', 'null'] },
              pending_versions: { type: 'integer' },
              last_pass: passSchema,
              blocked_by: { type: ['string', 'null'] },
              running: { type: 'boolean' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      return deps.rewrap.status();
    },
  );
};
