// Secret metadata (never values) and listing by prefix.
import type { FastifyPluginAsync } from 'fastify';
import { rulesAllow, rulesGrantAnywhere, rulesGrantUnder } from '../../rbac/rules.js';
import { SECRET_OPERATIONS } from '../../secrets/operations.js';
import { listFolderLevel } from '../../store/folder-listing.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, positiveIntText, secretNameParams } from '../schemas.js';

const MAX_LIST = 1000;
const DEFAULT_LIST = 100;

const metadataResponse = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    current_version: { type: 'integer' },
    versions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          version: { type: 'integer' },
          created_at: { type: 'string' },
          created_by: { type: 'string' },
          kms_key_id: { type: 'string' },
          wrapped_rotation_at: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;

function encodeCursor(name: string): string {
  return Buffer.from(name, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  return Buffer.from(cursor, 'base64url').toString('utf8');
}

export const metadataRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.get<{ Params: { '*': string } }>(
    '/v1/metadata/*',
    {
      config: { action: SECRET_OPERATIONS.readMetadata.audit },
      schema: { params: secretNameParams, response: { 200: metadataResponse, ...errorResponses } },
    },
    async (req) => {
      const name = req.params['*'];
      req.ctx.target = name;
      deps.authz.require(req, SECRET_OPERATIONS.readMetadata.rights[0], name);
      const versions = deps.reader.listVersions(name);
      if (versions.length === 0) throw new ApiError('not_found', 'no such secret');
      return { name, current_version: deps.reader.currentVersion(name), versions };
    },
  );

  app.get<{ Querystring: { prefix?: string; limit?: string; cursor?: string; delimiter?: '/' } }>(
    '/v1/metadata',
    {
      config: { action: SECRET_OPERATIONS.list.audit },
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            prefix: { type: 'string', maxLength: 256, pattern: '^[A-Za-z0-9._/-]*$' },
            limit: positiveIntText,
            cursor: { type: 'string', maxLength: 400, pattern: '^[A-Za-z0-9_-]*$' },
            delimiter: {
              type: 'string',
              enum: ['/'],
              description: 'List one folder level: names directly under the prefix, and `folders` (each ending in `/`) holding at least one name the caller may list.',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              names: { type: 'array', items: { type: 'string' } },
              folders: { type: 'array', items: { type: 'string' }, description: 'Only with `delimiter`.' },
              next_cursor: { type: ['string', 'null'] },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const prefix = req.query.prefix ?? '';
      req.ctx.target = prefix || null;
      const p = deps.authz.principal(req);
      const right = SECRET_OPERATIONS.list.rights[0];
      if (!rulesGrantAnywhere(p.rules, right)) throw new ApiError('forbidden', `role ${p.role} does not allow ${right}`);
      const limit = Math.min(Number(req.query.limit ?? DEFAULT_LIST), MAX_LIST);
      let after = req.query.cursor ? decodeCursor(req.query.cursor) : '';
      if (req.query.delimiter !== undefined) {
        // One level; names and folders share the page and the cursor (which resumes after a name or past a folder).
        const page = listFolderLevel({
          read: (from, inclusive, below, n) => deps.reader.namesFrom(from, inclusive, below, n),
          prefix,
          after,
          limit,
          listable: (name) => rulesAllow(p.rules, right, name),
          reachable: (folder) => rulesGrantUnder(p.rules, right, folder),
        });
        return { names: page.names, folders: page.folders, next_cursor: page.more ? encodeCursor(page.last!) : null };
      }
      // Names the role may not list are skipped, not reported, and never decide whether a next page exists:
      // scan until one listable name beyond the page is found or the prefix runs out.
      const names: string[] = [];
      for (;;) {
        const batch = deps.reader.listNames(prefix, after, limit + 1);
        for (const n of batch) {
          after = n;
          if (rulesAllow(p.rules, right, n)) names.push(n);
          if (names.length > limit) break;
        }
        if (names.length > limit || batch.length <= limit) break;
      }
      const hasMore = names.length > limit;
      if (hasMore) names.length = limit;
      return { names, next_cursor: hasMore ? encodeCursor(names[limit - 1]!) : null };
    },
  );
};
