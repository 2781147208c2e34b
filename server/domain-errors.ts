// Failures in the vault's own words: services, the state machine's refusals
// and membership changes throw these. They say what is wrong, never how HTTP
// spells it: server/api/error-handler.ts maps each kind to its DESIGN §4 code,
// and nothing below the API imports the API.

export type DomainErrorKind = 'not_found' | 'conflict' | 'cas_mismatch' | 'forbidden' | 'invalid';

export abstract class DomainError extends Error {
  abstract readonly kind: DomainErrorKind;

  override get name(): string {
    return this.constructor.name;
  }
}

/** The named secret, version, token, role or member does not exist. */
export class NotFoundError extends DomainError { readonly kind = 'not_found'; }

/** The change contradicts the current state: a name taken, a built-in role, a membership that does not allow it, a lost race. */
export class ConflictError extends DomainError { readonly kind = 'conflict'; }

/** A check-and-set write found another current version. */
export class CasMismatchError extends DomainError { readonly kind = 'cas_mismatch'; }

/** The caller's rights do not allow the change on the state it would land on. */
export class ForbiddenError extends DomainError { readonly kind = 'forbidden'; }

/** A well-formed request the state refuses: it names a role that does not exist, carries an unusable image, … */
export class InvalidError extends DomainError { readonly kind = 'invalid'; }
