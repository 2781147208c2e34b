// What an AuditLog is opened with (AuditLogOptions), what it reports of
// itself (AuditStatus), and the default cap on audit.db.
import { statfsSync } from 'node:fs';
import type { AuditVerifyResult } from './chain.js';

export interface AuditLogOptions {
  /** Called after each committed batch (for coffer_audit_write_duration_seconds). */
  onFlush?: (durationSeconds: number, count: number) => void;
  /** Called when a batch fails (for coffer_audit_write_failures_total). */
  onFailure?: (error: unknown, count: number) => void;
  /**
   * How long a write or probe waits for a lock held by another connection.
   * Default 1000. The wait happens in the writer thread, but records queue
   * behind it and this process should be the only writer, so keep it short.
   */
  busyTimeoutMs?: number;
  /**
   * Records of committed changes are waiting to be written (true, and
   * whether for lack of space) or were all written at last (false).
   */
  onHeld?: (held: boolean, noSpace: boolean) => void;
  /** VAULT_AUDIT_RETENTION in ms (default 30 days). */
  retentionMs?: number;
  /** VAULT_AUDIT_MAX_BYTES: cap on audit.db + WAL (default: a quarter of the data volume, defaultAuditMaxBytes). */
  maxBytes?: number;
  /**
   * The highest record id that may be pruned: the lowest cursor over the
   * enabled exports; null when no export is enabled. Asked before every prune.
   * (Also settable later with setKeepAfterId.)
   */
  keepAfterId?: () => number | null;
  /** How often the writer thread is asked to prune when nothing else asks (ms, default 250). */
  pruneIntervalMs?: number;
  /** The clock retention is measured against (epoch ms). Tests move it. */
  now?: () => number;
  /** Records removed by a prune. */
  onPruned?: (count: number) => void;
  /** The log became full (reason) or is no longer full (null). */
  onFull?: (reason: string | null) => void;
  /** A verification ran (GET /v1/admin/audit/verify): for coffer_audit_chain_failures_total. */
  onVerified?: (result: AuditVerifyResult) => void;
  /** Records up to this id are durable (after each committed batch): wakes an export. */
  onDurable?: (lastId: number) => void;
  /** A prune request failed (logged by the owner; the next one retries). */
  onPruneFailure?: (error: unknown) => void;
  /** The chain key file was created now although chained records already existed (key lost): logged by the owner. */
  onChainKeyCreated?: (hadChainedRecords: boolean) => void;
}

/** What the audit log last saw of itself (for metrics and the verify route). */
export interface AuditStatus {
  /** audit.db + WAL bytes at the last prune (the storage gauge measures it live). */
  bytes: number;
  maxBytes: number;
  retentionMs: number;
  oldestId: number | null;
  /** ts of the oldest remaining record, as stored. */
  oldestTs: string | null;
  /** Newest durable record id (0 when none was ever written). */
  lastId: number;
  full: boolean;
}

/** A quarter of the file system holding `dir`, as statfs sees it now (VAULT_AUDIT_MAX_BYTES's default). */
export function defaultAuditMaxBytes(dir: string): number {
  const s = statfsSync(dir);
  return Math.max(1024 * 1024, Math.floor((Number(s.blocks) * Number(s.bsize)) / 4));
}
