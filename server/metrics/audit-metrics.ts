// The audit log's lifecycle (issue 16): how old its oldest record is, how
// many records pruning removed, whether it is full (refusing new records
// because the export is behind at the cap), and verification runs that found
// a break in the hash chain. coffer_audit_db_bytes lives with the storage
// gauges (storage-metrics.ts); the export's lag with the export.
import type { Registry } from '../../common/prometheus.js';
import type { AuditLogOptions, AuditStatus } from '../audit/options.js';

export type AuditLifecycleHooks = Required<Pick<AuditLogOptions, 'onPruned' | 'onVerified'>>;

/** Registers the gauges (read at scrape time from `status`) and returns the hooks that count. */
export function registerAuditMetrics(registry: Registry, status: () => AuditStatus | null, now: () => number = Date.now): AuditLifecycleHooks {
  registry.gauge({
    name: 'coffer_audit_oldest_record_age_seconds',
    help: 'Age of the oldest record left in audit.db (0 when empty); stays near VAULT_AUDIT_RETENTION in steady state, lower when the size cap prunes first.',
    collect: () => {
      const ts = status()?.oldestTs;
      const t = ts ? Date.parse(ts) : NaN;
      return Number.isFinite(t) ? Math.max(0, (now() - t) / 1000) : 0;
    },
  });
  registry.gauge({
    name: 'coffer_audit_max_bytes',
    help: 'VAULT_AUDIT_MAX_BYTES: cap on audit.db and its WAL; pruning starts at 90% of it.',
    collect: () => status()?.maxBytes ?? 0,
  });
  registry.gauge({
    name: 'coffer_audit_full',
    help: '1 while audit.db is at its cap and nothing may be pruned (an export is behind): new requests fail closed with 503 audit_unavailable.',
    collect: () => (status()?.full ? 1 : 0),
  });
  const pruned = registry.counter({
    name: 'coffer_audit_records_pruned_total',
    help: 'Audit records removed by retention (VAULT_AUDIT_RETENTION) or the size cap (VAULT_AUDIT_MAX_BYTES).',
  });
  const failures = registry.counter({
    name: 'coffer_audit_chain_failures_total',
    help: 'Audit chain verifications (GET /v1/admin/audit/verify) that found a missing, altered or reordered record.',
  });
  pruned.inc(0);
  failures.inc(0);
  return {
    onPruned: (n) => pruned.inc(n),
    onVerified: (r) => {
      if (!r.ok) failures.inc();
    },
  };
}
