// The Raft listener (VAULT_RAFT_ADDR, plain HTTP by design; the WireGuard
// overlay protects it in Kubernetes). Routes: message batches (binary, and
// JSON from older members), streamed snapshot images, proposals and membership
// requests forwarded by followers, and the re-wrap nudge.
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { admitForwardedCommand, UnknownCommandError } from '../store/commands.js';
import { BATCH_CONTENT_TYPE, decodeBatch, decodeMessages } from './codec.js';
import type { RaftReplicator } from './raft-replicator.js';
import { ConflictError, NoLeaderError, NotFoundError } from './replicator.js';
import { RAFT_PATHS, sha256File } from './transport.js';

export const NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
export const ADDRESS_PATTERN = '^[A-Za-z0-9.-]+:[0-9]{1,5}$';

const NODE_HEADER = { type: 'object', properties: { 'x-coffer-node': { type: 'string', minLength: 1, maxLength: 64 } }, required: ['x-coffer-node'] } as const;

export interface ListenerHooks {
  /** A follower asks this node (the leader) to run a re-wrap pass now. */
  forceRewrap(): void;
}

export async function buildRaftListener(rep: RaftReplicator, capabilities: string[], logger: Logger, hooks: ListenerHooks): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 256 * 1024 * 1024,
  }) as unknown as FastifyInstance;
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.addContentTypeParser(BATCH_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: 256 * 1024 * 1024 }, (_req, body, done) => done(null, body));
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
        admitForwardedCommand(data); // refuse what this leader would not have proposed itself before it reaches the log
        if (!rep.isLeader()) throw new NoLeaderError('not the leader');
        return await rep.proposeEncoded(data);
      } catch (err) {
        const code = err instanceof UnknownCommandError ? 400 : 503;
        return res.code(code).send({ error: { code: code === 400 ? 'bad_request' : 'no_leader', message: (err as Error).message } });
      }
    },
  );
  app.post<{ Body: { op: 'add' | 'remove'; id: string; address?: string } }>(
    RAFT_PATHS.membership,
    {
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
  app.post(RAFT_PATHS.rewrap, { schema: { headers: NODE_HEADER, body: { type: 'object', additionalProperties: false, properties: {} } } }, async (_req, res) => {
    if (!rep.isLeader()) return res.code(503).send({ error: { code: 'no_leader', message: 'not the leader' } });
    hooks.forceRewrap();
    return { ok: true };
  });
  return app;
}
