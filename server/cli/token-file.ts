// Where a client command finds its token, and the login file `coffer login` keeps it in.
// Order: --token, COFFER_TOKEN, the login file, VAULT_BOOTSTRAP_TOKEN (set only inside
// server pods, so `kubectl exec vault-0 -c vault -- coffer cluster status` works).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileDurably } from '../storage/durable-files.js';

/** `$COFFER_TOKEN_FILE`, else `${XDG_CONFIG_HOME:-$HOME/.config}/coffer/token`. */
export function tokenFilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.COFFER_TOKEN_FILE) return path.resolve(env.COFFER_TOKEN_FILE);
  const config = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(config, 'coffer', 'token');
}

/** The token in the login file, if there is one (first line, trimmed). Warns once if others may read it. */
export function readTokenFile(file: string = tokenFilePath()): string | undefined {
  let text: string;
  try {
    const st = fs.statSync(file);
    if ((st.mode & 0o077) !== 0) {
      process.stderr.write(`coffer: warning: ${file} is readable by other users (chmod 600 it, or coffer login again)\n`);
    }
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const token = text.split('\n')[0]!.trim();
  return token || undefined;
}

/** Where the token of a client command comes from (named in messages, never the token itself). */
export type TokenSource = '--token' | 'COFFER_TOKEN' | 'login file' | 'VAULT_BOOTSTRAP_TOKEN' | 'none';

export function resolveToken(flagValue: string | undefined, env: NodeJS.ProcessEnv = process.env): { token: string | undefined; source: TokenSource } {
  if (flagValue) return { token: flagValue, source: '--token' };
  if (env.COFFER_TOKEN) return { token: env.COFFER_TOKEN, source: 'COFFER_TOKEN' };
  const fromFile = readTokenFile(tokenFilePath(env));
  if (fromFile) return { token: fromFile, source: 'login file' };
  if (env.VAULT_BOOTSTRAP_TOKEN) return { token: env.VAULT_BOOTSTRAP_TOKEN, source: 'VAULT_BOOTSTRAP_TOKEN' };
  return { token: undefined, source: 'none' };
}

/**
 * Writes the login file: 0600 from the first byte (created with that mode under a
 * unique temporary name, then renamed over the old file), in a folder created 0700.
 * The default folder (…/coffer) is tightened to 0700 if it exists; a folder named by
 * COFFER_TOKEN_FILE is created 0700 if missing and otherwise left as it is.
 */
export function writeTokenFile(token: string, env: NodeJS.ProcessEnv = process.env): string {
  const file = tokenFilePath(env);
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!env.COFFER_TOKEN_FILE) fs.chmodSync(dir, 0o700);
  writeFileDurably(file, token + '\n');
  return file;
}

/** Removes the login file; false if there was none. */
export function removeTokenFile(env: NodeJS.ProcessEnv = process.env): { file: string; removed: boolean } {
  const file = tokenFilePath(env);
  try {
    fs.unlinkSync(file);
    return { file, removed: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { file, removed: false };
    throw err;
  }
}
