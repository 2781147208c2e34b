// The application/json body parser. Every body must be valid UTF-8 and every
// string in it well-formed Unicode: decoding invalid bytes, or a lone
// surrogate written as a JSON escape (`"\ud800"`), would otherwise store
// U+FFFD or an unpaired half in place of what the client sent. Both are
// refused (400 bad_request) before anything else looks at the body, on every
// route (secret values, token names, role rules). Parsing itself is Fastify's
// own (prototype-poisoning checks included), fed from the checked buffer.
import type { FastifyInstance } from 'fastify';
import { isUtf8 } from 'node:buffer';
import { ApiError } from './errors.js';

/** Node 20+ has String.prototype.isWellFormed (ES2024); the compile target's lib does not declare it. */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** Installs the parser on `app`, replacing Fastify's default for application/json. */
export function installJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    const bytes = body as Buffer;
    if (!isUtf8(bytes)) {
      done(new ApiError('bad_request', 'body is not valid UTF-8'), undefined);
      return;
    }
    parse(req, bytes.toString('utf8'), (err, value) => {
      if (err) {
        done(err, undefined);
        return;
      }
      const problem = stringProblem(value, 0);
      done(problem === null ? null : new ApiError('bad_request', problem), problem === null ? value : undefined);
    });
  });
}

/** Deeper than any body a route accepts; past it the body is refused rather than walked. */
const MAX_DEPTH = 64;

const UNPAIRED = 'body contains an unpaired surrogate (\\ud800-\\udfff escape)';

/** Null when every string in a parsed JSON value, keys included, is well-formed UTF-16; else what is wrong. */
function stringProblem(v: unknown, depth: number): string | null {
  if (typeof v === 'string') return isWellFormed(v) ? null : UNPAIRED;
  if (v === null || typeof v !== 'object') return null;
  if (depth > MAX_DEPTH) return 'body nested too deeply';
  if (Array.isArray(v)) {
    for (const item of v) {
      const p = stringProblem(item, depth + 1);
      if (p !== null) return p;
    }
    return null;
  }
  for (const key in v) {
    if (!isWellFormed(key)) return UNPAIRED;
    const p = stringProblem((v as Record<string, unknown>)[key], depth + 1);
    if (p !== null) return p;
  }
  return null;
}
