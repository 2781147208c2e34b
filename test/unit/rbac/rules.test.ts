import { describe, expect, it } from 'vitest';
import { PATH_PATTERN, pathMatches, rulesAllow, rulesArePrivileged, type RoleRule } from '../../../server/rbac/rules.js';

describe('pathMatches', () => {
  it.each([
    ['app/db', 'app/db', true],
    ['app/db', 'app/db2', false],
    ['app/db', 'app', false],
    ['app/*', 'app/db', true],
    ['app/*', 'app/db/password', true],
    ['app/*', 'app', false],
    ['app/*', 'application/x', false],
    ['+', 'top', true],
    ['+', 'top/level', false],
    ['teams/+/db', 'teams/red/db', true],
    ['teams/+/db', 'teams/red/blue/db', false],
    ['teams/+/db', 'teams/red/db/x', false],
    ['teams/+/*', 'teams/red/db/x', true],
    ['teams/+/*', 'teams/red', false],
    ['*', 'anything/at/all', true],
  ])('%s matches %s: %s', (pattern, name, expected) => {
    expect(pathMatches(pattern, name)).toBe(expected);
  });

  it('accepts valid patterns in the schema and refuses odd ones', () => {
    const re = new RegExp(PATH_PATTERN);
    for (const ok of ['*', 'app/*', '+', 'a/+/b', 'a.b/c-d_e']) expect(re.test(ok)).toBe(true);
    for (const bad of ['', 'app/', '/app', 'a//b', 'a/*/b', '**', 'a b']) expect(re.test(bad)).toBe(false);
  });
});

describe('rulesAllow', () => {
  const rules: RoleRule[] = [
    { paths: ['app/*'], actions: ['create', 'update'] },
    { paths: ['shared/config'], actions: ['read_metadata'] },
    { paths: [], actions: ['manage_tokens'] },
  ];

  it('grants path actions only on matching paths', () => {
    expect(rulesAllow(rules, 'create', 'app/x')).toBe(true);
    expect(rulesAllow(rules, 'create', 'other/x')).toBe(false);
    expect(rulesAllow(rules, 'delete', 'app/x')).toBe(false);
    expect(rulesAllow(rules, 'read_metadata', 'shared/config')).toBe(true);
    expect(rulesAllow(rules, 'read_metadata', 'shared/config2')).toBe(false);
    expect(rulesAllow(rules, 'create')).toBe(false);
  });

  it('grants global actions regardless of paths', () => {
    expect(rulesAllow(rules, 'manage_tokens')).toBe(true);
    expect(rulesAllow(rules, 'manage_roles')).toBe(false);
    expect(rulesAllow(rules, 'admin')).toBe(false);
    expect(rulesArePrivileged(rules)).toBe(true);
    expect(rulesArePrivileged(rules.slice(0, 2))).toBe(false);
  });
});
