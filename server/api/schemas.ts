// Shared JSON-schema fragments. Bodies reject unknown fields and wrong types;
// query strings arrive as text, so numbers in them are matched as digit strings.
import { ALL_ACTIONS, MAX_PATH_LENGTH, MAX_RULE_PATHS, PATH_PATTERN } from '../rbac/rules.js';
import { IDENT_PATTERN, SECRET_NAME_MAX, SECRET_NAME_PATTERN } from '../store/names.js';
import { errorSchema } from './errors.js';

export const secretNameParams = {
  type: 'object',
  properties: { '*': { type: 'string', minLength: 1, maxLength: SECRET_NAME_MAX, pattern: SECRET_NAME_PATTERN } },
  required: ['*'],
} as const;

export const ROTATE_SUFFIX = ':rotate';
export const ROTATE_PATTERN =
  SECRET_NAME_PATTERN.replace('(?:/|$)', `(?:/|${ROTATE_SUFFIX}$)`).replace(/\$$/, `${ROTATE_SUFFIX}$`);

export const rotateParams = {
  type: 'object',
  properties: {
    '*': { type: 'string', minLength: 1 + ROTATE_SUFFIX.length, maxLength: SECRET_NAME_MAX + ROTATE_SUFFIX.length, pattern: ROTATE_PATTERN },
  },
  required: ['*'],
} as const;

export const identParams = {
  type: 'object',
  properties: { name: { type: 'string', pattern: IDENT_PATTERN } },
  required: ['name'],
} as const;

export const positiveIntText = { type: 'string', pattern: '^[1-9][0-9]{0,9}$' } as const;
export const nonNegativeIntText = { type: 'string', pattern: '^(0|[1-9][0-9]{0,15})$' } as const;

/** Error responses share one shape on every route. */
export const errorResponses = {
  '4xx': errorSchema,
  '5xx': errorSchema,
} as const;

/** One rule of a role, as written (PUT /v1/roles) and as shown (roles, /v1/auth/self). */
export const ruleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['paths', 'actions'],
  properties: {
    paths: { type: 'array', maxItems: MAX_RULE_PATHS, items: { type: 'string', minLength: 1, maxLength: MAX_PATH_LENGTH, pattern: PATH_PATTERN } },
    actions: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', enum: [...ALL_ACTIONS] } },
  },
} as const;

/** A token's metadata as every route shows it: never the digest, never the token. */
export const tokenFields = {
  name: { type: 'string' },
  role: { type: 'string' },
  created_at: { type: 'string' },
  expires_at: { type: ['string', 'null'] },
} as const;
