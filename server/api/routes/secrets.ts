// Secret values: allowlisted reads, token-authorized writes, rotate, delete.
import type { FastifyPluginAsync } from 'fastify';
import { CHARSETS, DEFAULT_ROTATE_LENGTH, ROTATE_LENGTH_MAX, ROTATE_LENGTH_MIN, type Charset } from '../../secrets/random-value.js';
import { SECRET_OPERATIONS } from '../../secrets/operations.js';
import { WriteModeError } from '../../secrets/service.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, positiveIntText, rotateParams, ROTATE_SUFFIX, secretNameParams } from '../schemas.js';

type NameParams = { '*': string };

const valueResponse = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    version: { type: 'integer' },
    value: { type: 'string' },
    created_at: { type: 'string' },
  },
} as const;

const writeResponse = {
  type: 'object',
  properties: { name: { type: 'string' }, version: { type: 'integer' }, created_at: { type: 'string' } },
} as const;

export const secretRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  const { authz, secrets, replicator } = deps;

  app.get<{ Params: NameParams; Querystring: { version?: string; consistency?: 'stale' | 'linearizable' } }>(
    '/v1/secrets/*',
    {
      config: { action: SECRET_OPERATIONS.read.audit },
      schema: {
        params: secretNameParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { version: positiveIntText, consistency: { type: 'string', enum: ['stale', 'linearizable'] } },
        },
        response: { 200: valueResponse, ...errorResponses },
      },
    },
    async (req) => {
      const name = req.params['*'];
      req.ctx.target = name;
      authz.identifyIfPresent(req);
      authz.requireAllowlisted(req);
      const version = req.query.version === undefined ? undefined : Number(req.query.version);
      if (version !== undefined) req.ctx.version = version;
      if (req.query.consistency !== 'stale') await replicator.readBarrier();
      const result = await secrets.read(name, version);
      req.ctx.version = result.version;
      return result;
    },
  );

  app.put<{ Params: NameParams; Body: { value: string; cas?: number } }>(
    '/v1/secrets/*',
    {
      config: { action: SECRET_OPERATIONS.write.audit },
      schema: {
        params: secretNameParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['value'],
          properties: { value: { type: 'string' }, cas: { type: 'integer', minimum: 0 } },
        },
        response: { 200: writeResponse, 201: writeResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const name = req.params['*'];
      req.ctx.target = name;
      // Which of the write's rights the token holds (not whether the name exists now) is the write mode:
      // it travels with the write and is checked where it lands.
      const { principal: p, mode } = authz.writeMode(req, name);
      if (Buffer.byteLength(req.body.value, 'utf8') > deps.config.maxValueBytes) {
        throw new ApiError('payload_too_large', `value exceeds ${deps.config.maxValueBytes} bytes`);
      }
      let result;
      try {
        result = await secrets.put(name, req.body.value, req.body.cas ?? null, p.name, mode);
      } catch (err) {
        // Only a token with exactly one of the two rights gets here: it may learn existence by using the one it has.
        if (err instanceof WriteModeError) throw new ApiError('forbidden', `role ${p.role} does not allow ${err.needed} on this path`);
        throw err;
      }
      req.ctx.version = result.version;
      void reply.code(result.created ? 201 : 200);
      return { name: result.name, version: result.version, created_at: result.created_at };
    },
  );

  app.post<{ Params: NameParams; Body: { length?: number; charset?: Charset } }>(
    '/v1/secrets/*',
    {
      config: { action: SECRET_OPERATIONS.rotate.audit },
      // Both fields are optional, so an empty POST (no body at all) is a valid rotate.
      preValidation: async (req) => {
        if (req.body === undefined || req.body === null) req.body = {};
      },
      schema: {
        params: rotateParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            length: { type: 'integer', minimum: ROTATE_LENGTH_MIN, maximum: ROTATE_LENGTH_MAX },
            charset: { type: 'string', enum: Object.keys(CHARSETS) },
          },
        },
        response: { 200: valueResponse, ...errorResponses },
      },
    },
    async (req) => {
      const name = req.params['*'].slice(0, -ROTATE_SUFFIX.length);
      req.ctx.target = name;
      const p = authz.require(req, SECRET_OPERATIONS.rotate.rights[0], name);
      const body = req.body;
      const length = body.length ?? DEFAULT_ROTATE_LENGTH;
      if (length > deps.config.maxValueBytes) throw new ApiError('payload_too_large', `length exceeds ${deps.config.maxValueBytes}`);
      const result = await secrets.rotate(name, length, body.charset ?? 'alphanumeric', p.name);
      req.ctx.version = result.version;
      return { name, version: result.version, value: result.value, created_at: result.created_at };
    },
  );

  app.delete<{ Params: NameParams }>(
    '/v1/secrets/*',
    { config: { action: SECRET_OPERATIONS.delete.audit }, schema: { params: secretNameParams, response: errorResponses } },
    async (req, reply) => {
      const name = req.params['*'];
      req.ctx.target = name;
      authz.require(req, SECRET_OPERATIONS.delete.rights[0], name);
      await secrets.delete(name);
      void reply.code(204);
    },
  );
};
