// Admin routes that work on one node: this node's audit trail and cluster status.
import type { FastifyPluginAsync } from 'fastify';
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT } from '../../audit/reader.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { ADDRESS_PATTERN, NODE_ID_PATTERN } from '../../raft/listener.js';
import { clusterDeclare } from '../../store/commands.js';
import { MAX_DECLARED_MEMBERS, memberListProblem, type DeclaredMember } from '../../store/members.js';
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
    peer_ip: { type: ['string', 'null'] },
    action: { type: 'string' },
    target: { type: ['string', 'null'] },
    version: { type: ['integer', 'null'] },
    outcome: { type: 'string' },
    status: { type: 'integer' },
    chain: { type: ['string', 'null'] },
  },
} as const;

const auditVerifyReply = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    checked: { type: 'integer' },
    first_id: { type: ['integer', 'null'] },
    last_id: { type: ['integer', 'null'] },
    first_break: { type: ['object', 'null'], properties: { id: { type: 'integer' }, reason: { type: 'string' } } },
  },
} as const;

const memberSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'address'],
  properties: { id: { type: 'string', pattern: NODE_ID_PATTERN }, address: { type: 'string', pattern: ADDRESS_PATTERN } },
} as const;

const clusterStatus = {
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
    autopilot: {
      type: 'object',
      properties: {
        source: { type: 'string', enum: ['file', 'api', 'none'] },
        declared: { type: 'array', items: memberSchema },
        state: { type: 'string', enum: ['idle', 'converged', 'changing', 'blocked'] },
        last_decision: {
          type: ['object', 'null'],
          properties: { action: { type: 'string' }, id: { type: ['string', 'null'] }, reason: { type: 'string' }, at: { type: 'string' } },
        },
        servers: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              voter: { type: 'boolean' },
              healthy: { type: 'boolean' },
              stable_since: { type: ['string', 'null'] },
              match: { type: 'integer' },
            },
          },
        },
      },
    },
  },
} as const;

const membersReply = {
  type: 'object',
  properties: { source: { type: 'string', enum: ['file', 'api', 'none'] }, members: { type: 'array', items: memberSchema } },
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

  // The hash chain of this node's records, from the oldest remaining one; names the first break.
  app.get(
    '/v1/admin/audit/verify',
    { config: { action: 'admin.audit.verify' }, schema: { response: { 200: auditVerifyReply, ...errorResponses } } },
    async (req) => {
      deps.authz.require(req, 'admin');
      return deps.audit.verify();
    },
  );

  app.get(
    '/v1/admin/cluster',
    {
      config: { action: 'admin.cluster.read' },
      schema: {
        response: {
          200: clusterStatus,
          ...errorResponses,
        },
      },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      return deps.replicator.status();
    },
  );

  app.post<{ Body: { id: string; address: string } }>(
    '/v1/admin/cluster/peers',
    {
      config: { action: 'admin.cluster.add_peer' },
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['id', 'address'],
          properties: { id: { type: 'string', pattern: NODE_ID_PATTERN }, address: { type: 'string', pattern: ADDRESS_PATTERN } },
        },
        response: { 200: clusterStatus, ...errorResponses },
      },
    },
    async (req) => {
      req.ctx.target = req.body.id;
      deps.authz.require(req, 'admin');
      await deps.replicator.addPeer(req.body.id, req.body.address);
      return deps.replicator.status();
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/admin/cluster/peers/:id',
    {
      config: { action: 'admin.cluster.remove_peer' },
      schema: {
        params: { type: 'object', properties: { id: { type: 'string', pattern: NODE_ID_PATTERN } }, required: ['id'] },
        response: { 200: clusterStatus, ...errorResponses },
      },
    },
    async (req) => {
      req.ctx.target = req.params.id;
      deps.authz.require(req, 'admin');
      await deps.replicator.removePeer(req.params.id);
      return deps.replicator.status();
    },
  );

  // The declared members (for clusters without a members file): the leader's autopilot adds, promotes
  // and removes one member at a time until the Raft configuration equals this list.
  app.get('/v1/admin/cluster/members', { config: { action: 'admin.cluster.members.read' }, schema: { response: { 200: membersReply, ...errorResponses } } }, async (req) => {
    deps.authz.require(req, 'admin');
    const { source, declared } = deps.replicator.status().autopilot;
    return { source, members: declared };
  });

  app.put<{ Body: { members: DeclaredMember[] } }>(
    '/v1/admin/cluster/members',
    {
      config: { action: 'admin.cluster.members.declare' },
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['members'],
          properties: { members: { type: 'array', minItems: 1, maxItems: MAX_DECLARED_MEMBERS, items: memberSchema } },
        },
        response: { 200: membersReply, ...errorResponses },
      },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      const problem = memberListProblem(req.body.members);
      if (problem) throw new ApiError('bad_request', problem);
      if (deps.config.membersFile) throw new ApiError('conflict', 'this cluster declares its members in VAULT_MEMBERS_FILE; change the file (the VaultCluster) instead');
      return declare(req.body.members);
    },
  );

  app.delete('/v1/admin/cluster/members', { config: { action: 'admin.cluster.members.clear' }, schema: { response: { 200: membersReply, ...errorResponses } } }, async (req) => {
    deps.authz.require(req, 'admin');
    return declare([]);
  });

  async function declare(members: DeclaredMember[]) {
    const r = await deps.replicator.propose(clusterDeclare({ members: [...members].sort((a, b) => (a.id < b.id ? -1 : 1)) }));
    if (!r.ok) throw new ApiError(r.code === 'bad_request' ? 'bad_request' : 'conflict', r.message);
    const { source, declared } = deps.replicator.status().autopilot;
    return { source, members: declared };
  }

  app.post<{ Body: { to?: string } }>(
    '/v1/admin/cluster/transfer-leadership',
    {
      config: { action: 'admin.cluster.transfer_leadership' },
      preValidation: async (req) => {
        if (req.body === undefined || req.body === null) req.body = {};
      },
      schema: {
        body: { type: 'object', additionalProperties: false, properties: { to: { type: 'string', pattern: NODE_ID_PATTERN } } },
        response: { 200: { type: 'object', properties: { leader_id: { type: ['string', 'null'] } } }, ...errorResponses },
      },
    },
    async (req) => {
      req.ctx.target = req.body.to ?? null;
      deps.authz.require(req, 'admin');
      const voters = deps.replicator.status().peers.filter((p) => p.voter).map((p) => p.id);
      if (req.body.to !== undefined && !voters.includes(req.body.to)) throw new ApiError('bad_request', `${req.body.to} is not a voter`);
      return { leader_id: await deps.replicator.transferLeadership(req.body.to) };
    },
  );
};
