// The audit log's fast path on the main thread, for when the writer thread
// (audit-worker.ts) is idle: one request at a time, in effect. Each hand-off
// to that thread and back waits for a core; on a busy two-core machine the
// two of them cost a write ~0.1 ms for the probe and more for the record.
//
// tryProbe: BEGIN IMMEDIATE + ROLLBACK on a handle of our own with a zero
// busy timeout, in a few microseconds. It only ever says "yes": busy (our
// writer mid-commit, or another process holding the lock), an I/O error or
// anything else means "ask the writer thread", whose probe waits its busy
// timeout and whose answer is the one that refuses a write. A "yes" is shared
// by every caller until the event loop's next check phase: the writes whose
// requests arrived in one turn of the loop share one probe, as concurrent
// callers of the writer thread's probe do.
//
// tryWrite: commits a small batch of records right here, chained and fsynced
// exactly as the writer thread would (the same appender, synchronous = FULL),
// or returns null having written nothing (the lock was taken, or anything
// failed), and the batch goes to the writer thread as before. It blocks the
// loop for one fdatasync, which is why the owner uses it only for a batch of
// a few records with the writer idle: under load the writer's group commit
// is cheaper. This connection never checkpoints (a checkpoint copies and
// fsyncs the database file, too long to hold the loop): the writer thread's
// commits do, and the owner sends it a batch now and then so they happen.
import Database from 'better-sqlite3';
import { chainedAppender, walBudget, type AuditRow } from './audit-worker.js';

interface Handle {
  db: Database.Database;
  begin: Database.Statement;
  rollback: Database.Statement;
  commit: Database.Statement;
  append: (rows: readonly AuditRow[]) => { lastId: number };
}

export class FastPath {
  private h: Handle | null = null;
  /** A probe succeeded in this turn of the event loop. */
  private sharedYes = false;
  private readonly endTurn = (): void => {
    this.sharedYes = false;
  };

  constructor(
    private readonly path: string,
    private readonly chainKey: Uint8Array,
    /** VAULT_AUDIT_MAX_BYTES: the WAL is cut back to the writer thread's budget when this connection restarts it. */
    private readonly maxBytes: number,
  ) {}

  /** True when audit.db took (and released) a write lock just now; false when that is not known. */
  tryProbe(): boolean {
    if (this.sharedYes) return true;
    const h = this.lock();
    if (!h) return false;
    h.rollback.run();
    this.sharedYes = true;
    setImmediate(this.endTurn);
    return true;
  }

  /**
   * Commits `rows` as the next records of the chain and returns the last
   * one's id, or returns null with nothing written. A commit whose fsync
   * failed can have reached the log anyway, as in the writer thread: the
   * records are then written again (a record twice, never none).
   */
  tryWrite(rows: readonly AuditRow[]): number | null {
    const h = this.lock();
    if (!h) return null;
    try {
      const { lastId } = h.append(rows);
      h.commit.run();
      return lastId;
    } catch {
      this.close(); // closing rolls back what was not committed
      return null;
    }
  }

  close(): void {
    this.sharedYes = false;
    try {
      this.h?.db.close(); // closing rolls back a transaction left open
    } catch {
      // nothing more to do
    }
    this.h = null;
  }

  /** Takes the write lock now (BEGIN IMMEDIATE) or returns null, holding nothing. */
  private lock(): Handle | null {
    try {
      const h = (this.h ??= this.open());
      h.begin.run();
      return h;
    } catch (err) {
      // Busy is normal while the writer commits; anything else: start from a fresh handle next time.
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || this.h?.db.inTransaction) this.close(); // never keep a lock
      return null;
    }
  }

  private open(): Handle {
    const db = new Database(this.path, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 0'); // never wait on the event loop
      db.pragma('synchronous = FULL'); // as the writer thread: every commit fsyncs the WAL
      db.pragma('wal_autocheckpoint = 0');
      db.pragma(`journal_size_limit = ${walBudget(this.maxBytes)}`);
      const appender = chainedAppender(db, this.chainKey);
      return { db, begin: db.prepare('BEGIN IMMEDIATE'), rollback: db.prepare('ROLLBACK'), commit: db.prepare('COMMIT'), append: (rows) => appender.append(rows) };
    } catch (err) {
      db.close();
      throw err;
    }
  }
}
