// A storage write on a full volume waits for space instead of failing.
import { setTimeout as sleep } from 'node:timers/promises';
import { isNoSpace } from '../../storage/write-guard.js';
import { NoLeaderError } from '../replicator.js';
import { WalSyncError } from '../wal.js';
import type { DriverContext } from './context.js';

/** A storage write that failed for lack of space is retried after this long, doubling up to STALL_RETRY_MAX_MS. */
const STALL_RETRY_MS = 50;
const STALL_RETRY_MAX_MS = 500;

/**
 * Runs a storage write, and while it fails for lack of space (ENOSPC,
 * EDQUOT, SQLITE_FULL) runs it again after a pause, until it succeeds or
 * the node closes. Meanwhile the loop holds this Ready (nothing later is
 * sent, applied or answered), the write guard refuses new writes with 507
 * and the node reports not ready; pending writes simply wait (a client that
 * gives up meanwhile saw a timeout, whose outcome the contract leaves open).
 * Any other failure is thrown at once.
 */
export async function untilStored<T>(
  ctx: Pick<DriverContext, 'writeGuard' | 'logger'> & { readonly isClosed: boolean },
  what: string,
  write: () => T | Promise<T>,
): Promise<T> {
  let waited = false;
  for (let pause = STALL_RETRY_MS; ; pause = Math.min(pause * 2, STALL_RETRY_MAX_MS)) {
    try {
      const out = await write();
      if (waited) {
        ctx.writeGuard?.resumed('raft');
        ctx.logger.info(`data volume has room again: ${what} resumed`);
      }
      return out;
    } catch (err) {
      if (err instanceof WalSyncError || !isNoSpace(err)) throw err;
      if (ctx.isClosed) throw new NoLeaderError('node is shutting down');
      if (!waited) {
        waited = true;
        ctx.writeGuard?.waitForSpace('raft', what);
        ctx.logger.error({ err: { code: (err as NodeJS.ErrnoException).code } }, `data volume full: ${what} waits for space; writes are refused meanwhile`);
      }
    }
    await sleep(pause);
  }
}
