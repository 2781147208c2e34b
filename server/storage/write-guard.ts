// Decides, before anything is proposed, whether this node may take a write:
// not while the data volume is under VAULT_MIN_FREE_BYTES, and not while one
// of its own storage writes (Raft log, state.db, audit.db) is waiting for space.
// A write refused here was never proposed, so the client's 507 is the truth.
// Nothing latches: the floor is re-measured as writes come, and a waiting
// writer clears its mark as soon as its retry succeeds.
import type { FreeSpaceWatcher } from './free-space.js';

/** A write refused for lack of space, before it was proposed (maps to 507 insufficient_storage). */
export class InsufficientStorageError extends Error {
  override readonly name = 'InsufficientStorageError';
}

export type RefusalReason = 'below_floor' | 'volume_full';

/** The volume (or quota) is full: the write can succeed later, unlike an I/O error. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

export interface WriteGuardHooks {
  /** Counted once per refused write. */
  onRefused?: (reason: RefusalReason) => void;
}

export class WriteGuard {
  /** Writers waiting for space: who → what waits (for messages and readiness). */
  private readonly waiting = new Map<string, string>();

  constructor(
    readonly space: FreeSpaceWatcher,
    private readonly hooks: WriteGuardHooks = {},
  ) {}

  /** Throws InsufficientStorageError when a write must be refused now. */
  check(): void {
    if (this.waiting.size > 0) {
      this.refuse('volume_full', 'the data volume is full; writes resume once space is freed');
    }
    if (this.space.belowFloor()) {
      this.refuse('below_floor', `less than ${formatBytes(this.space.minFreeBytes)} free on the data volume (VAULT_MIN_FREE_BYTES); writes resume once space is freed`);
    }
  }

  /** `who` could not write for lack of space and retries; writes are refused meanwhile. */
  waitForSpace(who: string, what: string): void {
    this.waiting.set(who, what);
    this.space.invalidate();
  }

  /** `who`'s retry succeeded. */
  resumed(who: string): void {
    this.waiting.delete(who);
  }

  /** What waits for space (the node is not ready meanwhile), or null. */
  problem(): string | null {
    if (this.waiting.size === 0) return null;
    return `data volume full: ${[...this.waiting.values()].join('; ')} waits for space`;
  }

  /** True while some storage write waits for space. */
  stalled(): boolean {
    return this.waiting.size > 0;
  }

  private refuse(reason: RefusalReason, message: string): never {
    try {
      this.hooks.onRefused?.(reason);
    } catch {
      // metrics are best effort
    }
    throw new InsufficientStorageError(message);
  }
}

function formatBytes(n: number): string {
  const mib = n / (1024 * 1024);
  return Number.isInteger(mib) ? `${mib} MiB` : `${n} bytes`;
}
