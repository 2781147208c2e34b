// Name rules (DESIGN §4) shared by the JSON schemas, the command validation and the image check.

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

export const IDENT_RE = new RegExp(IDENT_PATTERN);

/** Raft member ids (VAULT_NODE_ID, VAULT_PEERS): as the configuration accepts them. */
export const NODE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$';
/** A member's Raft address, `host:port`. */
export const RAFT_ADDRESS_PATTERN = '^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$';
