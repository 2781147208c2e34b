// One audit export sink's thread (issue 16; the owner is exporter.ts). It
// reads records that are already durable in audit.db (committed rows, through
// its own read-only connection) with id > its cursor, writes them as JSON
// lines to stdout or to a size-rotated file, makes them reach the sink (a
// write to the pipe; write + fsync for a file), and only then persists the
// cursor (tmp file + fsync + rename + fsync of the folder). A crash between
// the lines and the cursor repeats those lines after the restart, never skips
// one: at-least-once, in id order, duplicates recognisable by their id.
//
// Nothing here runs on the API's event loop. A consumer that stops reading a
// stdout pipe only stalls this thread: fd 1 is a non-blocking pipe (Node opens
// it so), a full pipe answers EAGAIN, and the thread waits and retries while
// its lag (published in shared memory) grows. Lines go out in writes of at
// most PIPE_BUF (4096) bytes cut at line ends, which a pipe performs whole or
// not at all: they never interleave with the server's own log lines, which are
// written line by line too (server/log/stdout-destination.ts).
//
// Shared memory with the owner:
//   control (Int32Array): [0] wake counter (owner bumps + notifies after new
//   records), [1] stop: 0 run, 1 stop now, 2 export what is there, then stop.
//   stats (Float64Array): [0] cursor (last id delivered), [1] newest id in audit.db.
// Messages to the owner: { type: 'exported', n }, { type: 'log', level, msg, problem? }.
//
// Like audit-worker.ts this module must stay self-contained (node: builtins,
// better-sqlite3 through createRequire): under vitest it is loaded from a
// `data:` URL (server/storage/worker-url.ts).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

export const EXPORT_WORKER_ROLE = 'coffer-audit-export';

export type ExportSinkKind = 'stdout' | 'file';

export interface ExportWorkerData {
  role: typeof EXPORT_WORKER_ROLE;
  sink: ExportSinkKind;
  /** audit.db */
  dbPath: string;
  /** Where the cursor lives: `<dataDir>/audit-export.<sink>.cursor`. */
  cursorPath: string;
  /** The cursor read at start (the owner read it, so exportedThrough() is right before the thread runs). */
  cursor: number;
  /** For the file sink. */
  file: string | null;
  fileMaxBytes: number;
  fileKeep: number;
  control: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  requireFrom: string;
  /** Idle poll interval, ms (a bump of the wake counter ends the wait earlier). */
  pollMs: number;
  /** Records per batch (one cursor write per batch). */
  batch: number;
}

export type ExportWorkerMessage =
  | { type: 'exported'; n: number }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string; problem?: string };

export const CTL_WAKE = 0;
export const CTL_STOP = 1;
export const STOP_NOW = 1;
export const STOP_DRAINED = 2;
export const STAT_CURSOR = 0;
export const STAT_NEWEST = 1;

/** A pipe write of at most this many bytes is atomic (POSIX PIPE_BUF on Linux). */
const PIPE_BUF = 4096;
/** Wait between retries of a full pipe, and after a failure. */
const STALL_MS = 20;
const FAILURE_PAUSE_MS = 1000;

/** Reads `<dataDir>/audit-export.<sink>.cursor`; 0 when there is none yet (everything in audit.db is exported). */
export function readCursor(file: string): number {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  const t = text.trim();
  if (!/^\d{1,16}$/.test(t) || !Number.isSafeInteger(Number(t))) throw new Error(`${file} does not hold a record id: ${JSON.stringify(t.slice(0, 40))}`);
  return Number(t);
}

/** tmp + fsync + rename + fsync of the folder: after a crash the cursor is the old or the new one, whole. */
export function writeCursor(file: string, id: number): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${id}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

// Its own copy of storage/durable-files.ts's fsyncFolder: this module must stay self-contained (see the top).
function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The line for one stored row: the marker first, then every column audit_log has (id, …, chain). */
export function exportLine(row: Record<string, unknown>): string {
  return JSON.stringify({ coffer_audit: 1, ...row }) + '\n';
}

/** Lines grouped into chunks of at most `max` bytes, cut only at line ends (a longer line is a chunk alone). */
export function chunkLines(lines: string[], max = PIPE_BUF): Buffer[] {
  const chunks: Buffer[] = [];
  let cur: Buffer[] = [];
  let size = 0;
  for (const line of lines) {
    const b = Buffer.from(line, 'utf8');
    if (size > 0 && size + b.length > max) {
      chunks.push(Buffer.concat(cur, size));
      cur = [];
      size = 0;
    }
    cur.push(b);
    size += b.length;
  }
  if (size > 0) chunks.push(Buffer.concat(cur, size));
  return chunks;
}

interface Sink {
  /** Writes the lines so they reached the sink; false when asked to stop meanwhile (nothing is then counted as delivered). */
  write(lines: string[]): boolean;
  close(): void;
}

function main(): void {
  const port = parentPort;
  const data = workerData as ExportWorkerData | undefined;
  if (!port || data?.role !== EXPORT_WORKER_ROLE) return;
  const Database = createRequire(data.requireFrom)('better-sqlite3') as typeof BetterSqlite3;
  const control = new Int32Array(data.control);
  const stats = new Float64Array(data.stats);
  const log = (level: 'info' | 'warn' | 'error', msg: string, problem?: string): void =>
    port.postMessage({ type: 'log', level, msg, ...(problem !== undefined ? { problem } : {}) } satisfies ExportWorkerMessage);
  // Pauses, ended early by any change of the stop word (the owner notifies it).
  const sleep = (ms: number): void => {
    Atomics.wait(control, CTL_STOP, Atomics.load(control, CTL_STOP), ms);
  };
  const stopNow = (): boolean => Atomics.load(control, CTL_STOP) === STOP_NOW;

  let db: { conn: BetterSqlite3.Database; page: BetterSqlite3.Statement; newest: BetterSqlite3.Statement } | null = null;
  const openDb = () => {
    if (db !== null) return db;
    const conn = new Database(data.dbPath, { readonly: true, fileMustExist: true });
    try {
      conn.pragma('busy_timeout = 1000');
      db = {
        conn,
        page: conn.prepare('SELECT * FROM audit_log WHERE id > ? ORDER BY id LIMIT ?'),
        newest: conn.prepare('SELECT max(id) FROM audit_log').pluck(),
      };
      return db;
    } catch (err) {
      conn.close();
      throw err;
    }
  };
  const dropDb = () => {
    try {
      db?.conn.close();
    } catch {
      // unusable anyway
    }
    db = null;
  };
  /** The newest id in audit.db (for the lag), refreshed also while a full pipe stalls us. */
  const refreshNewest = (): number | null => {
    try {
      const n = openDb().newest.get() as number | null;
      stats[STAT_NEWEST] = n ?? 0;
      return n;
    } catch {
      dropDb();
      return null;
    }
  };

  const sink: Sink = data.sink === 'stdout' ? stdoutSink(stopNow, sleep, refreshNewest) : fileSink(data.file!, data.fileMaxBytes, data.fileKeep);
  let cursor = data.cursor;
  stats[STAT_CURSOR] = cursor;
  let lastProblem: string | null = null;

  for (;;) {
    const stop = Atomics.load(control, CTL_STOP);
    if (stop === STOP_NOW) break;
    const wake = Atomics.load(control, CTL_WAKE);
    try {
      // Before the audit log created audit.db (a first start): nothing to export yet.
      if (db === null && !fs.existsSync(data.dbPath)) {
        if (stop === STOP_DRAINED) break;
        Atomics.wait(control, CTL_WAKE, wake, data.pollMs);
        continue;
      }
      const d = openDb();
      const rows = d.page.all(cursor, data.batch) as Record<string, unknown>[];
      const newest = (d.newest.get() as number | null) ?? 0;
      stats[STAT_NEWEST] = newest;
      if (rows.length === 0) {
        if (newest > 0 && newest < cursor) {
          // audit.db holds only ids below the cursor: it was replaced or emptied and ids started again.
          log('warn', 'audit.db ids are below the export cursor (audit.db replaced or emptied): exporting it from the start', `cursor ${cursor}, newest id ${newest}`);
          cursor = 0;
          continue;
        }
        if (lastProblem !== null) {
          log('info', 'audit export resumed');
          lastProblem = null;
        }
        if (stop === STOP_DRAINED) break;
        Atomics.wait(control, CTL_WAKE, wake, data.pollMs);
        continue;
      }
      if (!sink.write(rows.map(exportLine))) break;
      const last = rows[rows.length - 1]!.id as number;
      writeCursor(data.cursorPath, last);
      cursor = last;
      stats[STAT_CURSOR] = cursor;
      port.postMessage({ type: 'exported', n: rows.length } satisfies ExportWorkerMessage);
      if (lastProblem !== null) {
        log('info', 'audit export resumed');
        lastProblem = null;
      }
    } catch (err) {
      dropDb();
      const problem = err instanceof Error ? err.message : String(err);
      // One line per distinct problem, not one per retry.
      if (problem !== lastProblem) log('error', 'audit export failed; retrying (records stay in audit.db until delivered)', problem);
      lastProblem = problem;
      if (stop === STOP_DRAINED) break;
      sleep(FAILURE_PAUSE_MS);
    }
  }
  sink.close();
  dropDb();
}

/**
 * fd 1. A full pipe (EAGAIN) is waited out here, checking for a stop; a pipe
 * nobody reads any more (EPIPE) is treated the same: the records stay in
 * audit.db, the lag grows, and the cap rule fails the node closed.
 */
function stdoutSink(stopNow: () => boolean, sleep: (ms: number) => void, refreshNewest: () => void): Sink {
  let stalledSince = 0;
  return {
    write(lines) {
      for (const chunk of chunkLines(lines)) {
        let off = 0;
        while (off < chunk.length) {
          try {
            off += fs.writeSync(1, chunk, off, chunk.length - off);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EPIPE') throw err;
            if (stopNow()) return false;
            const now = Date.now();
            if (now - stalledSince > 250) {
              stalledSince = now;
              refreshNewest();
            }
            sleep(code === 'EPIPE' ? 1000 : STALL_MS);
          }
        }
      }
      return true;
    },
    close() {},
  };
}

/**
 * An append-only file rotated by size: before a line would take it past
 * maxBytes it becomes `<file>.1` (`.1` → `.2` … the oldest beyond `keep` is
 * dropped). Lines are fsynced before the cursor moves. A torn last line (a
 * crash mid-write) is cut off at start: the cursor had not moved past it, so
 * it is written again whole.
 */
function fileSink(file: string, maxBytes: number, keep: number): Sink {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let fd = -1;
  let size = 0;
  const open = () => {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
    size = fs.fstatSync(fd).size;
    if (size > 0) {
      const tail = Buffer.alloc(Math.min(size, 64 * 1024));
      const rfd = fs.openSync(file, 'r');
      try {
        fs.readSync(rfd, tail, 0, tail.length, size - tail.length);
      } finally {
        fs.closeSync(rfd);
      }
      if (tail[tail.length - 1] !== 0x0a) {
        const nl = tail.lastIndexOf(0x0a);
        const cut = nl < 0 ? (tail.length === size ? 0 : size) : size - tail.length + nl + 1;
        if (cut < size) {
          fs.ftruncateSync(fd, cut);
          fs.fsyncSync(fd);
          size = cut;
        }
      }
    }
  };
  const rotate = () => {
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    for (let i = keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    fs.renameSync(file, `${file}.1`);
    fsyncDir(path.dirname(file));
    open();
  };
  return {
    write(lines) {
      if (fd < 0) open();
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flushPending = () => {
        if (pendingBytes === 0) return;
        const buf = Buffer.concat(pending, pendingBytes);
        let off = 0;
        while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
        size += buf.length;
        pending = [];
        pendingBytes = 0;
      };
      try {
        for (const line of lines) {
          const b = Buffer.from(line, 'utf8');
          if (size + pendingBytes > 0 && size + pendingBytes + b.length > maxBytes) {
            flushPending();
            rotate();
          }
          pending.push(b);
          pendingBytes += b.length;
        }
        flushPending();
        fs.fsyncSync(fd);
      } catch (err) {
        // Reopen next time (the tail is repaired then); the cursor did not move.
        try {
          if (fd >= 0) fs.closeSync(fd);
        } catch {
          // closing anyway
        }
        fd = -1;
        throw err;
      }
      return true;
    },
    close() {
      if (fd >= 0) fs.closeSync(fd);
      fd = -1;
    },
  };
}

main();
