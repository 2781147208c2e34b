// Applying state.restore: the saved image's rows replace the current ones,
// inside the apply transaction. From version 2 on, every revocation in the
// current state survives the restore (DESIGN §4: a revoked token stays revoked).
import type Database from 'better-sqlite3';
import { readImageRows, RESTORED_TABLES, restoredColumns } from './image.js';

interface CurrentToken {
  name: string;
  token_sha256: Uint8Array;
  role: string;
  revoked_at: string | null;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/**
 * For each token of the image: the revocation time it must keep, or null.
 * A token revoked now (same name or same digest) stays revoked; a token whose
 * role is gone now was cut off by that deletion, so it is revoked at `at`
 * before the image brings the role back.
 */
function survivingRevocations(db: Database.Database, at: string): (token: Record<string, unknown>) => string | null {
  const current = db.prepare('SELECT name, token_sha256, role, revoked_at FROM tokens').all() as CurrentToken[];
  const roles = new Set(db.prepare('SELECT name FROM roles').pluck().all() as string[]);
  const byName = new Map(current.map((t) => [t.name, t]));
  const revokedDigests = new Map(current.filter((t) => t.revoked_at !== null).map((t) => [hex(t.token_sha256), t.revoked_at!]));
  return (token) => {
    const now = byName.get(token.name as string);
    if (now?.revoked_at) return now.revoked_at;
    const byDigest = revokedDigests.get(hex(token.token_sha256 as Uint8Array));
    if (byDigest) return byDigest;
    if (now && !roles.has(now.role)) return at;
    return null;
  };
}

/**
 * Replaces the restored tables with the image's rows (the image passed
 * imageProblem). The built-in admin role stays this release's own.
 * `keepRevocationsAt` (state.restore v2) is the command's time, used for
 * tokens revoked by a role deletion that left no revocation time.
 */
export function applyRestore(db: Database.Database, image: Uint8Array, keepRevocationsAt: string | null): void {
  const rows = readImageRows(image);
  if (keepRevocationsAt !== null) {
    const kept = survivingRevocations(db, keepRevocationsAt);
    for (const token of rows.tokens) {
      if (token.revoked_at !== null) continue; // revoked in the image already
      const revokedAt = kept(token);
      if (revokedAt !== null) token.revoked_at = revokedAt;
    }
  }
  for (const table of RESTORED_TABLES) {
    const builtinKept = table === 'roles';
    db.prepare(builtinKept ? 'DELETE FROM roles WHERE builtin = 0' : `DELETE FROM ${table}`).run();
    const cols = restoredColumns(table);
    const insert = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => '@' + c).join(', ')})`);
    for (const r of rows[table]) {
      if (builtinKept && r.builtin === 1) continue;
      insert.run(r);
    }
  }
}
