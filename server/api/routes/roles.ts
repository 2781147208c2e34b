// Role management. `admin` is built in: readable, never changed or deleted.
import type { FastifyPluginAsync } from 'fastify';
import { MAX_RULES, rulesAllow, rulesArePrivileged, type RoleRule } from '../../rbac/rules.js';
import { roleDelete, rolePut } from '../../store/commands.js';
import { refusalError } from '../../store/results.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { errorResponses, identParams, ruleSchema } from '../schemas.js';

const roleResponse = {
  type: 'object',
  properties: { name: { type: 'string' }, builtin: { type: 'boolean' }, rules: { type: 'array', items: ruleSchema } },
} as const;

export const roleRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (app, { deps }) => {
  app.put<{ Params: { name: string }; Body: { rules: RoleRule[] } }>(
    '/v1/roles/:name',
    {
      config: { action: 'role.put' },
      schema: {
        params: identParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['rules'],
          properties: { rules: { type: 'array', maxItems: MAX_RULES, items: ruleSchema } },
        },
        response: { 200: roleResponse, 201: roleResponse, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      req.ctx.target = name;
      const caller = deps.authz.require(req, 'manage_roles');
      // Otherwise manage_roles alone could grant itself (or any role it holds a token for) admin;
      // same rule as minting tokens for privileged roles.
      if (rulesArePrivileged(req.body.rules) && !rulesAllow(caller.rules, 'admin')) {
        throw new ApiError('forbidden', 'only admin may grant global actions to a role');
      }
      const result = await deps.replicator.propose(rolePut({ name, rules: req.body.rules }));
      if (!result.ok) throw refusalError(result);
      void reply.code(result.created ? 201 : 200);
      return { name, builtin: false, rules: req.body.rules };
    },
  );

  app.get<{ Params: { name: string } }>(
    '/v1/roles/:name',
    { config: { action: 'role.read' }, schema: { params: identParams, response: { 200: roleResponse, ...errorResponses } } },
    async (req) => {
      req.ctx.target = req.params.name;
      deps.authz.require(req, 'manage_roles');
      const role = deps.reader.role(req.params.name);
      if (!role) throw new ApiError('not_found', 'no such role');
      return role;
    },
  );

  app.get(
    '/v1/roles',
    {
      config: { action: 'role.list' },
      schema: { response: { 200: { type: 'object', properties: { roles: { type: 'array', items: roleResponse } } }, ...errorResponses } },
    },
    async (req) => {
      deps.authz.require(req, 'manage_roles');
      return { roles: deps.reader.listRoles() };
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/v1/roles/:name',
    { config: { action: 'role.delete' }, schema: { params: identParams, response: errorResponses } },
    async (req, reply) => {
      req.ctx.target = req.params.name;
      deps.authz.require(req, 'manage_roles');
      // Its tokens are revoked in the same apply, so a later role of this name never revives them.
      const result = await deps.replicator.propose(roleDelete({ name: req.params.name, at: deps.now().toISOString() }));
      if (!result.ok) throw refusalError(result);
      void reply.code(204);
    },
  );
};
