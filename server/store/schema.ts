// state.db schema (DESIGN §5). Created identically on every node, so seeding
// the built-in admin role here is deterministic and needs no command.
import type Database from 'better-sqlite3';
import { ADMIN_ROLE_RULES } from '../rbac/rules.js';

export const STATE_SCHEMA_VERSION = 1;

export function initStateSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS secrets (
      name TEXT PRIMARY KEY,
      current_version INTEGER NOT NULL,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS secret_versions (
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      ciphertext BLOB NOT NULL,
      nonce BLOB NOT NULL,
      wrapped_dek BLOB NOT NULL,
      kms_key_id TEXT NOT NULL,
      wrapped_rotation_at TEXT,
      created_at TEXT NOT NULL,
      created_by TEXT NOT NULL,
      PRIMARY KEY (name, version)
    );
    CREATE TABLE IF NOT EXISTS roles (
      name TEXT PRIMARY KEY,
      rules TEXT NOT NULL,
      builtin INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS tokens (
      name TEXT PRIMARY KEY,
      token_sha256 BLOB NOT NULL UNIQUE,
      role TEXT NOT NULL,
      created_at TEXT NOT NULL,
      expires_at TEXT,
      revoked_at TEXT
    );
    CREATE TABLE IF NOT EXISTS kms_state (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    );
    -- Raft addresses of members, kept with the state so snapshots carry them.
    CREATE TABLE IF NOT EXISTS raft_peers (
      id TEXT PRIMARY KEY,
      address TEXT NOT NULL
    );
    -- The members the cluster should have, when declared through the admin API
    -- (cluster.declare); the autopilot on the leader moves membership toward it.
    CREATE TABLE IF NOT EXISTS raft_declared (
      id TEXT PRIMARY KEY,
      address TEXT NOT NULL
    );
    -- The storage identity each member joined with (cluster.member): a member
    -- that answers with another one lost its data and is re-added by the autopilot.
    CREATE TABLE IF NOT EXISTS raft_member_data (
      id TEXT PRIMARY KEY,
      data_id TEXT NOT NULL
    );
    -- Where the state machine stands in the replicated log; updated in the same
    -- transaction as every applied command so the two never disagree.
    CREATE TABLE IF NOT EXISTS applied (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      log_index INTEGER NOT NULL,
      log_term INTEGER NOT NULL,
      schema_version INTEGER NOT NULL
    );
  `);
  db.prepare('INSERT OR IGNORE INTO applied (id, log_index, log_term, schema_version) VALUES (1, 0, 0, ?)').run(
    STATE_SCHEMA_VERSION,
  );
  db.prepare("INSERT OR IGNORE INTO roles (name, rules, builtin) VALUES ('admin', ?, 1)").run(
    JSON.stringify(ADMIN_ROLE_RULES),
  );
}
