// Builds the API listener: hooks that set up each request's context, write
// its audit record before the response leaves, and count it; then one plugin
// per route family.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { ServerOptions as HttpsOptions } from 'node:https';
import { clientIpOf, auditIp } from './context.js';
import type { ApiDeps } from './deps.js';
import { errorBody, outcomeFor } from './errors.js';
import { installErrorHandling } from './error-handler.js';
import { adminRoutes } from './routes/admin.js';
import { healthRoutes } from './routes/health.js';
import { metadataRoutes } from './routes/metadata.js';
import { roleRoutes } from './routes/roles.js';
import { secretRoutes } from './routes/secrets.js';
import { tokenRoutes } from './routes/tokens.js';

const MAX_TARGET = 300;

function targetOf(params: unknown, fallback: string | null): string | null {
  const p = params as Record<string, string | undefined> | undefined;
  const t = p?.['*'] ?? p?.name ?? fallback;
  return t === null || t === undefined ? null : t.slice(0, MAX_TARGET);
}

export async function buildApi(deps: ApiDeps, https?: HttpsOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    // Per-request lines would carry every secret name at info level and cost throughput; failures are logged.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // JSON escaping can grow a value up to 6x; the exact value limit is enforced on the decoded string.
    bodyLimit: deps.config.maxValueBytes * 6 + 4096,
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    ...(https ? { https } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  app.decorateRequest('ctx', null as never);

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    const routeAction = req.routeOptions.config.action;
    req.ctx = {
      ts: deps.now().toISOString(),
      startedAt: process.hrtime.bigint(),
      clientIp: clientIpOf(req, deps.config.trustProxy),
      principal: null,
      action: routeAction ?? 'unknown',
      // Handlers refine this; set here so even a request refused by validation names its target.
      target: targetOf(req.params, routeAction ? null : req.url.split('?')[0]!),
      version: null,
    };
  });

  // The record is durable before the response is sent; if it cannot be written, the client gets 503 instead.
  app.addHook('onSend', async (req, reply, payload) => {
    const status = reply.statusCode;
    try {
      await deps.audit.record({
        ts: req.ctx.ts,
        node_id: deps.config.nodeId,
        request_id: req.id,
        actor: req.ctx.principal?.name ?? 'anonymous',
        client_ip: auditIp(req),
        action: req.ctx.action,
        target: req.ctx.target,
        version: req.ctx.version,
        outcome: outcomeFor(status),
        status,
      });
      return payload;
    } catch {
      void reply.code(503).header('content-type', 'application/json; charset=utf-8');
      return JSON.stringify(errorBody('audit_unavailable', 'audit log unavailable; request not completed'));
    }
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const outcome = outcomeFor(reply.statusCode);
    const seconds = Number(process.hrtime.bigint() - req.ctx.startedAt) / 1e9;
    deps.metrics.httpRequests.inc({ route, method: req.method, status: String(reply.statusCode), outcome });
    deps.metrics.httpRequestDuration.observe({ route, method: req.method, outcome }, seconds);
  });

  installErrorHandling(app);
  await app.register(healthRoutes, { deps });
  await app.register(secretRoutes, { deps });
  await app.register(metadataRoutes, { deps });
  await app.register(tokenRoutes, { deps });
  await app.register(roleRoutes, { deps });
  await app.register(adminRoutes, { deps });
  return app;
}
