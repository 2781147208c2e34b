// The Coffer metric set served on `GET /metrics`. One instance per process;
// other modules get the typed handles injected rather than importing a global.
// Label values must be bounded: `route` is the route template
// (`/v1/secrets/:name`), never the raw URL, so secret names stay out of metrics.
import { REFUSAL_REASONS } from '../raft/cluster-auth.js';
import type { StateMachine } from '../store/state-machine.js';
import { Registry, type Counter, type Gauge, type Histogram } from '../../common/prometheus.js';

export type HttpOutcome = 'allowed' | 'denied' | 'error';

export interface CofferMetrics {
  readonly registry: Registry;
  httpRequests: Counter<'route' | 'method' | 'status' | 'outcome'>;
  httpRequestDuration: Histogram<'route' | 'method' | 'outcome'>;
  /** operation: generate_data_key | decrypt | re_encrypt | list_rotations; result: ok | error | … */
  kmsRequests: Counter<'operation' | 'result'>;
  dekCacheHits: Counter;
  dekCacheMisses: Counter;
  auditWriteDuration: Histogram;
  auditWriteFailures: Counter;
  /** Set by the raft node (or give it a collector with setCollector). */
  raftCommitIndex: Gauge;
  raftAppliedIndex: Gauge;
  /** Requests the Raft listener refused for want of cluster authentication, by reason (cluster-auth.ts RefusalReason). */
  raftAuthRefused: Counter<'reason'>;
  /** Members streaming Raft messages to this node now (the listener sets its collector). */
  raftStreamsInbound: Gauge;
  /** Linearizable reads on a multi-voter cluster, by how they were confirmed: `lease` (no round) or `round` (ReadIndex). */
  raftReads: Counter<'path'>;
  /** Committed commands applied as rejections, by kind (`invalid`, `fault`). */
  applyRejected: Counter<'kind'>;
  /** Prometheus text exposition of everything above. */
  render(): string;
}

// Audit writes are one fsync per batch: sub-millisecond on good disks, seconds when storage struggles.
const AUDIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const APPLY_REJECTION_KINDS: readonly Parameters<StateMachine['onRejected']>[0][] = ['invalid', 'fault'];

export function createCofferMetrics(): CofferMetrics {
  const registry = new Registry();
  // Process start in epoch seconds, fixed at creation (uptime anchors it to the real start).
  const startSeconds = Math.round((Date.now() / 1000 - process.uptime()) * 1000) / 1000;

  registry.gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', collect: () => startSeconds });
  registry.gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', collect: () => process.memoryUsage.rss() });

  const raftAuthRefused = registry.counter({
    name: 'coffer_raft_auth_refused_total',
    help: 'Raft listener requests refused with 401: no, bad or replayed cluster MAC, stale time, or a sender that is not a member.',
    labelNames: ['reason'],
  });
  const applyRejected = registry.counter({
    name: 'coffer_apply_rejected_total',
    help: 'Committed commands applied as a rejection with no state change: invalid content, or a fault every node repeats (a bug worth reporting).',
    labelNames: ['kind'],
  });
  const raftReads = registry.counter({
    name: 'coffer_raft_linearizable_reads_total',
    help: 'Linearizable reads on a cluster of several voters: path="lease" answered from the leader\'s read lease, path="round" after a ReadIndex heartbeat round.',
    labelNames: ['path'],
  });
  for (const path of ['lease', 'round']) raftReads.inc({ path }, 0);
  // Every label value from zero, so a rate() or an alert sees the first one.
  for (const reason of REFUSAL_REASONS) raftAuthRefused.inc({ reason }, 0);
  for (const kind of APPLY_REJECTION_KINDS) applyRejected.inc({ kind }, 0);

  return {
    registry,
    httpRequests: registry.counter({
      name: 'coffer_http_requests_total',
      help: 'HTTP requests served, by route template, method, status and outcome.',
      labelNames: ['route', 'method', 'status', 'outcome'],
    }),
    httpRequestDuration: registry.histogram({
      name: 'coffer_http_request_duration_seconds',
      help: 'HTTP request latency in seconds.',
      labelNames: ['route', 'method', 'outcome'],
    }),
    kmsRequests: registry.counter({
      name: 'coffer_kms_requests_total',
      help: 'Calls to the KMS provider, by operation and result.',
      labelNames: ['operation', 'result'],
    }),
    dekCacheHits: registry.counter({ name: 'coffer_dek_cache_hits_total', help: 'Unwrapped DEKs served from the in-memory cache.' }),
    dekCacheMisses: registry.counter({ name: 'coffer_dek_cache_misses_total', help: 'DEK lookups that had to call the KMS.' }),
    auditWriteDuration: registry.histogram({
      name: 'coffer_audit_write_duration_seconds',
      help: 'Time to commit and fsync one batch of audit records.',
      buckets: AUDIT_BUCKETS,
    }),
    auditWriteFailures: registry.counter({
      name: 'coffer_audit_write_failures_total',
      help: 'Audit batches that could not be written: their requests failed closed with 503, except committed changes, whose records are held and written again.',
    }),
    raftStreamsInbound: registry.gauge({ name: 'coffer_raft_streams_inbound', help: 'Members with an open Raft stream to this node (one per sending member).' }),
    raftCommitIndex: registry.gauge({ name: 'coffer_raft_commit_index', help: 'Highest Raft log index known to be committed.' }),
    raftAppliedIndex: registry.gauge({ name: 'coffer_raft_applied_index', help: 'Highest Raft log index applied to state.db.' }),
    raftAuthRefused,
    raftReads,
    applyRejected,
    render: () => registry.render(),
  };
}

/** Wiring for `new AuditLog(dataDir, auditMetricsHooks(m))`: one observation / failure per batch. */
export function auditMetricsHooks(m: CofferMetrics): {
  onFlush: (durationSeconds: number, count: number) => void;
  onFailure: (error: unknown, count: number) => void;
} {
  return {
    onFlush: (durationSeconds) => m.auditWriteDuration.observe(durationSeconds),
    onFailure: () => m.auditWriteFailures.inc(),
  };
}
