// The audit export's variables (issue 16): VAULT_AUDIT_STDOUT, VAULT_AUDIT_FILE
// and VAULT_AUDIT_FILE_MAX_BYTES. What the export does with them:
// server/audit/export/.

/** How many rotated files a file sink keeps beside the live one: `<path>.1` … `<path>.5`. */
export const AUDIT_FILE_KEEP = 5;
export const AUDIT_FILE_DEFAULT_MAX_BYTES = 100 * 1024 * 1024;
/** Below this a file would rotate every few records. */
export const AUDIT_FILE_MIN_MAX_BYTES = 64 * 1024;

export interface AuditExportConfig {
  /** VAULT_AUDIT_STDOUT: each durable record as one `"coffer_audit":1` JSON line on stdout. */
  stdout: boolean;
  /** VAULT_AUDIT_FILE: the same lines appended to this file (rotated by size); null = off. */
  file: string | null;
  /** VAULT_AUDIT_FILE_MAX_BYTES: the file is rotated before it would grow past this. */
  fileMaxBytes: number;
}

type Env = Record<string, string | undefined>;

const BYTE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

/** `fail` builds the error for a malformed variable (config.ts passes its ConfigError). */
export function parseAuditExportConfig(env: Env, fail: (variable: string, problem: string) => Error): AuditExportConfig {
  const stdoutText = value(env, 'VAULT_AUDIT_STDOUT');
  let stdout = false;
  if (stdoutText !== undefined) {
    if (/^(true|1|yes)$/i.test(stdoutText)) stdout = true;
    else if (!/^(false|0|no)$/i.test(stdoutText)) throw fail('VAULT_AUDIT_STDOUT', `expected true or false, got ${JSON.stringify(stdoutText)}`);
  }
  const file = value(env, 'VAULT_AUDIT_FILE') ?? null;
  if (file !== null && file.endsWith('/')) throw fail('VAULT_AUDIT_FILE', `expected a file path, got a folder ${JSON.stringify(file)}`);
  let fileMaxBytes = AUDIT_FILE_DEFAULT_MAX_BYTES;
  const maxText = value(env, 'VAULT_AUDIT_FILE_MAX_BYTES');
  if (maxText !== undefined) {
    const m = /^(\d{1,15})(Ki|Mi|Gi)?$/.exec(maxText);
    const n = m ? Number(m[1]) * BYTE_UNITS[m[2] ?? '']! : NaN;
    if (!Number.isSafeInteger(n)) {
      throw fail('VAULT_AUDIT_FILE_MAX_BYTES', `expected bytes, optionally with Ki, Mi or Gi (e.g. 100Mi), got ${JSON.stringify(maxText)}`);
    }
    if (n < AUDIT_FILE_MIN_MAX_BYTES) throw fail('VAULT_AUDIT_FILE_MAX_BYTES', `must be at least 64Ki (${AUDIT_FILE_MIN_MAX_BYTES} bytes), got ${n}`);
    fileMaxBytes = n;
  }
  return { stdout, file, fileMaxBytes };
}

function value(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}
