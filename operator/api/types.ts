// Static types of the VaultCluster API and its runtime validator, both
// derived from the one schema in ./schema.ts.
import { FormatRegistry, type Static } from '@sinclair/typebox';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import {
  KMS_RULES,
  SPEC_RULES,
  VaultClusterSchema,
  type CrossFieldRule,
  type CONDITION_TYPES,
  type ConditionSchema,
  type KmsSchema,
  type ROLLOUT_PHASES,
  type ResourceRequirementsSchema,
  type RolloutStatusSchema,
  type VaultClusterSpecSchema,
  type VaultClusterStatusSchema,
  type WIREGUARD_ROTATION_STEPS,
  type WireguardSchema,
  type WireguardStatusSchema,
  type secretKeyRefSchema,
} from './schema.js';
import { overlayCidrProblem } from '../wireguard/addresses.js';

/** A VaultCluster after validation: every defaulted field is present. */
export type VaultCluster = Static<typeof VaultClusterSchema>;
export type VaultClusterSpec = Static<typeof VaultClusterSpecSchema>;
export type VaultClusterStatus = Static<typeof VaultClusterStatusSchema>;
export type KmsSpec = Static<typeof KmsSchema>;
export type SecretKeyRef = Static<ReturnType<typeof secretKeyRefSchema>>;
export type ResourceRequirements = Static<typeof ResourceRequirementsSchema>;
export type WireguardSpec = Static<typeof WireguardSchema>;
/** `status.wireguard`: key generation and the progress of a key rotation. */
export type WireguardStatus = Static<typeof WireguardStatusSchema>;
export type WireguardRotationStep = (typeof WIREGUARD_ROTATION_STEPS)[number];

/** `status.rollout.phase`. */
export type RolloutPhase = (typeof ROLLOUT_PHASES)[number];
/**
 * `status.rollout`: the rotation-flag rollout state machine persists itself
 * here so a restarted operator resumes where it stopped.
 */
export type RolloutStatus = Static<typeof RolloutStatusSchema>;
/** metav1.Condition. */
export type Condition = Static<typeof ConditionSchema>;
export type ConditionType = (typeof CONDITION_TYPES)[number];

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
  const errors: ValidationIssue[] = [];
  const seen = new Set<string>();
  for (const err of Value.Errors(VaultClusterSchema, value)) {
    const path = formatPath(err.path);
    if (seen.has(path)) continue;
    // A child error is noise when its parent already failed.
    if ([...seen].some((p) => p !== '' && (path.startsWith(p + '.') || path.startsWith(p + '[')))) continue;
    seen.add(path);
    errors.push({ path: path || '(root)', message: describe(err) });
  }
  // Cross-field rules, once the fields they read are themselves well-formed.
  const broken = (...prefixes: string[]) =>
    errors.some((e) => e.path === '(root)' || e.path === 'spec' || prefixes.some((p) => e.path === p || e.path.startsWith(`${p}.`) || e.path.startsWith(`${p}[`)));
  const failed = <T>(rules: readonly CrossFieldRule<T>[], self: T) => {
    for (const rule of rules) if (!rule.check(self)) errors.push({ path: rule.at + (rule.fieldPath ?? ''), message: rule.message });
  };
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
  return errors.length === 0 ? { ok: true, value: value as VaultCluster } : { ok: false, errors };
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
