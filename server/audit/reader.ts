// Reading the audit log: committed rows through a read-only connection on
// the main thread (WAL lets it read beside the writer thread), dropped on
// any failure so the next query reopens it.
import Database from 'better-sqlite3';
import { AUDIT_COLUMNS } from './audit-worker.js';
import { AuditUnavailableError, unavailable, type StoredAuditRecord } from './record.js';

export interface AuditQuery {
  /** Return records with id > since (default 0). */
  since?: number;
  /** Default 100, clamped to 1..1000. */
  limit?: number;
}

export interface AuditPage {
  records: StoredAuditRecord[];
  /** Id to pass as `since` for the next page; null when no more records exist yet. */
  next_since: number | null;
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;

export class AuditReader {
  private handle: { db: Database.Database; page: Database.Statement } | null = null;
  private closed = false;

  constructor(
    private readonly path: string,
    private readonly busyTimeoutMs: number,
  ) {}

  /** Records with id > since, oldest first. */
  query(q: AuditQuery): AuditPage {
    const since = q.since ?? 0;
    const limit = q.limit ?? AUDIT_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(since)) throw new RangeError('since must be an integer');
    if (!Number.isSafeInteger(limit)) throw new RangeError('limit must be an integer');
    const n = Math.min(Math.max(limit, 1), AUDIT_MAX_LIMIT);
    if (this.closed) throw new AuditUnavailableError('audit log is closed');
    let rows: StoredAuditRecord[];
    try {
      // Fetch one extra row to learn whether another page exists.
      rows = this.open().page.all(Math.max(since, 0), n + 1) as StoredAuditRecord[];
    } catch (err) {
      this.drop();
      throw unavailable(err);
    }
    const more = rows.length > n;
    const records = more ? rows.slice(0, n) : rows;
    const last = records[records.length - 1];
    return { records, next_since: more && last ? last.id : null };
  }

  /** The log closed: queries fail from now on. */
  close(): void {
    this.closed = true;
    this.drop();
  }

  /** Closes the connection; the next query reopens it. */
  drop(): void {
    try {
      this.handle?.db.close();
    } catch {
      // unusable anyway
    }
    this.handle = null;
  }

  private open(): { db: Database.Database; page: Database.Statement } {
    if (this.handle === null || !this.handle.db.open) {
      const db = new Database(this.path, { readonly: true, fileMustExist: true });
      try {
        db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
        const page = db.prepare(`SELECT id, ${AUDIT_COLUMNS.join(', ')}, chain FROM audit_log WHERE id > ? ORDER BY id LIMIT ?`);
        this.handle = { db, page };
      } catch (err) {
        db.close();
        throw err;
      }
    }
    return this.handle;
  }
}
