// Checks a saved state image before it is proposed for restore, so a bad
// upload is refused at the edge instead of stopping every node at apply time.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { STATE_SCHEMA_VERSION } from './schema.js';

const REQUIRED: Record<string, string[]> = {
  secrets: ['name', 'current_version', 'created_at', 'updated_at'],
  secret_versions: ['name', 'version', 'ciphertext', 'nonce', 'wrapped_dek', 'kms_key_id', 'wrapped_rotation_at', 'created_at', 'created_by'],
  roles: ['name', 'rules', 'builtin'],
  tokens: ['name', 'token_sha256', 'role', 'created_at', 'expires_at', 'revoked_at'],
  kms_state: ['key', 'value'],
  applied: ['schema_version'],
};

/** Returns null when the image is a state.db this release can restore, else the reason it is not. */
export function imageProblem(image: Uint8Array): string | null {
  if (image.byteLength < 100 || Buffer.from(image.subarray(0, 16)).toString('latin1') !== 'SQLite format 3\0') {
    return 'not a SQLite database';
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-image-'));
  const file = path.join(dir, 'image.db');
  try {
    fs.writeFileSync(file, image, { mode: 0o600 });
    const db = new Database(file, { readonly: true });
    try {
      if (db.pragma('integrity_check', { simple: true }) !== 'ok') return 'the database fails its integrity check';
      for (const [table, cols] of Object.entries(REQUIRED)) {
        const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
        const missing = cols.filter((c) => !have.has(c));
        if (have.size === 0) return `table ${table} is missing`;
        if (missing.length > 0) return `table ${table} lacks ${missing.join(', ')}`;
      }
      const version = db.prepare('SELECT schema_version FROM applied WHERE id = 1').pluck().get() as number | undefined;
      if (version === undefined || version > STATE_SCHEMA_VERSION) return `schema version ${version ?? 'unknown'} is not supported`;
      return null;
    } finally {
      db.close();
    }
  } catch {
    return 'not a readable SQLite database';
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
