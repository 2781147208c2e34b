// GET /v1/watch: a blocking metadata query (Consul-style). Names a prefix or a
// set of names and the change index the client last saw; answers at once if
// one of them changed after it, else waits (up to `wait`) for a change. The
// answer is the names' current versions and the node's change index (also in
// X-Coffer-Index). RBAC as the metadata routes: a names= set needs
// read_metadata on every name (403 otherwise, whether or not they exist); a
// prefix needs list somewhere below it (403 otherwise) and answers, and wakes
// for, only the names the token may list.
import type { FastifyPluginAsync } from 'fastify';
import { rulesAllow, rulesGrantUnder } from '../../rbac/rules.js';
import { SECRET_OPERATIONS } from '../../secrets/operations.js';
import { isValidSecretName } from '../../store/names.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses } from '../schemas.js';

export const WATCH_AUDIT_ACTION = 'secret.watch';
export const WATCH_DEFAULT_WAIT_MS = 60_000;
export const WATCH_MAX_WAIT_MS = 300_000;
/** A names= set holds at most this many names. */
export const WATCH_MAX_NAMES = 256;
/** A prefix answer lists at most this many names (then `truncated: true`). */
export const WATCH_MAX_ANSWER = 10_000;
export const INDEX_HEADER = 'x-coffer-index';

interface WatchQuery {
  prefix?: string;
  names?: string;
  index?: string;
  wait?: string;
}

/** `90`, `90s`, `1500ms`, `5m` → milliseconds. */
export function parseWait(text: string): number {
  const m = /^([0-9]{1,6})(ms|s|m)?$/.exec(text);
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

export const watchRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.get<{ Querystring: WatchQuery }>(
    '/v1/watch',
    {
      config: { action: WATCH_AUDIT_ACTION },
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            // '' (everything) or whole segments ending in '/'.
            prefix: { type: 'string', maxLength: 256, pattern: '^(?:[A-Za-z0-9._-]+/)*$' },
            // Comma-separated secret names.
            names: { type: 'string', minLength: 1, maxLength: 16_384, pattern: '^[A-Za-z0-9._/,-]+$' },
            index: { type: 'string', pattern: '^(?:0|[1-9][0-9]{0,14})$' },
            wait: { type: 'string', pattern: '^[0-9]{1,6}(?:ms|s|m)?$' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              index: { type: 'integer' },
              versions: { type: 'object', additionalProperties: { type: 'integer' } },
              missing: { type: 'array', items: { type: 'string' } },
              truncated: { type: 'boolean' },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const watch = deps.watch;
      if (!watch) throw new ApiError('not_found', 'blocking queries are not served here');
      const q = req.query;
      if ((q.prefix === undefined) === (q.names === undefined)) throw new ApiError('bad_request', 'give exactly one of prefix= and names=');
      const waitMs = q.wait === undefined ? WATCH_DEFAULT_WAIT_MS : parseWait(q.wait);
      if (!(waitMs >= 0 && waitMs <= WATCH_MAX_WAIT_MS)) throw new ApiError('bad_request', `wait must be at most ${WATCH_MAX_WAIT_MS / 1000}s`);
      const after = Number(q.index ?? '0');

      let names: string[] | null = null;
      let prefix: string | null = null;
      if (q.names !== undefined) {
        names = [...new Set(q.names.split(','))];
        if (names.length > WATCH_MAX_NAMES) throw new ApiError('bad_request', `at most ${WATCH_MAX_NAMES} names`);
        for (const n of names) if (!isValidSecretName(n)) throw new ApiError('invalid_name', 'invalid secret name in names=');
        req.ctx.target = names.join(',').slice(0, 300);
      } else {
        prefix = q.prefix!;
        req.ctx.target = prefix || null;
      }
      let visible: (name: string) => boolean = () => false;
      let matches: (name: string) => boolean = () => false;
      // Run before answering at once and again after a wait: a token revoked, expired or narrowed
      // while its query waited gets 401/403, not the versions.
      const authorize = () => {
        req.ctx.principal = null;
        if (names) {
          for (const n of names) deps.authz.require(req, SECRET_OPERATIONS.readMetadata.rights[0], n);
          const set = new Set(names);
          visible = () => true;
          matches = (n) => set.has(n);
        } else {
          const pre = prefix!;
          const p = deps.authz.principal(req);
          const right = SECRET_OPERATIONS.list.rights[0];
          if (!rulesGrantUnder(p.rules, right, pre)) throw new ApiError('forbidden', `role ${p.role} does not allow ${right} under this prefix`);
          const rules = p.rules;
          visible = (n) => rulesAllow(rules, right, n);
          matches = (n) => n.startsWith(pre) && rulesAllow(rules, right, n);
        }
      };
      authorize();

      const answer = () => {
        const index = watch.index;
        const versions: Record<string, number> = {};
        const body: { index: number; versions: Record<string, number>; missing?: string[]; truncated?: boolean } = { index, versions };
        if (names) {
          const missing: string[] = [];
          for (const n of names) {
            const v = deps.reader.currentVersion(n);
            if (v > 0) versions[n] = v;
            else missing.push(n);
          }
          body.missing = missing;
        } else {
          let cursor = '';
          let count = 0;
          body.truncated = false;
          scan: for (;;) {
            const batch = deps.reader.listNames(prefix!, cursor, 1000);
            for (const n of batch) {
              cursor = n;
              if (!visible(n)) continue;
              if (count === WATCH_MAX_ANSWER) {
                body.truncated = true;
                break scan;
              }
              versions[n] = deps.reader.currentVersion(n);
              count++;
            }
            if (batch.length < 1000) break;
          }
        }
        void reply.header(INDEX_HEADER, String(index));
        return body;
      };

      if (after === 0 || waitMs === 0 || watch.changedSince(after, matches)) return answer();

      return new Promise((resolve, reject) => {
        const spec = { visible, waitMs, ...(names ? { names } : { prefix: prefix! }) };
        // Answered on the next turn of the event loop, not inside the apply that woke it.
        const w = watch.wait(spec, () => {
          reply.raw.off('close', onClose);
          setImmediate(() => {
            try {
              authorize();
              resolve(answer());
            } catch (err) {
              reject(err);
            }
          });
        });
        const onClose = () => {
          if (w) watch.cancel(w);
        };
        if (w === null) {
          reject(new ApiError('too_many_requests', `too many waiting queries on this node (${watch.maxWaiters}); retry later`));
          return;
        }
        reply.raw.once('close', onClose);
      });
    },
  );
};
