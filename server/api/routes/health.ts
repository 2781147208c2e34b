// Liveness, readiness and Prometheus metrics.
import type { FastifyPluginAsync } from 'fastify';
import { PROMETHEUS_CONTENT_TYPE } from '../../../common/prometheus.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses } from '../schemas.js';

const healthSchema = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    problem: { type: ['string', 'null'] },
    node_id: { type: 'string' },
    role: { type: 'string' },
    leader_id: { type: ['string', 'null'] },
    version: { type: 'string' },
    capabilities: { type: 'array', items: { type: 'string' } },
    // The configuration this node applied, ids only: the operator sizes the cluster from it without a token.
    voters: { type: 'array', items: { type: 'string' } },
    learners: { type: 'array', items: { type: 'string' } },
  },
} as const;

const readySchema = {
  type: 'object',
  properties: {
    ready: { type: 'boolean' },
    leader_id: { type: ['string', 'null'] },
    commit_index: { type: 'integer' },
    applied_index: { type: 'integer' },
    problem: { type: ['string', 'null'] },
  },
} as const;

export const healthRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  // Liveness: 503 once the node stopped applying (an entry it cannot decode, a storage fault), so the
  // kubelet restarts it; an election or a lagging apply is only 'degraded' (readiness handles those).
  app.get('/v1/health', { config: { action: 'health' }, schema: { response: { 200: healthSchema, 503: healthSchema } } }, async (_req, reply) => {
    const s = deps.replicator.status();
    if (s.stopped) void reply.code(503);
    return {
      status: s.stopped ? 'stopped' : s.problem ? 'degraded' : 'ok',
      problem: s.problem,
      node_id: s.node_id,
      role: s.role,
      leader_id: s.leader_id,
      version: deps.release,
      capabilities: deps.capabilities,
      voters: s.peers.filter((p) => p.voter).map((p) => p.id),
      learners: s.peers.filter((p) => !p.voter).map((p) => p.id),
    };
  });

  app.get('/v1/ready', { config: { action: 'ready' }, schema: { response: { 200: readySchema, 503: readySchema } } }, async (req, reply) => {
    const s = deps.replicator.status();
    // A full audit log (the export is behind and the cap is reached) refuses every audited request: not ready.
    const auditProblem = deps.audit.problem();
    // s.ready covers the leader and apply lag (a momentary lag behind a commit index just learned is not a problem).
    const ready = s.ready && auditProblem === null;
    void reply.code(ready ? 200 : 503);
    return { ready, leader_id: s.leader_id, commit_index: s.commit_index, applied_index: s.applied_index, problem: auditProblem ?? s.problem };
  });

  app.get('/metrics', { config: { action: 'metrics.read' }, schema: { response: errorResponses } }, async (req, reply) => {
    if (!deps.authz.isAllowlisted(req)) {
      if (req.headers.authorization === undefined) throw new ApiError('ip_not_allowed', 'client address is not on the read allowlist');
      deps.authz.require(req, 'admin');
    }
    const s = deps.replicator.status();
    deps.metrics.raftCommitIndex.set(s.commit_index);
    deps.metrics.raftAppliedIndex.set(s.applied_index);
    void reply.header('content-type', PROMETHEUS_CONTENT_TYPE);
    return deps.metrics.render();
  });
};
