// The owner's side of the state.db checkpoint thread (checkpoint-worker.ts).
//
// The owner's connection keeps SQLite's own checkpoint every ~1,000 log
// pages: only the writer can restart the log from its beginning, which keeps
// it small. What made that checkpoint a 12-15 ms stall on the event loop was
// copying ~1,000 pages and fsyncing them; the thread does that work ahead of
// it with a PASSIVE pass after every PASS_COMMITS commits, so the owner's
// checkpoint finds a short tail to copy and little unsynced data.
//
// Whenever the owner must have the files to itself (a TRUNCATE checkpoint
// before the Raft log is compacted, a snapshot replacing state.db, shutdown)
// suspend() closes the thread's connection and waits for that. A thread that
// fails is ended and reported (onFailed); the owner's checkpoints go on alone
// (with their stalls) until a new thread is started after a pause, doubled
// after each failure that comes soon after a start (a disk that stays broken
// is not hammered).
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { workerModuleUrl } from '../storage/worker-url.js';
import { CHECKPOINT_WORKER_ROLE, type CheckpointReply, type CheckpointRequest, type CheckpointWorkerData } from './checkpoint-worker.js';

export const CHECKPOINT_INTERVAL_MS = 20;
/** Commits on the owner's connection between two passes: few enough that its own checkpoints find only a short tail. */
export const PASS_COMMITS = 32;
/** How long suspend() waits for a checkpoint under way to finish and the connection to close. */
const SUSPEND_TIMEOUT_MS = 10_000;
/** The first pause before a failed thread is replaced; doubled up to RESTART_MAX_MS while failures come quickly. */
export const RESTART_DELAY_MS = 30_000;
const RESTART_MAX_MS = 10 * 60_000;

export interface WalCheckpointerHooks {
  /** The thread failed and was ended; the owner's own checkpoints carry on alone until it is replaced. */
  onFailed(err: Error): void;
  /** Pause before the first replacement (tests shorten it); default RESTART_DELAY_MS. */
  restartDelayMs?: number;
}

export class WalCheckpointer {
  private worker: Worker | null = null;
  private readonly closed = new Int32Array(new SharedArrayBuffer(4));
  private closeSeq = 0;
  private inFlight = false;
  private suspended = false;
  private stopped = false;
  private readonly timer: NodeJS.Timeout;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartDelay: number;
  private startedAt = 0;
  private commits = 0;
  private commitsAtPass = 0;
  /** Passes completed by the thread. */
  completed = 0;
  /** Threads started after a failure. */
  restarts = 0;

  constructor(
    private readonly file: string,
    private readonly hooks: WalCheckpointerHooks,
  ) {
    this.restartDelay = hooks.restartDelayMs ?? RESTART_DELAY_MS;
    this.start();
    this.timer = setInterval(() => this.request(), CHECKPOINT_INTERVAL_MS);
    this.timer.unref();
  }

  private start(): void {
    const data: CheckpointWorkerData = {
      role: CHECKPOINT_WORKER_ROLE,
      file: this.file,
      closed: this.closed.buffer as SharedArrayBuffer,
      requireFrom: fileURLToPath(import.meta.url),
    };
    const w = new Worker(workerModuleUrl(import.meta.url, 'checkpoint-worker'), { workerData: data, name: 'coffer-state-checkpointer' });
    w.unref();
    w.on('message', (reply: CheckpointReply) => {
      if (this.worker !== w) return;
      this.inFlight = false;
      if (!reply.ok) return this.fail(new Error(`state.db checkpoint failed: ${reply.message}`));
      this.completed++;
    });
    w.on('error', (err) => {
      if (this.worker === w) this.fail(err);
    });
    w.on('exit', (code) => {
      if (this.worker === w) this.fail(new Error(`state.db checkpoint thread exited with code ${code}`));
    });
    this.worker = w;
    this.inFlight = false;
    this.startedAt = Date.now();
  }

  get running(): boolean {
    return this.worker !== null;
  }

  /** Closes the thread's connection and waits for that (a checkpoint under way finishes first); no checkpoint runs until resume(). */
  suspend(): void {
    this.suspended = true;
    const w = this.worker;
    if (!w) return;
    const seq = ++this.closeSeq;
    w.postMessage({ op: 'close', seq } satisfies CheckpointRequest);
    const deadline = Date.now() + SUSPEND_TIMEOUT_MS;
    for (;;) {
      const seen = Atomics.load(this.closed, 0);
      if (seen === seq) return;
      const left = deadline - Date.now();
      if (left <= 0 || !this.worker) {
        const err = new Error('state.db checkpoint thread did not close its connection');
        this.fail(err);
        throw err;
      }
      Atomics.wait(this.closed, 0, seen, Math.min(left, 100));
    }
  }

  resume(): void {
    this.suspended = false;
  }

  /** Ends the thread (its connection closed first). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (!this.worker) return;
    try {
      this.suspend();
    } catch {
      return; // failed and terminated already
    }
    const w = this.worker;
    this.worker = null;
    if (w) void w.terminate();
  }

  /** The owner committed a transaction (a pass is due after PASS_COMMITS of them). */
  committed(): void {
    this.commits++;
  }

  private request(): void {
    if (!this.worker || this.inFlight || this.suspended) return;
    if (this.commits - this.commitsAtPass < PASS_COMMITS) return;
    this.commitsAtPass = this.commits;
    this.inFlight = true;
    this.worker.postMessage({ op: 'checkpoint' } satisfies CheckpointRequest);
  }

  private fail(err: Error): void {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    void w.terminate();
    this.hooks.onFailed(err);
    if (this.stopped) return;
    // A thread that ran for a while before failing starts the pauses over.
    if (Date.now() - this.startedAt > RESTART_MAX_MS) this.restartDelay = this.hooks.restartDelayMs ?? RESTART_DELAY_MS;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(RESTART_MAX_MS, this.restartDelay * 2);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopped) return;
      this.restarts++;
      this.start();
    }, delay);
    this.restartTimer.unref();
  }
}
