// Role rules: which actions a role may take on which secret paths (DESIGN §4).
//
// Path patterns: an exact name (`app/db`), a prefix `app/*` (everything below
// `app/`, not `app` itself), `+` standing for exactly one segment anywhere
// (`teams/+/db`), or `*` alone for every name. Global actions ignore paths.

export const PATH_ACTIONS = ['create', 'update', 'delete', 'rotate', 'list', 'read_metadata'] as const;
export const GLOBAL_ACTIONS = ['manage_tokens', 'manage_roles', 'admin'] as const;
export const ALL_ACTIONS = [...PATH_ACTIONS, ...GLOBAL_ACTIONS] as const;

export type PathAction = (typeof PATH_ACTIONS)[number];
export type GlobalAction = (typeof GLOBAL_ACTIONS)[number];
export type Action = PathAction | GlobalAction;

export interface RoleRule {
  paths: string[];
  actions: Action[];
}

export const ADMIN_ROLE_RULES: RoleRule[] = [{ paths: ['*'], actions: [...ALL_ACTIONS] }];

/** JSON-schema pattern for one path rule. Like secret names, no `.` or `..` segment (such a rule could never match). */
export const PATH_PATTERN = '^(?!(?:.*/)?\\.{1,2}(?:/|$))(\\*|(?:(?:[A-Za-z0-9._-]+|\\+)/)*(?:[A-Za-z0-9._-]+|\\+|\\*))$';

/** Limits on a role's rules, shared by the route schema, command validation and the snapshot check. */
export const MAX_RULES = 100;
export const MAX_RULE_PATHS = 100;
export const MAX_PATH_LENGTH = 256;

const PATH_RE = new RegExp(PATH_PATTERN);

/**
 * Why `rules` is not a valid rule list (the shape PUT /v1/roles accepts), or
 * null. Used wherever rules arrive from outside the route: replicated
 * commands and restored images.
 */
export function roleRulesProblem(rules: unknown): string | null {
  if (!Array.isArray(rules)) return 'rules must be an array';
  if (rules.length > MAX_RULES) return `at most ${MAX_RULES} rules`;
  for (const [i, rule] of rules.entries()) {
    if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) return `rule ${i} must be an object`;
    const keys = Object.keys(rule);
    if (keys.length !== 2 || !keys.includes('paths') || !keys.includes('actions')) return `rule ${i} must have exactly paths and actions`;
    const { paths, actions } = rule as { paths: unknown; actions: unknown };
    if (!Array.isArray(paths) || paths.length > MAX_RULE_PATHS) return `rule ${i}: paths must be an array of at most ${MAX_RULE_PATHS}`;
    for (const p of paths) {
      if (typeof p !== 'string' || p.length < 1 || p.length > MAX_PATH_LENGTH || !PATH_RE.test(p)) return `rule ${i}: invalid path pattern`;
    }
    if (!Array.isArray(actions) || actions.length < 1) return `rule ${i}: actions must be a non-empty array`;
    if (new Set(actions).size !== actions.length) return `rule ${i}: actions must be unique`;
    for (const a of actions) if (!(ALL_ACTIONS as readonly unknown[]).includes(a)) return `rule ${i}: unknown action`;
  }
  return null;
}

export function pathMatches(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  const pat = pattern.split('/');
  const seg = name.split('/');
  for (let i = 0; i < pat.length; i++) {
    const p = pat[i] as string;
    if (p === '*' && i === pat.length - 1) return seg.length > i; // at least one segment below the prefix
    const s = seg[i];
    if (s === undefined) return false;
    if (p !== '+' && p !== s) return false;
  }
  return seg.length === pat.length;
}

export function isGlobalAction(a: Action): a is GlobalAction {
  return (GLOBAL_ACTIONS as readonly string[]).includes(a);
}

/** Does a role with these rules allow `action` (on `name`, for path actions)? */
export function rulesAllow(rules: readonly RoleRule[], action: Action, name?: string): boolean {
  for (const rule of rules) {
    if (!rule.actions.includes(action)) continue;
    if (isGlobalAction(action)) return true;
    if (name === undefined) continue;
    if (rule.paths.some((p) => pathMatches(p, name))) return true;
  }
  return false;
}

/** For listing: does the role grant `action` on any path at all? */
export function rulesGrantAnywhere(rules: readonly RoleRule[], action: Action): boolean {
  return rules.some((r) => r.actions.includes(action) && (isGlobalAction(action) || r.paths.length > 0));
}

/** Could a rule path match some name below `prefix` ('' or ending in '/')? */
export function patternReachesUnder(pattern: string, prefix: string): boolean {
  if (pattern === '*') return true;
  const pat = pattern.split('/');
  const pre = prefix === '' ? [] : prefix.slice(0, -1).split('/');
  for (let i = 0; i < pre.length; i++) {
    const p = pat[i];
    if (p === undefined) return false;
    if (p === '*' && i === pat.length - 1) return true;
    if (p !== '+' && p !== pre[i]) return false;
  }
  return pat.length > pre.length;
}

/** Whether some rule grants `action` on a path that can match a name below `prefix` (a blocking query's check). */
export function rulesGrantUnder(rules: readonly RoleRule[], action: PathAction, prefix: string): boolean {
  return rules.some((r) => r.actions.includes(action) && r.paths.some((p) => patternReachesUnder(p, prefix)));
}

/** Roles holding a global right other than data access can escalate; only admins may mint such tokens. */
export function rulesArePrivileged(rules: readonly RoleRule[]): boolean {
  return rules.some((r) => r.actions.some((a) => isGlobalAction(a)));
}
