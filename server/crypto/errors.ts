/** A stored record failed authentication (maps to 500 integrity_error). */
export class IntegrityError extends Error {
  override readonly name = 'IntegrityError';
}
