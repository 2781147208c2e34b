// How much room is left on the data volume (VAULT_MIN_FREE_BYTES, DESIGN §3).
// The write path asks on every proposal, so a reading is reused until it is
// `maxAgeMs` old: at most one statfs per interval however many writes arrive,
// no timer, and nothing at all while the node only serves reads.
import fs from 'node:fs';

export interface VolumeStats {
  /** Blocks available to this (unprivileged) process. */
  bavail: number;
  bsize: number;
}

export interface FreeSpaceOptions {
  /** A folder on the volume to watch (the data folder). */
  dir: string;
  /** Below this many available bytes, writes are refused. 0 turns the floor off. */
  minFreeBytes: number;
  /** How long a reading is reused. Default 250 ms. */
  maxAgeMs?: number;
  /** For tests: replaces fs.statfsSync. */
  statfs?: (dir: string) => VolumeStats;
  /** For tests: the clock, in ms. */
  now?: () => number;
}

export class FreeSpaceWatcher {
  readonly dir: string;
  readonly minFreeBytes: number;
  private readonly maxAgeMs: number;
  private readonly statfs: (dir: string) => VolumeStats;
  private readonly now: () => number;
  private bytes = Number.POSITIVE_INFINITY;
  private takenAt = Number.NEGATIVE_INFINITY;

  constructor(opts: FreeSpaceOptions) {
    this.dir = opts.dir;
    this.minFreeBytes = Math.max(0, opts.minFreeBytes);
    this.maxAgeMs = opts.maxAgeMs ?? 250;
    this.statfs = opts.statfs ?? ((dir) => fs.statfsSync(dir));
    this.now = opts.now ?? Date.now;
  }

  /** Available bytes on the volume, from a reading at most `maxAgeMs` old. */
  available(): number {
    if (this.now() - this.takenAt >= this.maxAgeMs) this.refresh();
    return this.bytes;
  }

  /**
   * Takes a new reading now. A volume that cannot be measured keeps the last
   * reading (at first: unlimited): refusing every write because statfs failed
   * would be an outage of its own, and a write that really finds the volume
   * full is still caught where it fails.
   */
  refresh(): number {
    this.takenAt = this.now();
    try {
      const s = this.statfs(this.dir);
      this.bytes = s.bavail * s.bsize;
    } catch {
      // keep the last reading
    }
    return this.bytes;
  }

  /** A write just failed for lack of space: the cached reading is wrong, take a new one next time. */
  invalidate(): void {
    this.takenAt = Number.NEGATIVE_INFINITY;
  }

  /** True while fewer than VAULT_MIN_FREE_BYTES are available. */
  belowFloor(): boolean {
    return this.minFreeBytes > 0 && this.available() < this.minFreeBytes;
  }
}
