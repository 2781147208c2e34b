// Save and restore the replicated state. The image holds ciphertext, wrapped
// DEKs and token digests only; restoring goes through the log like any write,
// and never undoes a revocation.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { stateRestore } from '../../store/commands.js';
import { MAX_IMAGE_BYTES } from '../../store/commands/fields.js';
import { imageProblem } from '../../store/image.js';
import { refusalError } from '../../store/results.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses } from '../schemas.js';

export { MAX_IMAGE_BYTES };

export const snapshotRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: MAX_IMAGE_BYTES }, (_req, body, done) => done(null, body));

  app.get('/v1/admin/snapshot', { config: { action: 'admin.snapshot.save' }, schema: { response: errorResponses } }, async (req, reply) => {
    deps.authz.require(req, 'admin');
    await deps.replicator.readBarrier(); // the image includes every write acknowledged before the request
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-save-'));
    const file = path.join(dir, 'state.db');
    try {
      deps.writeImage(file);
      const image = fs.readFileSync(file);
      void reply
        .header('content-type', 'application/octet-stream')
        .header('content-disposition', `attachment; filename="coffer-${deps.config.nodeId}-${deps.now().toISOString().replace(/[:.]/g, '')}.db"`);
      return image;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  app.post<{ Body: Buffer }>(
    '/v1/admin/snapshot',
    {
      config: { action: 'admin.snapshot.restore' },
      bodyLimit: MAX_IMAGE_BYTES,
      schema: { response: { 200: { type: 'object', properties: { restored: { type: 'boolean' }, secrets: { type: 'integer' } } }, ...errorResponses } },
    },
    async (req) => {
      deps.authz.require(req, 'admin');
      if (!Buffer.isBuffer(req.body)) throw new ApiError('bad_request', 'send the image as application/octet-stream', 415);
      // The whole image is checked before anything is proposed (and again by every node as it applies it).
      const problem = imageProblem(req.body);
      if (problem) throw new ApiError('bad_request', `cannot restore: ${problem}`);
      // Every revocation made since the image was taken is kept.
      const result = await deps.replicator.propose(stateRestore({ image: new Uint8Array(req.body), at: deps.now().toISOString() }));
      if (!result.ok) throw refusalError(result);
      return { restored: true, secrets: deps.reader.listNames('', '', Number.MAX_SAFE_INTEGER).length };
    },
  );
};
