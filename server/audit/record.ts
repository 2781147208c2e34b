// What an audit record holds, and the row it is written as. There is
// deliberately no field for secret values, tokens, request bodies or
// headers, so none can leak into the log.
import type { AuditRow } from './audit-worker.js';

export type AuditOutcome = 'allowed' | 'denied' | 'error';

export interface AuditRecord {
  /** ISO-8601 time the request was received. */
  ts: string;
  node_id: string;
  request_id: string;
  /** Token name, or `anonymous`. Never the token itself. */
  actor: string;
  /** The client's address: the socket peer, or what a trusted proxy said in X-Forwarded-For. */
  client_ip: string;
  /** e.g. `secret.read`, `token.create`. */
  action: string;
  /** Secret, token or role name the action applied to, if any. */
  target: string | null;
  /** Secret version involved, if any. */
  version: number | null;
  outcome: AuditOutcome;
  /** HTTP status sent to the client. */
  status: number;
  /** The socket peer the request came from (differs from client_ip behind a trusted proxy); null in older records. */
  peer_ip?: string | null;
}

export interface StoredAuditRecord extends AuditRecord {
  id: number;
  /** The hash chain value (chain.ts); null for records written before the chain existed. */
  chain?: string | null;
}

/** Told once whether a submitted record is durable (null) or could not be written; always asynchronously. */
export type AuditDone = (err: Error | null) => void;

/** A record waiting to be written, and who waits for it. */
export interface PendingRecord {
  row: AuditRow;
  done: AuditDone;
  /** A committed change's record: held and retried on failure, never failed. */
  keep: boolean;
}

const OUTCOMES: ReadonlySet<string> = new Set(['allowed', 'denied', 'error']);

/** The record as a row, validated before it is queued so one malformed record cannot fail a whole batch. */
export function toRow(r: AuditRecord): AuditRow {
  if (!OUTCOMES.has(r.outcome)) throw new TypeError(`invalid audit outcome: ${String(r.outcome)}`);
  if (!Number.isInteger(r.status)) throw new TypeError('audit status must be an integer');
  const version = r.version ?? null;
  if (version !== null && !Number.isSafeInteger(version)) throw new TypeError('audit version must be an integer');
  // In AUDIT_COLUMNS order; an array is cheaper to pass to the worker than an object.
  return [
    String(r.ts),
    String(r.node_id),
    String(r.request_id),
    String(r.actor),
    String(r.client_ip),
    String(r.action),
    r.target == null ? null : String(r.target),
    version,
    r.outcome,
    r.status,
    r.peer_ip == null ? null : String(r.peer_ip),
  ];
}

/** The audit record could not be made durable (maps to 503 audit_unavailable). */
export class AuditUnavailableError extends Error {
  override readonly name = 'AuditUnavailableError';
}

export function unavailable(err: unknown): AuditUnavailableError {
  if (err instanceof AuditUnavailableError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new AuditUnavailableError(`audit log unavailable: ${msg}`, { cause: err });
}
