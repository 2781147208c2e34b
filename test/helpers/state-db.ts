// Read-only views of a node's state.db (WAL mode: safe to open while the node
// runs), for tests that check what is stored rather than what the API says.
import Database from 'better-sqlite3';
import path from 'node:path';

/** One row of secret_versions (the columns tests look at). */
export interface VersionRow {
  name: string;
  version: number;
  ciphertext: Buffer;
  nonce: Buffer;
  wrapped_dek: Buffer;
  kms_key_id: string;
  wrapped_rotation_at: string | null;
}

const COLUMNS = 'name, version, ciphertext, nonce, wrapped_dek, kms_key_id, wrapped_rotation_at';

/** Opens `<dataDir>/state.db` read-only for the duration of fn. */
export function withStateDb<T>(dataDir: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path.join(dataDir, 'state.db'), { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Every stored secret version, ordered by name, then version. */
export function versionRows(dataDir: string): VersionRow[] {
  return withStateDb(dataDir, (db) => db.prepare(`SELECT ${COLUMNS} FROM secret_versions ORDER BY name, version`).all() as VersionRow[]);
}

/** One stored secret version, or undefined. */
export function versionRow(dataDir: string, name: string, version: number): VersionRow | undefined {
  return withStateDb(dataDir, (db) => db.prepare(`SELECT ${COLUMNS} FROM secret_versions WHERE name = ? AND version = ?`).get(name, version) as VersionRow | undefined);
}

/** Number of stored secret versions (live or not). */
export function versionCount(dataDir: string): number {
  return withStateDb(dataDir, (db) => (db.prepare('SELECT count(*) AS n FROM secret_versions').get() as { n: number }).n);
}
