// `coffer server --dev`: a single local node for trying Coffer. Keys it needs
// are generated once into the data folder under DEV-ONLY names; never use this
// mode for real secrets.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generateToken, tokenSha256 } from '../auth/tokens.js';

export const DEV_MASTER_KEY_FILE = 'DEV-ONLY-local-master-key.b64';
export const DEV_TOKEN_FILE = 'DEV-ONLY-bootstrap-token';
export const DEV_CLUSTER_KEY_FILE = 'DEV-ONLY-cluster-key.b64';

function readOrCreate(file: string, make: () => string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    fs.writeFileSync(file, make() + '\n', { mode: 0o600, flag: 'wx' });
    return fs.readFileSync(file, 'utf8').trim();
  }
}

/** Fills in dev defaults for every variable the user did not set; returns the bootstrap token to print. */
export function applyDevDefaults(env: NodeJS.ProcessEnv): { token: string; dataDir: string } {
  const dataDir = env.VAULT_DATA_DIR ?? './data';
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  env.VAULT_DATA_DIR = dataDir;
  env.VAULT_API_ADDR ??= '127.0.0.1:8200';
  env.VAULT_RAFT_ADDR ??= '127.0.0.1:8201';
  env.VAULT_NODE_ID ??= 'dev';
  env.VAULT_READ_ALLOWLIST ??= '127.0.0.1';
  env.VAULT_KMS_MODE ??= 'local';
  if (env.VAULT_KMS_MODE === 'local') {
    env.VAULT_LOCAL_MASTER_KEY ??= readOrCreate(path.join(dataDir, DEV_MASTER_KEY_FILE), () => randomBytes(32).toString('base64'));
  }
  env.VAULT_BOOTSTRAP_TOKEN ??= readOrCreate(path.join(dataDir, DEV_TOKEN_FILE), generateToken);
  // Kept beside the master key so a dev cluster's nodes share it across restarts.
  env.VAULT_CLUSTER_KEY ??= readOrCreate(path.join(dataDir, DEV_CLUSTER_KEY_FILE), () => randomBytes(32).toString('base64'));
  return { token: env.VAULT_BOOTSTRAP_TOKEN, dataDir };
}

/** What became of the bootstrap token in the DEV-ONLY file, as the node's applied state says. */
export type BootstrapTokenState =
  | { state: 'usable' }
  | { state: 'revoked'; at: string }
  | { state: 'expired'; at: string }
  | { state: 'replaced' } // bootstrap-admin exists with another value
  | { state: 'unknown' }; // not applied here yet (a follower catching up), or state.db unreadable

/**
 * Reads bootstrap-admin from `<dataDir>/state.db` (read-only; WAL mode makes
 * that safe beside the running node), so a banner never presents a revoked or
 * expired token as usable. better-sqlite3 is loaded only here: a client
 * command must not pay for it.
 */
export async function bootstrapTokenState(dataDir: string, token: string, now = new Date()): Promise<BootstrapTokenState> {
  const file = path.join(dataDir, 'state.db');
  if (!fs.existsSync(file)) return { state: 'unknown' };
  try {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare('SELECT token_sha256, expires_at, revoked_at FROM tokens WHERE name = ?').get('bootstrap-admin') as
        | { token_sha256: Uint8Array; expires_at: string | null; revoked_at: string | null }
        | undefined;
      if (row === undefined) return { state: 'unknown' };
      if (!Buffer.from(row.token_sha256).equals(Buffer.from(tokenSha256(token)))) return { state: 'replaced' };
      if (row.revoked_at !== null) return { state: 'revoked', at: row.revoked_at };
      if (row.expires_at !== null && Date.parse(row.expires_at) <= now.getTime()) return { state: 'expired', at: row.expires_at };
      return { state: 'usable' };
    } finally {
      db.close();
    }
  } catch {
    return { state: 'unknown' };
  }
}

/**
 * The banner's token lines: the token itself only while it works; otherwise
 * what happened to it and what to use instead.
 */
export function bootstrapTokenLines(tokenFile: string, token: string, state: BootstrapTokenState): string {
  switch (state.state) {
    case 'revoked':
    case 'expired':
      return (
        `  The bootstrap token in ${tokenFile} was ${state.state} at ${state.at}: it no longer works.\n` +
        `  Use your own token: coffer login (or set COFFER_TOKEN).\n`
      );
    case 'replaced':
      return (
        `  bootstrap-admin exists with another value than the token in ${tokenFile}: that one does not work.\n` +
        `  Use your own token: coffer login (or set COFFER_TOKEN).\n`
      );
    default:
      return (
        `  Bootstrap token (role admin), also in ${tokenFile}:\n\n` +
        `    export COFFER_TOKEN=${token}\n` +
        `    # or: coffer login < ${tokenFile}\n`
      );
  }
}
