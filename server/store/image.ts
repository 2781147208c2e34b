// A saved state image (state.db as GET /v1/admin/snapshot writes it): the
// whole-image check run before a restore is proposed and again by every node
// when it applies one, and the reading of its rows for the restore itself.
//
// The check is a pure function of the bytes: the schema exactly as
// initStateSchema creates it, PRAGMA integrity_check, and every row of the
// restored tables decodable (types, names, rule lists, blob sizes, versions
// 1..current_version of each secret). So an image either restores completely
// or is refused, the same way on every node.
import Database from 'better-sqlite3';
import { roleRulesProblem } from '../rbac/rules.js';
import {
  AEAD_TAG_BYTES,
  bytes,
  type Check,
  ident,
  isoTime,
  KMS_STATE_KEY_RE,
  MAX_CIPHERTEXT_BYTES,
  MAX_KMS_KEY_ID,
  MAX_KMS_STATE_VALUE,
  MAX_WRAPPED_DEK_BYTES,
  NONCE_BYTES,
  nullable,
  secretName,
  SHA256_BYTES,
  text,
} from './commands/fields.js';
import { initStateSchema, STATE_SCHEMA_VERSION } from './schema.js';

/** Tables a restore replaces; raft_peers and applied describe this cluster, not the saved state. */
export const RESTORED_TABLES = ['secrets', 'secret_versions', 'roles', 'tokens', 'kms_state'] as const;
export type RestoredTable = (typeof RESTORED_TABLES)[number];

/** Integers as SQLite stores them (read with safeIntegers): a bigint, within the safe range. */
const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (v) =>
    typeof v === 'bigint' && v >= BigInt(min) && v <= BigInt(max) ? null : `must be an integer ${min}..${max}`;

const rulesJson: Check = (v) => {
  if (typeof v !== 'string') return 'must be text';
  try {
    return roleRulesProblem(JSON.parse(v));
  } catch {
    return 'must be JSON';
  }
};

const kmsStateKey: Check = (v) => (typeof v === 'string' && KMS_STATE_KEY_RE.test(v) ? null : 'must be a valid key');
const kmsStateValue: Check = (v) => (typeof v === 'string' && v.length <= MAX_KMS_STATE_VALUE ? null : 'must be short text');

/** Every column of every restored table and what it must hold. */
const COLUMNS: Readonly<Record<RestoredTable, Readonly<Record<string, Check>>>> = {
  secrets: { name: secretName, current_version: integer(1), created_at: isoTime, updated_at: isoTime },
  secret_versions: {
    name: secretName,
    version: integer(1),
    ciphertext: bytes(AEAD_TAG_BYTES, MAX_CIPHERTEXT_BYTES),
    nonce: bytes(NONCE_BYTES, NONCE_BYTES),
    wrapped_dek: bytes(1, MAX_WRAPPED_DEK_BYTES),
    kms_key_id: text(1, MAX_KMS_KEY_ID),
    wrapped_rotation_at: nullable(isoTime),
    created_at: isoTime,
    created_by: ident,
  },
  roles: { name: ident, rules: rulesJson, builtin: integer(0, 1) },
  tokens: {
    name: ident,
    token_sha256: bytes(SHA256_BYTES, SHA256_BYTES),
    role: ident,
    created_at: isoTime,
    expires_at: nullable(isoTime),
    revoked_at: nullable(isoTime),
  },
  kms_state: { key: kmsStateKey, value: kmsStateValue },
};

export function restoredColumns(table: RestoredTable): string[] {
  return Object.keys(COLUMNS[table]);
}

type SchemaEntry = { type: string; name: string; tbl_name: string; sql: string | null };

/** sqlite_master of a state.db, comparable across whitespace differences in the statements. */
function schemaOf(db: Database.Database): string[] {
  return (db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master').all() as SchemaEntry[])
    .map((e) => JSON.stringify([e.type, e.name, e.tbl_name, e.sql === null ? null : e.sql.replace(/\s+/g, ' ').trim()]))
    .sort();
}

let expectedSchema: string[] | null = null;
function expected(): string[] {
  if (expectedSchema === null) {
    const db = new Database(':memory:');
    try {
      initStateSchema(db);
      expectedSchema = schemaOf(db);
    } finally {
      db.close();
    }
  }
  return expectedSchema;
}

/** Opens an image in memory, read-only (no file is written). Throws if SQLite cannot open it. */
export function openImage(image: Uint8Array): Database.Database {
  const db = new Database(Buffer.from(image.buffer, image.byteOffset, image.byteLength), { readonly: true });
  // Nothing in an image may run code: no views or triggers are allowed below, and none run in the meantime.
  db.pragma('trusted_schema = OFF');
  return db;
}

function check(db: Database.Database): string | null {
  const have = schemaOf(db);
  const want = expected();
  if (have.length !== want.length || have.some((e, i) => e !== want[i])) {
    const extra = have.filter((e) => !want.includes(e)).map((e) => (JSON.parse(e) as string[])[1]);
    const missing = want.filter((e) => !have.includes(e)).map((e) => (JSON.parse(e) as string[])[1]);
    const names = [...new Set([...extra, ...missing])].slice(0, 5).map((n) => String(n).slice(0, 64));
    return `the schema is not this release's (differs at ${names.join(', ')})`;
  }
  const integrity = db.pragma('integrity_check', { simple: true });
  if (integrity !== 'ok') return 'the database fails its integrity check';
  const applied = db.prepare('SELECT id, schema_version FROM applied').safeIntegers(true).all() as { id: bigint; schema_version: unknown }[];
  if (applied.length !== 1 || integer(1, STATE_SCHEMA_VERSION)(applied[0]!.schema_version) !== null) {
    return 'the schema version is not supported';
  }
  for (const table of RESTORED_TABLES) {
    const cols = COLUMNS[table];
    let n = 0;
    for (const row of db.prepare(`SELECT ${Object.keys(cols).join(', ')} FROM ${table}`).safeIntegers(true).iterate() as Iterable<Record<string, unknown>>) {
      n++;
      for (const [col, ok] of Object.entries(cols)) {
        const problem = ok(row[col]);
        if (problem) return `${table} row ${n}: ${col} ${problem}`;
      }
    }
  }
  // Versions of each secret are exactly 1..current_version (none missing, none beyond, none orphaned).
  const stray = db
    .prepare('SELECT count(*) FROM secret_versions v LEFT JOIN secrets s ON s.name = v.name WHERE s.name IS NULL OR v.version > s.current_version')
    .pluck()
    .get() as number;
  if (stray > 0) return 'secret_versions holds versions beyond their secret\'s current_version or without a secret';
  const expectedVersions = db.prepare('SELECT coalesce(sum(current_version), 0) FROM secrets').pluck().get() as number;
  const versions = db.prepare('SELECT count(*) FROM secret_versions').pluck().get() as number;
  if (versions !== expectedVersions) return 'some secret lacks versions below its current_version';
  // The built-in admin role is the only built-in one, and it is there.
  const builtins = db.prepare('SELECT name FROM roles WHERE builtin = 1').pluck().all() as string[];
  if (builtins.length !== 1 || builtins[0] !== 'admin') return 'roles: admin must be the one built-in role';
  return null;
}

/** Returns null when the image is a state.db this release can restore completely, else the reason it is not. */
export function imageProblem(image: Uint8Array): string | null {
  if (image.byteLength < 100 || Buffer.from(image.buffer, image.byteOffset, 16).toString('latin1') !== 'SQLite format 3\0') {
    return 'not a SQLite database';
  }
  let db: Database.Database;
  try {
    db = openImage(image);
  } catch {
    return 'not a readable SQLite database';
  }
  try {
    return check(db);
  } catch {
    // A malformed schema or page surfaces as an exception on the first statement that meets it.
    return 'not a readable SQLite database';
  } finally {
    db.close();
  }
}

/** The rows of the restored tables, each with exactly the schema's columns (call only after imageProblem said null). */
export function readImageRows(image: Uint8Array): Record<RestoredTable, Record<string, unknown>[]> {
  const db = openImage(image);
  try {
    return Object.fromEntries(
      RESTORED_TABLES.map((t) => [t, db.prepare(`SELECT ${restoredColumns(t).join(', ')} FROM ${t}`).all() as Record<string, unknown>[]]),
    ) as Record<RestoredTable, Record<string, unknown>[]>;
  } finally {
    db.close();
  }
}
