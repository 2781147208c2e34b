// Maps every failure to the fixed error vocabulary. Unknown errors become
// 500 internal with a generic message; their detail goes to the log only.
import type { FastifyError, FastifyInstance } from 'fastify';
import { AuditUnavailableError } from '../audit/record.js';
import { IntegrityError } from '../crypto/errors.js';
import { DomainError, type DomainErrorKind } from '../domain-errors.js';
import { KmsIntegrityError, KmsUnavailableError } from '../kms/provider.js';
import { FatalStorageError, NoLeaderError } from '../raft/replicator.js';
import { InsufficientStorageError } from '../storage/write-guard.js';
import { parserRefusal } from './edge-raw.js';
import { ApiError, errorBody, type ErrorCode } from './errors.js';

/** How each kind of domain error answers (DESIGN §4 codes). */
const DOMAIN_CODES: Readonly<Record<DomainErrorKind, ErrorCode>> = {
  not_found: 'not_found',
  conflict: 'conflict',
  cas_mismatch: 'cas_mismatch',
  forbidden: 'forbidden',
  invalid: 'bad_request',
};

function toApiError(err: FastifyError): ApiError {
  if (err instanceof ApiError) return err;
  // A service's own message: it names what is wrong, never internals.
  if (err instanceof DomainError) return new ApiError(DOMAIN_CODES[err.kind], err.message);
  if (err.validation) {
    const where = err.validationContext ?? 'request';
    if (where === 'params' && err.message.includes('/*')) return new ApiError('invalid_name', 'invalid secret name');
    return new ApiError('bad_request', err.message);
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('payload_too_large', 'request body too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('bad_request', 'body must be application/json', 415);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('bad_request', 'empty JSON body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('bad_request', 'malformed JSON body');
  }
  // The HTTP parser failed inside this request's body (edge-raw.ts hands the error here).
  const parser = parserRefusal(err.code);
  if (parser !== null) return new ApiError('bad_request', parser.message, parser.status);
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return new ApiError('bad_request', 'malformed JSON body');
  }
  if (err instanceof KmsUnavailableError) return new ApiError('kms_unavailable', 'KMS is unavailable');
  if (err instanceof IntegrityError || err instanceof KmsIntegrityError) {
    return new ApiError('integrity_error', 'stored record failed authentication');
  }
  // Our own messages (no internals): which voter holds a rollout back, why a write was lost, …
  if (err instanceof NoLeaderError) return new ApiError('no_leader', err.message);
  if (err instanceof FatalStorageError) return new ApiError('no_leader', 'this node stopped after a storage fault');
  if (err instanceof AuditUnavailableError) return new ApiError('audit_unavailable', 'audit log unavailable');
  // Refused before anything was proposed (DESIGN §3 VAULT_MIN_FREE_BYTES); the message names no path.
  if (err instanceof InsufficientStorageError) return new ApiError('insufficient_storage', err.message);
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new ApiError('bad_request', 'bad request', err.statusCode);
  }
  return new ApiError('internal', 'internal error');
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const apiErr = toApiError(err);
    if (apiErr.code === 'internal' || apiErr.code === 'integrity_error') {
      // Messages of our own errors never carry key material or values; log name and message only.
      req.log.error({ err: { name: err.name, message: err.message, code: err.code } }, 'request failed');
    }
    void reply.code(apiErr.status).send(errorBody(apiErr.code, apiErr.message));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody('not_found', 'no such route'));
  });
}
