// The state.db checkpoint thread. SQLite in WAL mode copies the log's pages
// back into the database file at a checkpoint, and with synchronous=NORMAL
// fsyncs the log before and the database after: 12-15 ms every ~1,000 pages
// on this project's bench machine, run by whichever connection commits, so a
// stall on the event loop of every node once every ~200 single-entry applies.
// This thread runs PASSIVE checkpoints on a connection of its own ahead of
// the owner's (wal-checkpointer.ts says why the owner keeps its own).
//
// Messages, handled in order: checkpoint (PASSIVE: copies what no reader
// needs, never waits for a lock) and close (closes this connection and
// writes the request's number to the shared word, so the owner, waiting on
// it, can replace or checkpoint the files itself). The next checkpoint
// reopens.
//
// Runs from a `data:` URL under vitest (server/storage/worker-url.ts):
// `node:` builtins only, better-sqlite3 through createRequire.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

export const CHECKPOINT_WORKER_ROLE = 'coffer-state-checkpointer';

export interface CheckpointWorkerData {
  role: typeof CHECKPOINT_WORKER_ROLE;
  file: string;
  /** One Int32: the number of the last close request done, waited on by the owner. */
  closed: SharedArrayBuffer;
  requireFrom: string;
}

export type CheckpointRequest = { op: 'checkpoint' } | { op: 'close'; seq: number };

/** After a checkpoint: frames in the log, frames copied; or the error that stopped it. */
export type CheckpointReply = { ok: true; log: number; checkpointed: number; busy: boolean } | { ok: false; message: string };

function main(): void {
  const port = parentPort;
  const data = workerData as CheckpointWorkerData | undefined;
  if (!port || data?.role !== CHECKPOINT_WORKER_ROLE) return;
  const Database = createRequire(data.requireFrom)('better-sqlite3') as typeof BetterSqlite3;
  const closed = new Int32Array(data.closed);
  let db: BetterSqlite3.Database | null = null;

  port.on('message', (req: CheckpointRequest) => {
    if (req.op === 'close') {
      try {
        db?.close();
      } finally {
        db = null;
        Atomics.store(closed, 0, req.seq);
        Atomics.notify(closed, 0);
      }
      return;
    }
    try {
      if (!db) {
        db = new Database(data.file, { fileMustExist: true });
        // The same durability as the owner's connection: the checkpoint fsyncs the log, then the database.
        db.pragma('synchronous = NORMAL');
        db.pragma('wal_autocheckpoint = 0');
      }
      const [row] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
      const reply: CheckpointReply = { ok: true, log: row?.log ?? 0, checkpointed: row?.checkpointed ?? 0, busy: (row?.busy ?? 0) !== 0 };
      port.postMessage(reply);
    } catch (err) {
      port.postMessage({ ok: false, message: (err as Error).message } satisfies CheckpointReply);
    }
  });
}

main();
