// Room on the data volume, and what its lack does to writes: enough to alert
// well before VAULT_MIN_FREE_BYTES is reached, and to see it when it was.
import fs from 'node:fs';
import type { FreeSpaceWatcher } from '../storage/free-space.js';
import type { RefusalReason, WriteGuard } from '../storage/write-guard.js';
import type { Counter, Registry } from '../../common/prometheus.js';

export interface StorageMetrics {
  /** Writes refused with 507 before they were proposed, by reason. */
  writesRefused: Counter<'reason'>;
}

const REASONS: readonly RefusalReason[] = ['below_floor', 'volume_full'];

/**
 * Registers the storage gauges and the refusal counter. Gauges read at
 * scrape time: statfs is taken fresh there (and refreshes the write path's
 * cached reading too); nothing here runs per request.
 */
export function registerStorageMetrics(
  registry: Registry,
  space: FreeSpaceWatcher,
  guard: () => Pick<WriteGuard, 'stalled'>,
  auditDbPath: string,
): StorageMetrics {
  registry.gauge({
    name: 'coffer_data_dir_available_bytes',
    help: 'Bytes still available to this process on the data folder\'s filesystem.',
    collect: () => space.refresh(),
  });
  registry.gauge({
    name: 'coffer_data_dir_min_free_bytes',
    help: 'VAULT_MIN_FREE_BYTES: below this many available bytes, writes are refused with 507.',
    collect: () => space.minFreeBytes,
  });
  registry.gauge({
    name: 'coffer_storage_waiting_for_space',
    help: '1 while a write to the Raft log, state.db or audit.db waits for space on a full volume (the node is not ready meanwhile).',
    collect: () => (guard().stalled() ? 1 : 0),
  });
  registry.gauge({
    name: 'coffer_audit_db_bytes',
    help: 'Size of audit.db and its WAL on disk, bytes.',
    collect: () => fileBytes(auditDbPath) + fileBytes(`${auditDbPath}-wal`),
  });
  const writesRefused = registry.counter({
    name: 'coffer_writes_refused_total',
    help: 'Writes refused with 507 insufficient_storage before anything was proposed: below VAULT_MIN_FREE_BYTES, or while a storage write waits for space.',
    labelNames: ['reason'],
  });
  for (const reason of REASONS) writesRefused.inc({ reason }, 0);
  return { writesRefused };
}

/** A file's size, 0 when it does not exist (a WAL between checkpoints may not). */
function fileBytes(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
