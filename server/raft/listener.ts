// The Raft listener (VAULT_RAFT_ADDR, plain HTTP; the WireGuard overlay adds
// encryption in Kubernetes). Routes: streams of message batches (an upgrade,
// stream/), single batches (binary, and JSON from older members), streamed
// snapshot images, proposals and membership
// requests forwarded by followers, and the re-wrap nudge.
//
// Every request, on every route (and on unknown paths), must be signed with
// the cluster key by a member (cluster-auth.ts): the hooks below refuse
// anything else with 401 before a handler runs, and sign every reply to a
// request they admitted.
import Fastify, { LogController, type FastifyContextConfig, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ConflictError, NotFoundError } from '../domain-errors.js';
import { admitForwardedCommand, UnknownCommandError } from '../store/commands.js';
import { AuthRefusal, COVERED_HEADERS, type ClusterAuth, type CoveredHeaders, type KeySlot, type RefusalReason, type RequestClaim } from './cluster-auth.js';
import { BATCH_CONTENT_TYPE, decodeBatch, decodeMessages } from './codec.js';
import type { RaftReplicator } from './driver/raft-replicator.js';
import { NoLeaderError } from './replicator.js';
import { InsufficientStorageError } from '../storage/write-guard.js';
import { StreamAcceptor } from './stream/accept.js';
import { RAFT_PATHS, sha256File } from './transport.js';

export const NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
/** host:port at the API and Raft edges, the port 1-65535: a member at host:0 or host:99999 could never be dialled. */
export const ADDRESS_PATTERN = '^[A-Za-z0-9.-]+:(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$';

const NODE_HEADER = { type: 'object', properties: { 'x-coffer-node': { type: 'string', minLength: 1, maxLength: 64 } }, required: ['x-coffer-node'] } as const;
/** Small JSON routes (membership, re-wrap) need no more than this. */
const SMALL_BODY = 64 * 1024;
/** One warning per refusal reason in this long at most; the metric counts every one. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export interface ListenerHooks {
  /** A follower asks this node (the leader) to run a re-wrap pass now. */
  forceRewrap(): void;
  /** Counts one refused request (coffer_raft_auth_refused_total). */
  onAuthRefused?(reason: RefusalReason): void;
  /** Given how to count the members streaming to this node now (coffer_raft_streams_inbound). */
  streamsInbound?(count: () => number): void;
}

/** Per-request auth state: the claim from onRequest, then the key slot that verified it. */
interface AuthState {
  claim: RequestClaim | null;
  slot: KeySlot | -1;
}
type AuthedRequest = FastifyRequest & { clusterAuth: AuthState | null };

/** Route config flag: the body is streamed to disk, not in memory; the MAC covers its digest header instead. */
interface RouteAuthConfig {
  streamedBody?: boolean;
}
const STREAMED_BODY = { streamedBody: true } as RouteAuthConfig as FastifyContextConfig;

export async function buildRaftListener(
  rep: RaftReplicator,
  capabilities: string[],
  logger: Logger,
  hooks: ListenerHooks,
  auth: ClusterAuth,
): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 256 * 1024 * 1024,
  }) as unknown as FastifyInstance;
  // Bodies stay raw until their MAC is checked: JSON is parsed only after that (preValidation).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.decorateRequest('clusterAuth', null);
  const report = refusalReporter(logger, hooks.onAuthRefused);
  installClusterAuth(app, auth, (id) => rep.knows(id), report);
  // Streams of batches (stream/): upgrades on the same listener, checked the same way.
  const streams = new StreamAcceptor({
    auth,
    capabilities: capabilities.join(','),
    isMember: (id) => rep.knows(id),
    onBatch: (msgs, from, caps) => rep.receive(msgs, from, caps),
    onRefused: (reason, d) => report(reason, d),
  });
  streams.attach(app.server);
  hooks.streamsInbound?.(() => streams.senders.length);
  // The server's close waits for every socket, and an upgraded one is no longer its to close.
  app.addHook('preClose', (done) => {
    streams.closeAll();
    done();
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, _req, res) => {
    const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500) logger.error({ err: { name: err.name, message: err.message } }, 'raft listener error');
    return res.code(status).send({ error: { code: status === 413 ? 'payload_too_large' : status < 500 ? 'bad_request' : 'internal', message: status < 500 ? err.message : 'internal error' } });
  });
  app.setNotFoundHandler((_req, res) => res.code(404).send({ error: { code: 'not_found', message: 'no such Raft route' } }));

  const nodeId = rep.status().node_id;
  const reply = () => ({ node_id: nodeId, capabilities });
  const parseCaps = (caps: string | undefined) => (caps === undefined ? null : caps.split(',').filter(Boolean));

  // The hot route: the body is checked by decodeBatch (every length, type and
  // integer; nothing left over) instead of a JSON schema, which cost more than
  // the rest of the request. Malformed batches are refused with 400.
  app.post<{ Body: Buffer; Headers: { 'x-coffer-node': string; 'x-coffer-capabilities'?: string } }>(
    RAFT_PATHS.batch,
    { schema: { headers: NODE_HEADER } },
    async (req, res) => {
      if (!Buffer.isBuffer(req.body)) return res.code(415).send({ error: { code: 'bad_request', message: `expected ${BATCH_CONTENT_TYPE}` } });
      rep.receive(decodeBatch(req.body), req.headers['x-coffer-node'], parseCaps(req.headers['x-coffer-capabilities']));
      return reply();
    },
  );

  app.post<{ Body: Readable; Headers: { 'x-coffer-node': string; 'x-coffer-message': string; 'x-coffer-sha256': string } }>(
    RAFT_PATHS.snapshot,
    {
      config: STREAMED_BODY,
      schema: {
        headers: {
          type: 'object',
          properties: {
            'x-coffer-node': { type: 'string', minLength: 1 },
            'x-coffer-message': { type: 'string', minLength: 1 },
            'x-coffer-sha256': { type: 'string', pattern: '^[0-9a-f]{64}$' },
          },
          required: ['x-coffer-node', 'x-coffer-message', 'x-coffer-sha256'],
        },
      },
    },
    async (req) => {
      if (Buffer.isBuffer(req.body) || typeof (req.body as Readable | undefined)?.pipe !== 'function') {
        throw Object.assign(new Error('expected an application/octet-stream image'), { statusCode: 415 });
      }
      const [m] = decodeMessages(JSON.parse(Buffer.from(req.headers['x-coffer-message'], 'base64url').toString('utf8')));
      if (!m || m.type !== 'snap' || !m.snapshot) throw Object.assign(new Error('not a snapshot message'), { statusCode: 400 });
      const file = rep.snapshotReceivePath(m.snapshot.meta.index);
      try {
        await pipeline(req.body, fs.createWriteStream(file, { mode: 0o600 }));
        if ((await sha256File(file)) !== req.headers['x-coffer-sha256']) {
          throw Object.assign(new Error('snapshot image fails its checksum'), { statusCode: 400 });
        }
        const fd = fs.openSync(file, 'r');
        fs.fsyncSync(fd);
        fs.closeSync(fd);
      } catch (err) {
        fs.rmSync(file, { force: true });
        throw err;
      }
      rep.receiveSnapshot(m, file);
      return reply();
    },
  );

  app.post<{ Body: { command: string } }>(
    RAFT_PATHS.propose,
    {
      schema: {
        headers: NODE_HEADER,
        body: { type: 'object', additionalProperties: false, required: ['command'], properties: { command: { type: 'string', maxLength: 100 * 1024 * 1024 } } },
      },
    },
    async (req, res) => {
      const data = new Uint8Array(Buffer.from(req.body.command, 'base64'));
      try {
        const cmd = admitForwardedCommand(data); // refuse what this leader would not have proposed itself before it reaches the log
        if (!rep.isLeader()) throw new NoLeaderError('not the leader');
        return await rep.proposeForwarded(cmd, data);
      } catch (err) {
        // 507: this leader refused it before proposing (short of space); the follower answers its client the same.
        const [status, code] = err instanceof UnknownCommandError ? [400, 'bad_request'] : err instanceof InsufficientStorageError ? [507, 'insufficient_storage'] : [503, 'no_leader'];
        return res.code(status).send({ error: { code, message: (err as Error).message } });
      }
    },
  );
  app.post<{ Body: { op: 'add' | 'remove'; id: string; address?: string } }>(
    RAFT_PATHS.membership,
    {
      bodyLimit: SMALL_BODY,
      schema: {
        headers: NODE_HEADER,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['op', 'id'],
          properties: {
            op: { type: 'string', enum: ['add', 'remove'] },
            id: { type: 'string', pattern: NODE_ID_PATTERN },
            address: { type: 'string', pattern: ADDRESS_PATTERN },
          },
        },
      },
    },
    async (req, res) => {
      try {
        if (!rep.isLeader()) throw new NoLeaderError('not the leader');
        if (req.body.op === 'add') await rep.addPeer(req.body.id, req.body.address ?? '');
        else await rep.removePeer(req.body.id);
        return { ok: true };
      } catch (err) {
        const [status, code] = err instanceof ConflictError ? [409, 'conflict'] : err instanceof NotFoundError ? [404, 'not_found'] : [503, 'no_leader'];
        return res.code(status).send({ error: { code, message: (err as Error).message } });
      }
    },
  );
  // Who this node is and what it holds: for the leader's autopilot, and for a peer starting on an empty log.
  app.post<{ Headers: { 'x-coffer-node': string } }>(
    RAFT_PATHS.probe,
    { bodyLimit: SMALL_BODY, schema: { headers: NODE_HEADER, body: { type: 'object', additionalProperties: false, properties: {} } } },
    async (req) => rep.probeReply(req.headers['x-coffer-node']),
  );
  app.post(RAFT_PATHS.rewrap, { bodyLimit: SMALL_BODY, schema: { headers: NODE_HEADER, body: { type: 'object', additionalProperties: false, properties: {} } } }, async (_req, res) => {
    if (!rep.isLeader()) return res.code(503).send({ error: { code: 'no_leader', message: 'not the leader' } });
    hooks.forceRewrap();
    return { ok: true };
  });
  return app;
}

/**
 * The authentication hooks, on the whole listener: headers first (before the
 * body is read), then the MAC over the raw body and the nonce, then a MAC on
 * the reply. Nothing reaches a handler, a schema or a JSON parser unless the
 * request was signed by a member.
 */
type RefusalDetail = { claimedNode: string | null; remote: string | null; path: string };

/** Counts every refusal and logs one per reason per interval (a flood must not flood the log). */
function refusalReporter(logger: Logger, onRefused: ((reason: RefusalReason) => void) | undefined): (reason: RefusalReason, d: RefusalDetail) => void {
  const lastLogged = new Map<RefusalReason, { at: number; suppressed: number }>();
  return (reason, d) => {
    onRefused?.(reason);
    const now = Date.now();
    const seen = lastLogged.get(reason);
    if (!seen || now - seen.at >= REFUSAL_LOG_INTERVAL_MS) {
      logger.warn(
        { reason, claimed_node: d.claimedNode, remote: d.remote, path: d.path, ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}) },
        'refused an unauthenticated Raft request',
      );
      lastLogged.set(reason, { at: now, suppressed: 0 });
    } else {
      seen.suppressed++;
    }
  };
}

function installClusterAuth(
  app: FastifyInstance,
  auth: ClusterAuth,
  isMember: (id: string) => boolean,
  report: (reason: RefusalReason, d: RefusalDetail) => void,
): void {
  const refuse = (req: FastifyRequest, res: FastifyReply, err: AuthRefusal) => {
    const claimed = req.headers['x-coffer-node'];
    report(err.reason, { claimedNode: typeof claimed === 'string' ? claimed.slice(0, 64) : null, remote: req.socket.remoteAddress ?? null, path: req.url.slice(0, 128) });
    return res.code(401).send({ error: { code: 'unauthorized', message: err.message } });
  };

  // Callback-style hooks: this is the replication hot path, and a refused request is answered here without calling done().
  app.addHook('onRequest', (req, res, done) => {
    try {
      (req as AuthedRequest).clusterAuth = { claim: auth.checkClaim(req.headers, isMember), slot: -1 };
    } catch (err) {
      if (err instanceof AuthRefusal) return void refuse(req, res, err);
      return done(err as Error);
    }
    done();
  });

  app.addHook('preValidation', (req, res, done) => {
    const state = (req as AuthedRequest).clusterAuth;
    try {
      if (!state?.claim) throw new AuthRefusal('missing', 'Raft requests must carry the cluster authentication headers');
      const streamed = (req.routeOptions.config as RouteAuthConfig | undefined)?.streamedBody === true;
      const covered = coveredHeaders(req);
      let body: Buffer | string = '';
      if (streamed) {
        // The body is checked against this digest as it lands on disk; the MAC covers the digest.
        if (covered['x-coffer-sha256'] === undefined) throw new AuthRefusal('missing', 'a streamed body needs its x-coffer-sha256 digest');
      } else if (Buffer.isBuffer(req.body)) {
        body = req.body;
      } else if (req.body !== undefined && req.body !== null) {
        throw new AuthRefusal('malformed', 'this route takes its body in memory; it cannot be streamed');
      }
      state.slot = auth.verifyRequest(state.claim, req.method, req.url, covered, body);
    } catch (err) {
      if (err instanceof AuthRefusal) return void refuse(req, res, err);
      return done(err as Error);
    }
    if (Buffer.isBuffer(req.body) && isJson(req.headers['content-type'])) {
      try {
        req.body = req.body.length === 0 ? undefined : JSON.parse(req.body.toString('utf8'));
      } catch {
        return void res.code(400).send({ error: { code: 'bad_request', message: 'body is not valid JSON' } });
      }
    }
    done();
  });

  app.addHook('onSend', (req, res, payload, done) => {
    const state = (req as AuthedRequest).clusterAuth;
    // Refused, or failed before the MAC was checked: left unsigned, and the requester trusts nothing in it.
    if (state?.claim && state.slot !== -1 && (typeof payload === 'string' || Buffer.isBuffer(payload) || payload === null || payload === undefined)) {
      const headers = auth.signResponse(state.slot, state.claim.nonce, res.statusCode, (payload as string | Buffer | null | undefined) ?? '');
      for (const k in headers) res.header(k, headers[k]);
    }
    done(null, payload);
  });
}

function coveredHeaders(req: FastifyRequest): CoveredHeaders {
  const out: CoveredHeaders = {};
  for (const h of COVERED_HEADERS) {
    const v = req.headers[h];
    if (typeof v === 'string') out[h] = v;
    else if (v !== undefined) throw new AuthRefusal('malformed', `${h} appears more than once`);
  }
  return out;
}

function isJson(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType);
}
