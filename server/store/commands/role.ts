// role.*: a role written or deleted.
import type { RoleRule } from '../../rbac/rules.js';
import type { Definitions, Fields } from './definition.js';
import { ident, isoTime, roleRules } from './fields.js';

export interface RolePutV1 {
  t: 'role.put';
  v: 1;
  name: string;
  rules: RoleRule[];
}

/** Deletes the role; its tokens keep their binding and merely find no role (older releases). */
export interface RoleDeleteV1 {
  t: 'role.delete';
  v: 1;
  name: string;
}

/** Deletes the role and revokes, at `at`, every token bound to it, so a new role of that name never revives them. */
export interface RoleDeleteV2 {
  t: 'role.delete';
  v: 2;
  name: string;
  at: string;
}

export type RoleCommand = RolePutV1 | RoleDeleteV1 | RoleDeleteV2;

export const rolePut = (fields: Fields<RolePutV1>): RolePutV1 => ({ t: 'role.put', v: 1, ...fields });

export const roleDelete = (fields: Fields<RoleDeleteV2>): RoleDeleteV2 => ({ t: 'role.delete', v: 2, ...fields });

export const ROLE_COMMANDS: Definitions<RoleCommand> = {
  'role.put': {
    versions: { 1: { name: ident, rules: roleRules } },
    binary: [],
    forwardable: true,
    invalidates: ['auth'],
  },
  'role.delete': {
    versions: { 1: { name: ident }, 2: { name: ident, at: isoTime } },
    binary: [],
    forwardable: true,
    invalidates: ['auth'],
  },
};
