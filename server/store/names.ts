// Secret-name rules (DESIGN §4) shared by the JSON schemas and the core.

const SEGMENT = '[A-Za-z0-9._-]+';
/** Source for JSON-schema `pattern`: segments joined by '/', none empty, none '.' or '..'. */
export const SECRET_NAME_PATTERN = `^(?!(?:.*/)?\\.{1,2}(?:/|$))${SEGMENT}(?:/${SEGMENT})*$`;
const NAME_RE = new RegExp(SECRET_NAME_PATTERN);
const DOT_SEGMENT = /(?:^|\/)\.{1,2}(?:\/|$)/;

export const SECRET_NAME_MAX = 256;

export function isValidSecretName(name: string): boolean {
  return name.length >= 1 && name.length <= SECRET_NAME_MAX && NAME_RE.test(name) && !DOT_SEGMENT.test(name);
}

/** Token and role names: one segment, no dots at the start. */
export const IDENT_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';
