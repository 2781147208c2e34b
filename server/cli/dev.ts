// `coffer server --dev`: a single local node for trying Coffer. Keys it needs
// are generated once into the data folder under DEV-ONLY names; never use this
// mode for real secrets.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { generateToken } from '../auth/tokens.js';

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
