// The CofferSecret validator: the schema in ./schema.ts (types, defaults,
// patterns), its cross-field rules (the CEL rules of the CRD, checked again
// here so objects read from a file or an older CRD get the same answer), and
// the refreshInterval bounds CEL does not express. The reporting is the
// VaultCluster validator's (operator/api/validate.ts).
import { Value } from '@sinclair/typebox/value';
import {
  brokenAt, crossFieldIssues, schemaIssues, type ValidationIssue,
} from '../../operator/api/validate.js';
import { MAX_REFRESH_MS, MIN_REFRESH_MS, parseDuration } from './duration.js';
import { CofferSecretSchema, DATA_RULES, VAULT_REF_RULES } from './schema.js';
import type { CofferSecret } from './types.js';

export type { ValidationIssue };

export type CofferSecretValidationResult =
  | { ok: true; value: CofferSecret }
  | { ok: false; errors: ValidationIssue[] };

/**
 * Validates an object (as read from the API server or a YAML file) and returns
 * a copy with every default applied, or the list of problems. The input is
 * never modified.
 */
export function validateCofferSecret(obj: unknown): CofferSecretValidationResult {
  const value: unknown = Value.Default(CofferSecretSchema, structuredClone(obj));
  const errors = schemaIssues(CofferSecretSchema, value);
  const spec = (value as { spec?: Record<string, unknown> } | null)?.spec;
  if (typeof spec === 'object' && spec !== null) {
    const vaultRef = spec['vaultRef'];
    if (!brokenAt(errors, 'spec.vaultRef') && typeof vaultRef === 'object' && vaultRef !== null) {
      errors.push(...crossFieldIssues(VAULT_REF_RULES, vaultRef as CofferSecret['spec']['vaultRef']));
    }
    const data = spec['data'];
    if (!brokenAt(errors, 'spec.data') && Array.isArray(data)) {
      errors.push(...crossFieldIssues(DATA_RULES, data as CofferSecret['spec']['data']));
    }
    const interval = spec['refreshInterval'];
    if (!brokenAt(errors, 'spec.refreshInterval') && typeof interval === 'string') {
      const ms = parseDuration(interval);
      if (ms === undefined) errors.push({ path: 'spec.refreshInterval', message: 'must be a duration such as 30s, 5m or 1h' });
      else if (ms < MIN_REFRESH_MS || ms > MAX_REFRESH_MS) {
        errors.push({ path: 'spec.refreshInterval', message: 'must be between 10s and 24h' });
      }
    }
  }
  return errors.length === 0 ? { ok: true, value: value as CofferSecret } : { ok: false, errors };
}

/** spec.refreshInterval in milliseconds (of a validated object). */
export function refreshIntervalMs(cs: CofferSecret): number {
  return parseDuration(cs.spec.refreshInterval) ?? 5 * 60_000;
}
