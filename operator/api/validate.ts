// The VaultCluster validator: the schema in ./schema.ts (types, defaults,
// patterns), its cross-field rules, and the overlay range check CEL cannot
// express. The operator validates every object it reads with it, and
// `coffer operator render` every file.
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import { auditIssues } from './audit.js';
import { overlayCidrProblem } from './overlay.js';
import { KMS_RULES, SPEC_RULES, VaultClusterSchema, type CrossFieldRule } from './schema.js';
import type { VaultCluster } from './types.js';

/** One problem with an object: a dotted path (`spec.kms.keyId`) and what is wrong. */
export interface ValidationIssue {
  path: string;
  message: string;
}

export type ValidationResult =
  | { ok: true; value: VaultCluster }
  | { ok: false; errors: ValidationIssue[] };

export class VaultClusterValidationError extends Error {
  override readonly name = 'VaultClusterValidationError';
  constructor(readonly issues: readonly ValidationIssue[]) {
    super(`invalid VaultCluster:\n${formatIssues(issues)}`);
  }
}

// RFC 3339 timestamps, as metav1.Time serializes them.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => RFC3339.test(v) && !Number.isNaN(Date.parse(v)));
}

/**
 * Validates an object (as read from the API server or a YAML file) against
 * the VaultCluster schema and returns a copy with every default applied, or
 * the list of problems. The input is never modified.
 */
export function validateVaultCluster(obj: unknown): ValidationResult {
  const value: unknown = Value.Default(VaultClusterSchema, structuredClone(obj));
  const errors = schemaIssues(VaultClusterSchema, value);
  // Cross-field rules, once the fields they read are themselves well-formed.
  const broken = (...prefixes: string[]) => brokenAt(errors, ...prefixes);
  const failed = <T>(rules: readonly CrossFieldRule<T>[], self: T) => errors.push(...crossFieldIssues(rules, self));
  const specValue = (value as { spec?: unknown } | null)?.spec;
  const kms = (specValue as { kms?: unknown } | undefined)?.kms;
  if (!broken('spec.kms') && typeof kms === 'object' && kms !== null) failed(KMS_RULES, kms as VaultCluster['spec']['kms']);
  if (!broken('spec.trustProxy', 'spec.trustedProxies') && typeof specValue === 'object' && specValue !== null) {
    failed(SPEC_RULES, specValue as VaultCluster['spec']);
  }
  // The overlay range must hold every replica (operator-side only: CEL has no
  // CIDR arithmetic in the Kubernetes versions the CRD supports).
  const spec = (value as { spec?: { replicas?: unknown; wireguard?: { enabled?: unknown; cidr?: unknown } } } | null)?.spec;
  const wgClean = !errors.some((e) => e.path === '(root)' || e.path === 'spec' || e.path === 'spec.replicas' || e.path.startsWith('spec.wireguard'));
  if (wgClean && spec?.wireguard?.enabled === true && typeof spec.wireguard.cidr === 'string' && typeof spec.replicas === 'number') {
    const problem = overlayCidrProblem(spec.wireguard.cidr, spec.replicas);
    if (problem) errors.push({ path: 'spec.wireguard.cidr', message: problem });
  }
  // spec.audit: the retention's range and the cap against the volume (./audit.ts).
  const typed = specValue as Partial<VaultCluster['spec']> | undefined;
  if (!broken('spec.audit', 'spec.storage') && typed?.audit && typed.storage) errors.push(...auditIssues(typed.audit, typed.storage.size));
  return errors.length === 0 ? { ok: true, value: value as VaultCluster } : { ok: false, errors };
}

/**
 * The schema's problems with an (already defaulted) value, one per path, a
 * child's problem dropped when its parent already failed. Shared with the
 * CofferSecret validator (sync/api/validate.ts).
 */
export function schemaIssues(schema: TSchema, value: unknown): ValidationIssue[] {
  const errors: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const err of Value.Errors(schema, value)) {
    const path = formatPath(err.path);
    if (seen.has(path)) continue;
    // A child error is noise when its parent already failed.
    if ([...seen].some((p) => p !== '' && (path.startsWith(p + '.') || path.startsWith(p + '[')))) continue;
    seen.add(path);
    errors.push({ path: path || '(root)', message: describe(err) });
  }
  return errors;
}

/** Whether the object, its spec, or a field at or below one of the prefixes already failed. */
export function brokenAt(errors: readonly ValidationIssue[], ...prefixes: string[]): boolean {
  return errors.some((e) => e.path === '(root)' || e.path === 'spec' || prefixes.some((p) => e.path === p || e.path.startsWith(`${p}.`) || e.path.startsWith(`${p}[`)));
}

/** The cross-field rules `self` breaks, reported at `at` + `fieldPath`. */
export function crossFieldIssues<T>(rules: readonly CrossFieldRule<T>[], self: T): ValidationIssue[] {
  return rules.filter((rule) => !rule.check(self)).map((rule) => ({ path: rule.at + (rule.fieldPath ?? ''), message: rule.message }));
}

/** Like validateVaultCluster, but throws VaultClusterValidationError. */
export function parseVaultCluster(obj: unknown): VaultCluster {
  const result = validateVaultCluster(obj);
  if (!result.ok) throw new VaultClusterValidationError(result.errors);
  return result.value;
}

/** One line per issue: `  spec.replicas: must be 1, 3, 5 or 7`. */
export function formatIssues(issues: readonly ValidationIssue[]): string {
  return issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
}

/** JSON pointer (`/spec/readAllowlist/0`) to a dotted path (`spec.readAllowlist[0]`). */
function formatPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function describe(err: ValueError): string {
  if (err.type === ValueErrorType.ObjectRequiredProperty) return 'is required';
  if (err.type === ValueErrorType.ObjectAdditionalProperties) return 'unknown field';
  const friendly = (err.schema as { errorMessage?: unknown }).errorMessage;
  if (typeof friendly === 'string') return friendly;
  return err.message.charAt(0).toLowerCase() + err.message.slice(1);
}
