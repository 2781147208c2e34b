// What applying a command reports back to the proposer. Failures here are
// deterministic outcomes (every node computes the same), not exceptions; a
// proposer that gives up on one throws the domain error it stands for.
import { CasMismatchError, ConflictError, type DomainError, ForbiddenError, InvalidError, NotFoundError } from '../domain-errors.js';

export type ApplyErrorCode = 'not_found' | 'conflict' | 'cas_mismatch' | 'bad_request' | 'forbidden' | 'stale';

export type ApplyResult =
  | { ok: true; version?: number; created?: boolean; note?: 'exists' | 'revoked' | 'peers' }
  | { ok: false; code: ApplyErrorCode; message: string };

export type Refusal = Extract<ApplyResult, { ok: false }>;

export const applied = (extra: Omit<Extract<ApplyResult, { ok: true }>, 'ok'> = {}): ApplyResult => ({ ok: true, ...extra });
export const refused = (code: ApplyErrorCode, message: string): ApplyResult => ({ ok: false, code, message });

/** The domain error a refusal stands for; `stale` (a race the proposer did not retry) is a conflict. */
export function refusalError(refusal: Refusal): DomainError {
  switch (refusal.code) {
    case 'not_found':
      return new NotFoundError(refusal.message);
    case 'conflict':
    case 'stale':
      return new ConflictError(refusal.message);
    case 'cas_mismatch':
      return new CasMismatchError(refusal.message);
    case 'forbidden':
      return new ForbiddenError(refusal.message);
    case 'bad_request':
      return new InvalidError(refusal.message);
  }
}
