// Shared JSON-schema fragments. Bodies reject unknown fields and wrong types;
// query strings arrive as text, so numbers in them are matched as digit strings.
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
