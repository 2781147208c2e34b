// Records of committed changes that failed to write. They are never failed:
// they are held and written again after a pause (doubling) until durable.
// While any is held, new changes are refused (507 when the volume is full,
// else 503), so the backlog cannot grow past the writes already in flight,
// and the owner hears of it (onHeld) to report the node not ready.
import { InsufficientStorageError, isNoSpace } from '../storage/write-guard.js';
import { AuditUnavailableError, type PendingRecord } from './record.js';

/** First pause before held records are written again; doubles up to HELD_RETRY_MAX_MS. */
const HELD_RETRY_MS = 50;
const HELD_RETRY_MAX_MS = 1_000;

export class HeldRecords {
  /** Oldest first, waiting for the retry timer. */
  private held: PendingRecord[] = [];
  /** Why the last held record failed: for lack of space or not. */
  private forSpace = false;
  /** True from the first held record until every held record was written. */
  private holding = false;
  private timer: NodeJS.Timeout | null = null;
  private pause = HELD_RETRY_MS;

  constructor(
    /** Told when records start being held (and whether for lack of space) and when all were written. */
    private readonly onHeld: (held: boolean, noSpace: boolean) => void,
    /** Puts records back at the head of the write queue. */
    private readonly requeue: (records: PendingRecord[]) => void,
  ) {}

  /** Why a new change is refused now, or null. */
  refusal(): Error | null {
    if (!this.holding) return null;
    return this.forSpace
      ? new InsufficientStorageError('the data volume is full: audit records of committed writes wait for space; writes resume once space is freed')
      : new AuditUnavailableError('audit log unavailable: records of committed writes wait to be written');
  }

  /** These records failed with `err`: keep them and write them again after a pause. */
  hold(records: PendingRecord[], err: Error): void {
    this.held.push(...records);
    this.forSpace = isNoSpace(err);
    if (!this.holding) {
      this.holding = true;
      this.onHeld(true, this.forSpace);
    }
    if (this.timer !== null) return;
    const pause = this.pause;
    this.pause = Math.min(pause * 2, HELD_RETRY_MAX_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      const records = this.held;
      this.held = [];
      // Ahead of newer records, so the log keeps close to request order.
      this.requeue(records);
    }, pause);
    this.timer.unref(); // the requests waiting on these records keep the process alive anyway
  }

  /** A batch was written: once nothing is held or queued to be kept, the holding is over. */
  written(keptStillQueued: () => boolean): void {
    if (!this.holding || this.held.length > 0 || keptStillQueued()) return;
    this.holding = false;
    this.forSpace = false;
    this.pause = HELD_RETRY_MS;
    this.onHeld(false, false);
  }

  /** The log closes: every held record, for one last attempt. */
  takeAll(): PendingRecord[] {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const all = this.held;
    this.held = [];
    return all;
  }
}
