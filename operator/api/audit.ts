// spec.audit: what the schema cannot check by itself (the retention's range,
// the cap against the volume) and the values the vault container gets
// (VAULT_AUDIT_RETENTION, VAULT_AUDIT_MAX_BYTES in plain bytes,
// VAULT_AUDIT_STDOUT). Shared by the validator (operator/api/validate.ts) and
// the StatefulSet builder (operator/manifests/build.ts), so what is accepted
// is exactly what is rendered.
//
// The cap is checked against spec.storage.size here, in the operator, not as
// CEL in the CRD: comparing two quantities needs CEL's quantity library,
// which not every Kubernetes version the chart supports (>= 1.29) has. A
// refused cap is reported like every other invalid spec (Degraded,
// reason InvalidSpec, the path and the reason in the message; nothing is
// applied until it is fixed).
import type { ValidationIssue } from './validate.js';

/** `<count><unit>`, unit s, m, h or d (as VAULT_AUDIT_RETENTION takes it). */
export const AUDIT_RETENTION_PATTERN = '^[0-9]{1,7}(s|m|h|d)$';
const UNIT_SECS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };
/** Shortest retention: below an hour the log barely covers an incident's first questions. */
export const MIN_AUDIT_RETENTION_SECS = 3_600;
/** Longest retention: ten years. */
export const MAX_AUDIT_RETENTION_SECS = 3_650 * 86_400;

const MI = 1024n * 1024n;
/** Smallest cap a node can work with: a few thousand records and SQLite's own pages. */
export const MIN_AUDIT_MAX_BYTES = MI;

/** The audit settings as validated (maxBytes may be absent: a quarter of the volume). */
export interface AuditSettings {
  retention: string;
  maxBytes?: string | number;
  stdout: boolean;
}

/** Seconds of a retention such as `30d`, or undefined when it is not one. */
export function retentionSecs(s: string): number | undefined {
  const m = /^([0-9]{1,7})(s|m|h|d)$/.exec(s);
  return m ? Number(m[1]) * UNIT_SECS[m[2]!]! : undefined;
}

const SUFFIX: Record<string, [bigint, bigint]> = {
  '': [1n, 1n],
  n: [1n, 1_000_000_000n], u: [1n, 1_000_000n], m: [1n, 1_000n],
  k: [1_000n, 1n], M: [1_000_000n, 1n], G: [10n ** 9n, 1n], T: [10n ** 12n, 1n], P: [10n ** 15n, 1n], E: [10n ** 18n, 1n],
  Ki: [1n << 10n, 1n], Mi: [1n << 20n, 1n], Gi: [1n << 30n, 1n], Ti: [1n << 40n, 1n], Pi: [1n << 50n, 1n], Ei: [1n << 60n, 1n],
};

/**
 * A Kubernetes quantity (`256Mi`, `1G`, `1.5Gi`, `2e6`, or a plain integer)
 * in bytes, rounded up like resource.Quantity.Value(); undefined when the
 * text is not a quantity or its exponent is absurd.
 */
export function quantityBytes(q: string | number): bigint | undefined {
  if (typeof q === 'number') return Number.isSafeInteger(q) ? BigInt(q) : undefined;
  const m = /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?[0-9]+))?$/.exec(q);
  if (!m) return undefined;
  const [, sign, digits, suffix, exp] = m;
  const [int, frac = ''] = digits!.split('.');
  let num = BigInt(`${int || '0'}${frac}`);
  let den = 10n ** BigInt(frac.length);
  if (exp !== undefined) {
    const e = Number(exp);
    if (Math.abs(e) > 30) return undefined;
    if (e >= 0) num *= 10n ** BigInt(e);
    else den *= 10n ** BigInt(-e);
  } else {
    const [mul, div] = SUFFIX[suffix ?? '']!;
    num *= mul;
    den *= div;
  }
  const bytes = (num + den - 1n) / den;
  return sign === '-' ? -bytes : bytes;
}

/** `268435456` as `256Mi` when it is a whole number of Ki/Mi/Gi, else plain bytes. */
export function formatBytes(n: bigint): string {
  for (const [unit, size] of [['Gi', 1n << 30n], ['Mi', 1n << 20n], ['Ki', 1n << 10n]] as const) {
    if (n >= size && n % size === 0n) return `${n / size}${unit}`;
  }
  return `${n} bytes`;
}

/**
 * The cap on audit.db the node gets: spec.audit.maxBytes, or a quarter of
 * spec.storage.size when it is absent (256Mi on the default 1Gi volume, the
 * server's own default for a volume of that size). Undefined when either
 * quantity does not parse (the schema reports that).
 */
export function auditMaxBytes(audit: AuditSettings, storageSize: string): bigint | undefined {
  if (audit.maxBytes !== undefined) return quantityBytes(audit.maxBytes);
  const size = quantityBytes(storageSize);
  return size === undefined ? undefined : size / 4n;
}

/** What is wrong with a (schema-valid) spec.audit, given the volume size. */
export function auditIssues(audit: AuditSettings, storageSize: string): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const secs = retentionSecs(audit.retention);
  if (secs !== undefined && secs < MIN_AUDIT_RETENTION_SECS) {
    issues.push({ path: 'spec.audit.retention', message: `${audit.retention} is shorter than the 1h minimum` });
  } else if (secs !== undefined && secs > MAX_AUDIT_RETENTION_SECS) {
    issues.push({ path: 'spec.audit.retention', message: `${audit.retention} is longer than the 3650d maximum` });
  }
  const size = quantityBytes(storageSize);
  const cap = auditMaxBytes(audit, storageSize);
  // The schema's pattern lets through exponents no volume has (1e99); say so rather than render nothing.
  if (size === undefined) return [...issues, { path: 'spec.storage.size', message: `${storageSize} is not a volume size (the exponent is out of range)` }];
  if (cap === undefined) return [...issues, { path: 'spec.audit.maxBytes', message: `${audit.maxBytes} is not a size (the exponent is out of range)` }];
  const given = audit.maxBytes !== undefined;
  const shown = given ? `${audit.maxBytes} (${cap} bytes)` : `${formatBytes(cap)} (a quarter of storage.size ${storageSize})`;
  if (cap < MIN_AUDIT_MAX_BYTES) {
    issues.push({
      path: given ? 'spec.audit.maxBytes' : 'spec.storage.size',
      message: `the audit cap ${shown} is below the 1Mi minimum a node needs to keep writing audit records${given ? '' : '; set audit.maxBytes or a larger storage.size'}`,
    });
  } else if (cap >= size) {
    issues.push({
      path: 'spec.audit.maxBytes',
      message: `${shown} must be smaller than storage.size ${storageSize} (${size} bytes): audit.db shares the data volume with the Raft log and snapshots, so the volume would fill before the cap is reached; a quarter of the volume is a good start`,
    });
  }
  return issues;
}

/** The vault container's audit environment (DESIGN §3), for a valid spec. */
export function auditEnv(audit: AuditSettings, storageSize: string): { name: string; value: string }[] {
  const cap = auditMaxBytes(audit, storageSize);
  if (cap === undefined) throw new Error('auditEnv: spec.audit.maxBytes or spec.storage.size is not a quantity (validate first)');
  return [
    { name: 'VAULT_AUDIT_RETENTION', value: audit.retention },
    { name: 'VAULT_AUDIT_MAX_BYTES', value: String(cap) },
    { name: 'VAULT_AUDIT_STDOUT', value: String(audit.stdout) },
  ];
}
