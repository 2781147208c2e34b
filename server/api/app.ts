// Builds the API listener: hooks that set up each request's context, hold it
// to the edge rules, write its audit record before the response leaves, and
// count it; the same answer and record for what the HTTP parser refuses; then
// one plugin per route family.
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type preHandlerHookHandler } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { ServerOptions as HttpsOptions } from 'node:https';
import { performance } from 'node:perf_hooks';
import { applyForwardedFor, peerOf, type RequestContext } from './context.js';
import { createEdgeCheck } from './edge.js';
import { installJsonParser } from './edge-json.js';
import { rawRefusals } from './edge-raw.js';
import type { AuditDone } from '../audit/record.js';
import type { ApiDeps } from './deps.js';
import { ApiError, errorBody, outcomeFor } from './errors.js';
import { installErrorHandling } from './error-handler.js';
import { collectRoutes, openapiRoutes } from './openapi.js';
import { lazyChildLogger } from './request-logger.js';
import { adminRoutes } from './routes/admin.js';
import { authRoutes } from './routes/auth.js';
import { healthRoutes } from './routes/health.js';
import { kmsRoutes } from './routes/kms.js';
import { metadataRoutes } from './routes/metadata.js';
import { roleRoutes } from './routes/roles.js';
import { secretRoutes } from './routes/secrets.js';
import { snapshotRoutes } from './routes/snapshot.js';
import { tokenRoutes } from './routes/tokens.js';
import { watchRoutes } from './routes/watch.js';

const MAX_TARGET = 300;

function targetOf(params: unknown, fallback: string | null): string | null {
  const p = params as Record<string, string | undefined> | undefined;
  const t = p?.['*'] ?? p?.name ?? fallback;
  return t === null || t === undefined ? null : t.slice(0, MAX_TARGET);
}

/** Where the router itself refuses a request (undecodable URL, overlong parameter) — no route, no hooks. */
const FRAMEWORK_ERRORS: Record<string, string> = {
  FST_ERR_BAD_URL: 'malformed URL',
  FST_ERR_MAX_PARAM_LENGTH: 'URL parameter too long',
};

/**
 * Routes a reads-only listener serves when management has a listener of its own (VAULT_MGMT_ADDR).
 * The blocking query is here too: a reader (the sync controller) must learn of a new version where it
 * reads values; it answers versions only, to a token with read_metadata.
 */
const READ_SURFACE = new Set(['secret.read', 'secret.watch', 'health', 'ready', 'metrics.read', 'openapi']);

/** Not audited (DESIGN §4): they carry no secret data and must answer while audit.db cannot be written. */
const UNAUDITED = new Set(['health', 'ready', 'metrics.read']);

/** Routes that never need a token caught up first: the unaudited and public ones, and value reads (which check their own). */
const NO_TOKEN_CATCH_UP = new Set([...UNAUDITED, 'openapi', 'secret.read']);

export type ApiSurface = 'all' | 'reads';

export async function buildApi(deps: ApiDeps, https?: HttpsOptions, surface: ApiSurface = 'all'): Promise<FastifyInstance> {
  // Requests within one millisecond share their ISO timestamp string.
  let lastMs = Number.NaN;
  let lastIso = '';
  const isoNow = (): string => {
    const d = deps.now();
    const ms = d.getTime();
    if (ms !== lastMs) {
      lastMs = ms;
      lastIso = d.toISOString();
    }
    return lastIso;
  };

  // X-Forwarded-For is read only with VAULT_TRUST_PROXY, and then only from VAULT_TRUSTED_PROXIES.
  const trustedProxies = deps.config.trustProxy ? deps.config.trustedProxies : null;
  const edgeCheck = createEdgeCheck({ apiHostnames: deps.config.apiHostnames });

  const newContext = (req: FastifyRequest, routeAction: string | undefined, route: string): RequestContext => {
    const peer = peerOf(req.socket, trustedProxies);
    const ctx: RequestContext = {
      route,
      ts: isoNow(),
      startedAt: performance.now(),
      clientIp: peer.ip,
      clientAddr: peer.addr,
      peerAddr: peer.addr,
      principal: null,
      action: routeAction ?? 'unknown',
      // Handlers refine this; set here so even a request refused by validation names its target.
      // Unmatched requests name their path (the 404 route's own `*` param would drop the leading slash).
      target: routeAction ? targetOf(req.params, null) : req.url.split('?')[0]!.slice(0, MAX_TARGET),
      version: null,
    };
    if (peer.trusted) applyForwardedFor(req, ctx, trustedProxies!);
    return ctx;
  };

  /** Hands the request's record to the audit log; `done(null)` once it is durable, `done(err)` when it could not be written. */
  const writeAudit = (req: FastifyRequest, status: number, done: AuditDone, keep = false): void => {
    // A request refused before its handler authenticated (bad name, malformed body, unknown
    // route, body too large) still names a valid token's holder rather than `anonymous`.
    if (!req.ctx.principal) {
      try {
        deps.authz.identifyIfPresent(req);
      } catch {
        // Identification is best effort; the record is written either way.
      }
    }
    try {
      deps.audit.submit(
        {
          ts: req.ctx.ts,
          node_id: deps.config.nodeId,
          request_id: req.id,
          actor: req.ctx.principal?.name ?? 'anonymous',
          client_ip: req.ctx.clientAddr,
          peer_ip: req.ctx.peerAddr,
          action: req.ctx.action,
          target: req.ctx.target,
          version: req.ctx.version,
          outcome: outcomeFor(status),
          status,
        },
        done,
        keep,
      );
    } catch (err) {
      process.nextTick(done, err instanceof Error ? err : new Error(String(err)));
    }
  };

  // Request counter and latency histogram, resolved once per (route, method, status) rather than per request,
  // and found through nested maps: no key string is built (and hashed) per request.
  type Series = { count: () => void; observe: (seconds: number) => void };
  const series = new Map<string, Map<string, Map<number, Series>>>();
  const seriesFor = (route: string, method: string, status: number): Series => {
    let byMethod = series.get(route);
    if (byMethod === undefined) series.set(route, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()));
    let s = byStatus.get(status);
    if (s === undefined) {
      const outcome = outcomeFor(status);
      const counter = deps.metrics.httpRequests.bind({ route, method, status: String(status), outcome });
      const histogram = deps.metrics.httpRequestDuration.bind({ route, method, outcome });
      s = { count: () => counter.inc(), observe: (seconds) => histogram.observe(seconds) };
      byStatus.set(status, s);
    }
    return s;
  };
  const countRequest = (req: FastifyRequest, status: number): void => {
    const s = seriesFor(req.ctx.route, req.method, status);
    s.count();
    s.observe((performance.now() - req.ctx.startedAt) / 1000);
  };

  const auditUnavailable = () => JSON.stringify(errorBody('audit_unavailable', 'audit log unavailable; request not completed'));

  // Router-level refusals skip every hook, so they are answered and audited here, in the usual error shape.
  const frameworkErrors = (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    void reply.header('x-request-id', req.id).header('content-type', 'application/json; charset=utf-8');
    req.ctx = newContext(req, undefined, 'unmatched');
    const message = FRAMEWORK_ERRORS[err.code];
    const onName = /^\/v1\/(secrets|metadata)\//.test(req.ctx.target ?? '');
    const apiErr = message ? new ApiError(onName ? 'invalid_name' : 'bad_request', message) : new ApiError('internal', 'internal error');
    writeAudit(req, apiErr.status, (err) => {
      void reply.code(err === null ? apiErr.status : 503).send(err === null ? JSON.stringify(errorBody(apiErr.code, apiErr.message)) : auditUnavailable());
    });
  };

  // What Node's HTTP parser refuses never reaches a hook: answered and audited on the socket.
  const raw = rawRefusals({
    audit: deps.audit,
    nodeId: deps.config.nodeId,
    now: isoNow,
    trustedProxies,
    count: (route, method, status) => seriesFor(route, method, status).count(),
  });

  const app = Fastify({
    loggerInstance: deps.logger,
    // Per-request lines would carry every secret name at info level and cost throughput; failures are logged.
    logController: new LogController({ disableRequestLogging: true }),
    // A request's child logger is built only if something logs through it.
    childLoggerFactory: lazyChildLogger,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // JSON escaping can grow a value up to 6x; the exact value limit is enforced on the decoded string.
    bodyLimit: deps.config.maxValueBytes * 6 + 4096,
    // Above every name limit, so overlong token/role names reach their schema (400) instead of the router.
    routerOptions: { maxParamLength: 1024 },
    frameworkErrors,
    // While the listener drains on shutdown, a request still arriving on a busy keep-alive connection is
    // served (with Connection: close) and audited like any other; Fastify's own 503 would have neither
    // the contract's body nor a record.
    return503OnClosing: false,
    clientErrorHandler: raw.clientError,
    // A missing Host is refused by the edge check (HTTP/1.1 only), with the usual body and record.
    http: { requireHostHeader: false },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false } },
    ...(https ? { https: { ...https, requireHostHeader: false } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  app.decorateRequest('ctx', null as never);
  // Bodies are JSON only: drop Fastify's built-in text/plain parser so every other type is 415.
  app.removeContentTypeParser('text/plain');
  installJsonParser(app);
  // CONNECT is handed to this event (or the socket dropped without a word); answered like an unknown method.
  app.server.on('connect', raw.connect);
  // An Expect other than 100-continue would get a bare 417 from Node, unaudited; serve the request as usual
  // (RFC 9110 lets a server ignore an expectation it does not understand).
  app.server.on('checkExpectation', (req, res) => app.server.emit('request', req, res));

  // Synchronous hooks take the callback form: an async hook costs a promise per request on the hot read path.
  // The edge rules (browsers, Host) run in this same hook: one hook call per request, not two.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    const route = req.routeOptions; // a getter that builds a new object: read it once
    req.ctx = newContext(req, route.config.action, route.url ?? 'unmatched');
    done(edgeCheck(req));
  });

  // The record is durable before the response is sent; if it cannot be written, the client gets 503 instead.
  // The request is counted here, with its final status, as it is handed to the socket (no onResponse hook:
  // that is one more hook run per request).
  app.addHook('onSend', (req, reply, payload, done) => {
    if (UNAUDITED.has(req.ctx.action)) {
      countRequest(req, reply.statusCode);
      done(null, payload);
      return;
    }
    // A change that succeeded was committed: its record is kept and retried until durable (audit-log.ts),
    // never turned into an error answer.
    const keep = reply.statusCode < 400 && req.method !== 'GET' && req.method !== 'HEAD';
    writeAudit(req, reply.statusCode, (err) => {
      if (err !== null) {
        void reply.code(503).header('content-type', 'application/json; charset=utf-8');
        payload = auditUnavailable();
      }
      countRequest(req, reply.statusCode);
      done(null, payload);
    }, keep);
  });

  if (surface === 'reads') {
    // Same routes, same audit: management answers 404 here and only on the management listener.
    app.addHook('onRequest', (req, _reply, done) => {
      done(READ_SURFACE.has(req.ctx.action) ? undefined : new ApiError('not_found', 'served on the management listener only'));
    });
  }

  // Refuse a change up front when its audit record could not be written anyway. Attached to the
  // routes that change something only, so reads do not pay a hook call for it.
  const probeAudit: preHandlerHookHandler = (_req, _reply, done) => {
    deps.audit.probe().then(() => done(), (err: Error) => done(err));
  };
  // A token minted through another node a moment ago may not have been applied here yet (a client
  // Service spreads one client's requests over the pods). Before a follower answers 401 "unknown token"
  // it catches up with the leader's commit once (a ReadIndex round, shared by the requests that arrive
  // together) and looks again. Known tokens pay nothing: the principal found here is kept for the route.
  const catchUpOnUnknownToken: preHandlerHookHandler = (req, _reply, done) => {
    if (req.headers.authorization === undefined || deps.authz.settled(req) || deps.replicator.isLeader()) {
      done();
      return;
    }
    deps.replicator.readBarrier().then(() => done(), () => done());
  };
  app.addHook('onRoute', (route) => {
    const action = (route.config as { action?: string } | undefined)?.action ?? '';
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const hooks: preHandlerHookHandler[] = [];
    if (!NO_TOKEN_CATCH_UP.has(action)) hooks.push(catchUpOnUnknownToken);
    if (!methods.every((m) => m === 'GET' || m === 'HEAD')) hooks.push(probeAudit);
    if (hooks.length === 0) return;
    const own = route.preHandler;
    route.preHandler = own === undefined ? hooks : [...hooks, ...(Array.isArray(own) ? own : [own])];
  });

  // The OpenAPI document lists what this listener serves (on a reads-only listener, its read surface).
  const routes = collectRoutes(app, surface === 'reads' ? (action) => READ_SURFACE.has(action) : () => true);
  installErrorHandling(app);
  await app.register(healthRoutes, { deps });
  await app.register(secretRoutes, { deps });
  await app.register(metadataRoutes, { deps });
  await app.register(watchRoutes, { deps });
  await app.register(tokenRoutes, { deps });
  await app.register(authRoutes, { deps });
  await app.register(roleRoutes, { deps });
  await app.register(adminRoutes, { deps });
  await app.register(snapshotRoutes, { deps });
  await app.register(kmsRoutes, { deps });
  await app.register(openapiRoutes, { routes, version: deps.release });
  return app;
}
