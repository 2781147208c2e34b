// What applying a command reports back to the proposer. Failures here are
// deterministic outcomes (every node computes the same), not exceptions.

export type ApplyErrorCode = 'not_found' | 'conflict' | 'cas_mismatch' | 'bad_request' | 'forbidden' | 'stale';

export type ApplyResult =
  | { ok: true; version?: number; created?: boolean; note?: 'exists' | 'revoked' | 'peers' }
  | { ok: false; code: ApplyErrorCode; message: string };

export const applied = (extra: Omit<Extract<ApplyResult, { ok: true }>, 'ok'> = {}): ApplyResult => ({ ok: true, ...extra });
export const refused = (code: ApplyErrorCode, message: string): ApplyResult => ({ ok: false, code, message });
