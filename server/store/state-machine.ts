// The replicated state machine over state.db. `apply` is the only writer; it
// runs one command and advances the applied index in a single transaction, or,
// inside `batch`, shares one transaction with the other entries of the batch.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { decodeCommand, InvalidCommandError, invalidatedBy, type Command } from './commands.js';
import { applyRestore } from './restore.js';
import { applied, refused, type ApplyResult } from './results.js';
import { initStateSchema } from './schema.js';
import { WalCheckpointer } from './wal-checkpointer.js';

export const BOOTSTRAP_TOKEN_NAME = 'bootstrap-admin';

function openDb(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // The replicated log is the durable record; state.db is synced at checkpoints, before the log is compacted.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = OFF');
  initStateSchema(db);
  return db;
}

function prepare(db: Database.Database) {
  return {
      appliedGet: db.prepare('SELECT log_index, log_term FROM applied WHERE id = 1'),
      appliedSet: db.prepare('UPDATE applied SET log_index = ?, log_term = ? WHERE id = 1'),
      secretGet: db.prepare('SELECT current_version FROM secrets WHERE name = ?'),
      secretInsert: db.prepare('INSERT INTO secrets (name, current_version, created_at, updated_at) VALUES (?, ?, ?, ?)'),
      secretBump: db.prepare('UPDATE secrets SET current_version = ?, updated_at = ? WHERE name = ?'),
      versionInsert: db.prepare(
        `INSERT INTO secret_versions (name, version, ciphertext, nonce, wrapped_dek, kms_key_id, wrapped_rotation_at, created_at, created_by)
         VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)`,
      ),
      secretDelete: db.prepare('DELETE FROM secrets WHERE name = ?'),
      versionsDelete: db.prepare('DELETE FROM secret_versions WHERE name = ?'),
      tokenByName: db.prepare('SELECT name, revoked_at FROM tokens WHERE name = ?'),
      tokenByHash: db.prepare('SELECT name FROM tokens WHERE token_sha256 = ?'),
      tokenInsert: db.prepare(
        'INSERT INTO tokens (name, token_sha256, role, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL)',
      ),
      tokenRevoke: db.prepare('UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL'),
      tokensRevokeByRole: db.prepare('UPDATE tokens SET revoked_at = ? WHERE role = ? AND revoked_at IS NULL'),
      roleGet: db.prepare('SELECT name, builtin FROM roles WHERE name = ?'),
      roleUpsert: db.prepare(
        'INSERT INTO roles (name, rules, builtin) VALUES (?, ?, 0) ON CONFLICT(name) DO UPDATE SET rules = excluded.rules',
      ),
      roleDelete: db.prepare('DELETE FROM roles WHERE name = ? AND builtin = 0'),
      peerUpsert: db.prepare('INSERT INTO raft_peers (id, address) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET address = excluded.address'),
      peerDelete: db.prepare('DELETE FROM raft_peers WHERE id = ?'),
      declaredClear: db.prepare('DELETE FROM raft_declared'),
      declaredInsert: db.prepare('INSERT INTO raft_declared (id, address) VALUES (?, ?)'),
      memberDataUpsert: db.prepare('INSERT INTO raft_member_data (id, data_id) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET data_id = excluded.data_id'),
      memberDataDelete: db.prepare('DELETE FROM raft_member_data WHERE id = ?'),
      rewrap: db.prepare(
        `UPDATE secret_versions SET wrapped_dek = ?, kms_key_id = ?, wrapped_rotation_at = ?
         WHERE name = ? AND version = ? AND wrapped_dek = ?`,
      ),
      kmsStateSet: db.prepare('INSERT INTO kms_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
  };
}

export class StateMachine {
  db: Database.Database;
  /** Bumped when a snapshot replaces the database, so readers re-prepare. */
  generation = 0;
  /** Bumped whenever stored secret versions may have changed, so readers drop cached ciphertext rows. */
  secretsChanged = 0;
  /** Bumped whenever tokens or roles may have changed, so readers drop cached token and role rows. */
  authChanged = 0;
  /** Valid commands whose execution failed on this state and were rejected instead (a bug or a violated constraint). */
  faults = 0;
  /**
   * Told of every committed command applied as a rejection: `invalid` (it
   * failed validation) or `fault` (its execution failed the same way on every
   * node). The message names the command type and the check, never a value.
   */
  onRejected: (kind: 'invalid' | 'fault', message: string) => void = () => {};
  /**
   * Told of the secrets changed by applied entries (a version written, a
   * secret deleted), in index order, once their transaction committed; or
   * `reset` with the applied index when the whole state was replaced.
   */
  onSecretsChanged: (changes: ReadonlyArray<{ name: string; index: number }> | { reset: number }) => void = () => {};
  /** Changes of the running transaction, handed to onSecretsChanged when it commits. */
  private uncommitted: Array<{ name: string; index: number }> = [];
  private uncommittedReset = false;
  private stmts: ReturnType<typeof prepare>;
  /** execute() in a savepoint; made once per database (creating a transaction function prepares statements). */
  private executeInSavepoint: (cmd: Command) => ApplyResult;
  private readonly file: string;
  /** Copies state.db's log back on a thread of its own, ahead of this connection's checkpoints (wal-checkpointer.ts). */
  readonly checkpointer: WalCheckpointer | null = null;
  /** The checkpoint thread failed and ended; this connection's own checkpoints carry on alone until a new one starts. */
  onCheckpointThreadFailed: (err: Error) => void = () => {};

  /**
   * `checkpointThread`: a thread does most of each checkpoint's copying and
   * fsyncing off the event loop (what `coffer server` does); tools and tests
   * that open a state.db briefly leave it to SQLite alone.
   */
  constructor(dataDir: string, opts: { checkpointThread?: boolean; checkpointRestartDelayMs?: number } = {}) {
    this.file = path.join(dataDir, 'state.db');
    this.db = openDb(this.file);
    this.stmts = prepare(this.db);
    this.executeInSavepoint = this.db.transaction((cmd: Command) => this.execute(cmd));
    if (opts.checkpointThread) {
      this.checkpointer = new WalCheckpointer(this.file, {
        onFailed: (err) => this.onCheckpointThreadFailed(err),
        ...(opts.checkpointRestartDelayMs !== undefined ? { restartDelayMs: opts.checkpointRestartDelayMs } : {}),
      });
    }
  }

  /**
   * Runs `fn` (a run of applies) in ONE SQLite transaction: it commits when
   * `fn` returns and rolls everything back if `fn` throws. Each apply inside
   * still advances the applied index with its own changes, so whatever prefix
   * of the batch commits is exactly the prefix whose index is recorded.
   */
  batch<T>(fn: () => T): T {
    this.uncommitted = [];
    this.uncommittedReset = false;
    let out: T;
    try {
      out = this.db.transaction(fn)();
    } catch (err) {
      this.uncommitted = [];
      this.uncommittedReset = false;
      throw err;
    }
    this.checkpointer?.committed();
    this.publishCommitted();
    return out;
  }

  private publishCommitted(): void {
    const changes = this.uncommitted;
    const reset = this.uncommittedReset;
    this.uncommitted = [];
    this.uncommittedReset = false;
    if (reset) this.onSecretsChanged({ reset: this.appliedIndex().index });
    else if (changes.length > 0) this.onSecretsChanged(changes);
  }

  appliedIndex(): { index: number; term: number } {
    const row = this.stmts.appliedGet.get() as { log_index: number; log_term: number };
    return { index: row.log_index, term: row.log_term };
  }

  /**
   * Decodes and applies one committed entry. Applying is total: a command
   * that decodes but fails validation, or whose execution fails in a way
   * every node would repeat, applies as a rejection that changes nothing
   * but the applied index. Throws UnknownCommandError (a type or version
   * this build does not know) without changing anything, and rethrows
   * faults of this node alone (disk full, I/O): those must stop it, never
   * turn into an outcome other nodes would not share. An entry at or below
   * the applied index (replayed after a restart or a snapshot install) is skipped.
   */
  applyEntry(index: number, term: number, data: Uint8Array): ApplyResult {
    if (index <= this.appliedIndex().index) return applied();
    let cmd: Command;
    try {
      cmd = decodeCommand(data);
    } catch (err) {
      if (!(err instanceof InvalidCommandError)) throw err;
      this.onRejected('invalid', err.message);
      return this.inTransaction(() => {
        this.stmts.appliedSet.run(index, term);
        return refused('bad_request', err.message);
      });
    }
    const own = !this.db.inTransaction;
    if (own) {
      this.uncommitted = [];
      this.uncommittedReset = false;
    }
    const out = this.inTransaction(() => {
      const result = this.executeTotal(cmd);
      this.stmts.appliedSet.run(index, term);
      if (result.ok) {
        if (cmd.t === 'secret.put' || cmd.t === 'secret.delete') this.uncommitted.push({ name: cmd.name, index });
        else if (cmd.t === 'state.restore') this.uncommittedReset = true;
      }
      return result;
    });
    if (own) this.publishCommitted();
    return out;
  }

  /** Runs `fn` in the surrounding `batch` transaction, or in its own. */
  private inTransaction<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn)();
  }

  /**
   * Executes a valid command in a savepoint. An exception that any node
   * would raise on the same state (a violated constraint, a bug in this
   * release) rolls the command back and becomes a rejection; one that
   * belongs to this node's disk or memory is rethrown.
   */
  private executeTotal(cmd: Command): ApplyResult {
    try {
      return this.executeInSavepoint(cmd);
    } catch (err) {
      if (!isDeterministicFault(err)) throw err;
      this.faults++;
      const e = err as { name?: string; code?: string };
      const message = `command ${cmd.t}@${cmd.v} could not be applied (${String(e.code ?? e.name ?? 'error').slice(0, 40)})`;
      this.onRejected('fault', message);
      return refused('bad_request', message);
    }
  }

  /** Applies a log entry that carries no command (a Raft no-op), only advancing the index. */
  applyNoop(index: number, term: number): void {
    if (index <= this.appliedIndex().index) return;
    this.stmts.appliedSet.run(index, term);
  }

  /** Records a membership change's address book effect with the entry's index. */
  applyMembership(index: number, term: number, change: { type: string; nodeId: string }): void {
    if (index <= this.appliedIndex().index) return;
    this.db.transaction(() => {
      // Addresses arrive earlier as cluster.peer commands; a removed member's address goes with it.
      // So does the storage identity it joined with: if it comes back, it joins afresh.
      if (change.type === 'removeNode') {
        this.stmts.peerDelete.run(change.nodeId);
        this.stmts.memberDataDelete.run(change.nodeId);
      }
      this.stmts.appliedSet.run(index, term);
    })();
  }

  /** Seeds the address book of a fresh cluster (the initial voters); not a state change of the log. */
  seedPeers(peers: ReadonlyArray<{ id: string; address: string }>): void {
    this.db.transaction(() => {
      for (const p of peers) this.stmts.peerUpsert.run(p.id, p.address);
    })();
  }

  /** Writes a consistent image of the whole state to `file` (for a snapshot sent to a follower). */
  writeImage(file: string): void {
    fs.rmSync(file, { force: true });
    this.db.prepare('VACUUM INTO ?').run(file);
  }

  /** Replaces the state with an image received from the leader. */
  restoreImage(image: string): void {
    // The thread's connection must be closed before the files go: the last connection to close deletes the log by name.
    this.checkpointer?.suspend();
    this.db.close();
    for (const suffix of ['-wal', '-shm']) fs.rmSync(this.file + suffix, { force: true });
    fs.renameSync(image, this.file);
    this.db = openDb(this.file);
    this.checkpointer?.resume();
    this.stmts = prepare(this.db);
    this.executeInSavepoint = this.db.transaction((cmd: Command) => this.execute(cmd));
    this.generation++;
    this.secretsChanged++;
    this.authChanged++;
    this.onSecretsChanged({ reset: this.appliedIndex().index });
  }

  private execute(cmd: Command): ApplyResult {
    const s = this.stmts;
    // Bumped before the change (applies are synchronous, so no read runs in between); a rolled-back change only costs a refill.
    for (const scope of invalidatedBy(cmd)) {
      if (scope === 'secrets') this.secretsChanged++;
      else if (scope === 'auth') this.authChanged++;
    }
    switch (cmd.t) {
      case 'secret.put': {
        const row = s.secretGet.get(cmd.name) as { current_version: number } | undefined;
        const current = row?.current_version ?? 0;
        // The token's right decides, against the state the write lands on (the same refusal whichever way it fails).
        if (cmd.v === 2 && ((cmd.mode === 'create' && row) || (cmd.mode === 'update' && !row))) {
          return refused('forbidden', `this write may only ${cmd.mode} the secret`);
        }
        if (cmd.cas !== null && cmd.cas !== current) {
          return refused('cas_mismatch', `current version is ${current}, not ${cmd.cas}`);
        }
        if (current !== cmd.expected_current || cmd.version !== current + 1) {
          return refused('stale', 'secret changed while the write was prepared');
        }
        if (row) s.secretBump.run(cmd.version, cmd.created_at, cmd.name);
        else s.secretInsert.run(cmd.name, cmd.version, cmd.created_at, cmd.created_at);
        s.versionInsert.run(
          cmd.name, cmd.version, cmd.ciphertext, cmd.nonce, cmd.wrapped_dek, cmd.kms_key_id, cmd.created_at, cmd.created_by,
        );
        return applied({ version: cmd.version, created: !row });
      }
      case 'secret.delete': {
        const gone = s.secretDelete.run(cmd.name).changes;
        s.versionsDelete.run(cmd.name);
        return gone ? applied() : refused('not_found', 'no such secret');
      }
      case 'token.create': {
        if (s.tokenByName.get(cmd.name)) return refused('conflict', 'a token with that name exists');
        if (s.tokenByHash.get(cmd.token_sha256)) return refused('conflict', 'token collision');
        if (!s.roleGet.get(cmd.role)) return refused('bad_request', `no role named ${cmd.role}`);
        s.tokenInsert.run(cmd.name, cmd.token_sha256, cmd.role, cmd.created_at, cmd.expires_at);
        return applied({ created: true });
      }
      case 'token.bootstrap': {
        const row = s.tokenByName.get(BOOTSTRAP_TOKEN_NAME) as { revoked_at: string | null } | undefined;
        if (row) return applied({ created: false, note: row.revoked_at ? 'revoked' : 'exists' });
        if (s.tokenByHash.get(cmd.token_sha256)) return refused('conflict', 'token collision');
        s.tokenInsert.run(BOOTSTRAP_TOKEN_NAME, cmd.token_sha256, 'admin', cmd.created_at, null);
        return applied({ created: true });
      }
      case 'token.revoke': {
        if (!s.tokenByName.get(cmd.name)) return refused('not_found', 'no such token');
        s.tokenRevoke.run(cmd.revoked_at, cmd.name); // already revoked: keeps the first revocation time
        return applied();
      }
      case 'role.put': {
        const row = s.roleGet.get(cmd.name) as { builtin: number } | undefined;
        if (row?.builtin) return refused('conflict', `role ${cmd.name} is built in and cannot be changed`);
        s.roleUpsert.run(cmd.name, JSON.stringify(cmd.rules));
        return applied({ created: !row });
      }
      case 'cluster.peer': {
        s.peerUpsert.run(cmd.id, cmd.address);
        return applied({ note: 'peers' });
      }
      case 'cluster.declare':
        s.declaredClear.run();
        for (const m of cmd.members) s.declaredInsert.run(m.id, m.address);
        return applied();
      case 'cluster.member':
        s.memberDataUpsert.run(cmd.id, cmd.data_id);
        return applied();
      case 'secret.rewrap': {
        const changed = s.rewrap.run(cmd.wrapped_dek, cmd.kms_key_id, cmd.wrapped_rotation_at, cmd.name, cmd.version, cmd.expected_wrapped_dek).changes;
        // Deleted meanwhile, or re-wrapped by an earlier leader: nothing to do, and not an error.
        return changed ? applied() : refused('stale', 'version is gone or was re-wrapped already');
      }
      case 'kms.state':
        for (const [k, v] of Object.entries(cmd.values)) s.kmsStateSet.run(k, v);
        return applied();
      case 'state.restore':
        applyRestore(this.db, cmd.image, cmd.v === 2 ? cmd.at : null);
        return applied();
      case 'role.delete': {
        const row = s.roleGet.get(cmd.name) as { builtin: number } | undefined;
        if (!row) return refused('not_found', 'no such role');
        if (row.builtin) return refused('conflict', `role ${cmd.name} is built in and cannot be deleted`);
        s.roleDelete.run(cmd.name);
        // Its tokens end with it: a later role of the same name must not revive them.
        if (cmd.v === 2) s.tokensRevokeByRole.run(cmd.at, cmd.name);
        return applied();
      }
    }
  }

  /** Makes everything applied so far durable in state.db itself (before the log is compacted). */
  checkpoint(): void {
    // Alone on the files, so the TRUNCATE checkpoint is not turned away by the thread's own.
    this.checkpointer?.suspend();
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.checkpointer?.resume();
    }
  }

  close(): void {
    this.checkpointer?.stop();
    this.db.close();
  }
}

/**
 * SQLite result codes that depend on this node (its disk, memory, locks or
 * file), not on the command and the state: the same entry may apply fine on
 * another node or after a restart, so they must never become a rejection.
 */
const NODE_LOCAL_SQLITE = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|NOMEM|CORRUPT|READONLY|CANTOPEN|NOTADB|PERM|PROTOCOL|INTERRUPT|ABORT|NOLFS|AUTH)/;

function isDeterministicFault(err: unknown): boolean {
  if (err instanceof Database.SqliteError) return !NODE_LOCAL_SQLITE.test(err.code);
  if (!(err instanceof Error)) return false;
  // System errors (ENOSPC, EIO, ...) and exhausted stacks belong to this node.
  if ('errno' in err || 'syscall' in err) return false;
  if (err instanceof RangeError && /call stack|allocation failed/i.test(err.message)) return false;
  return true;
}
