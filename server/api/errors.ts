// The API's error vocabulary (DESIGN §4). Every failure leaves as
// {"error":{"code","message"}} with a fixed code; no stack traces, no paths.

export type ErrorCode =
  | 'bad_request'
  | 'invalid_name'
  | 'payload_too_large'
  | 'unauthorized'
  | 'forbidden'
  | 'ip_not_allowed'
  | 'not_found'
  | 'conflict'
  | 'cas_mismatch'
  | 'kms_unavailable'
  | 'integrity_error'
  | 'no_leader'
  | 'audit_unavailable'
  | 'insufficient_storage'
  | 'too_many_requests'
  | 'internal';

export const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_name: 400,
  payload_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  ip_not_allowed: 403,
  not_found: 404,
  conflict: 409,
  cas_mismatch: 409,
  kms_unavailable: 503,
  integrity_error: 500,
  no_leader: 503,
  audit_unavailable: 503,
  insufficient_storage: 507,
  too_many_requests: 429,
  internal: 500,
};

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  constructor(readonly code: ErrorCode, message: string, status?: number) {
    super(message);
    this.status = status ?? STATUS[code];
  }
}

export function errorBody(code: ErrorCode, message: string): { error: { code: ErrorCode; message: string } } {
  return { error: { code, message } };
}

/** Outcome recorded in the audit log for a status. */
export function outcomeFor(status: number): 'allowed' | 'denied' | 'error' {
  if (status < 400) return 'allowed';
  if (status === 401 || status === 403) return 'denied';
  return 'error';
}

export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;
