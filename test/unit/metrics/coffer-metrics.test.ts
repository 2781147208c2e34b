import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../../server/audit/audit-log.js';
import { auditMetricsHooks, createCofferMetrics } from '../../../server/metrics/coffer-metrics.js';
import { checkHistogram, parseExposition } from './parse.js';

const EXPECTED: Record<string, string> = {
  coffer_apply_rejected_total: 'counter',
  coffer_http_requests_total: 'counter',
  coffer_http_request_duration_seconds: 'histogram',
  coffer_kms_requests_total: 'counter',
  coffer_dek_cache_hits_total: 'counter',
  coffer_dek_cache_misses_total: 'counter',
  coffer_audit_write_duration_seconds: 'histogram',
  coffer_audit_write_failures_total: 'counter',
  coffer_raft_commit_index: 'gauge',
  coffer_raft_applied_index: 'gauge',
  coffer_raft_auth_refused_total: 'counter',
  coffer_raft_streams_inbound: 'gauge',
  coffer_raft_linearizable_reads_total: 'counter',
  process_start_time_seconds: 'gauge',
  process_resident_memory_bytes: 'gauge',
};

describe('createCofferMetrics', () => {
  it('exposes the full Coffer metric set in parseable text format', () => {
    const m = createCofferMetrics();
    m.httpRequests.inc({ route: '/v1/secrets/:name', method: 'GET', status: 200, outcome: 'allowed' });
    m.httpRequests.inc({ route: '/v1/secrets/:name', method: 'GET', status: 403, outcome: 'denied' });
    m.httpRequestDuration.observe({ route: '/v1/secrets/:name', method: 'GET', outcome: 'allowed' }, 0.012);
    m.httpRequestDuration.observe({ route: '/v1/secrets/:name', method: 'GET', outcome: 'allowed' }, 20);
    m.kmsRequests.inc({ operation: 'decrypt', result: 'ok' });
    m.dekCacheHits.inc();
    m.dekCacheHits.inc();
    m.dekCacheMisses.inc();
    m.raftCommitIndex.set(17);
    m.raftAppliedIndex.setCollector(() => 15);

    const families = parseExposition(m.render());
    expect(Object.fromEntries([...families.values()].map((f) => [f.name, f.type]))).toEqual(EXPECTED);
    expect([...families.keys()]).toEqual([...families.keys()].sort());
    for (const f of families.values()) {
      expect(f.help.length).toBeGreaterThan(0);
      if (f.type === 'histogram') checkHistogram(f);
    }
    const one = (name: string) => families.get(name)?.samples;
    expect(one('coffer_http_requests_total')).toEqual([
      { name: 'coffer_http_requests_total', labels: { route: '/v1/secrets/:name', method: 'GET', status: '200', outcome: 'allowed' }, value: 1 },
      { name: 'coffer_http_requests_total', labels: { route: '/v1/secrets/:name', method: 'GET', status: '403', outcome: 'denied' }, value: 1 },
    ]);
    expect(one('coffer_dek_cache_hits_total')?.[0]?.value).toBe(2);
    expect(one('coffer_raft_commit_index')?.[0]?.value).toBe(17);
    expect(one('coffer_raft_applied_index')?.[0]?.value).toBe(15);
    // Both read paths from zero, so a rate() sees the first lease read.
    expect(one('coffer_raft_linearizable_reads_total')?.map((s) => [s.labels.path, s.value])).toEqual([['lease', 0], ['round', 0]]);
    expect(one('process_resident_memory_bytes')?.[0]?.value).toBeGreaterThan(1_000_000);
    const start = one('process_start_time_seconds')?.[0]?.value ?? 0;
    expect(start).toBeLessThanOrEqual(Date.now() / 1000);
    expect(start).toBeGreaterThan(Date.now() / 1000 - 3600);
  });

  it('records audit batch latency and failures through the AuditLog hooks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-audit-metrics-'));
    const m = createCofferMetrics();
    const log = new AuditLog(dir, auditMetricsHooks(m));
    try {
      const rec = { ts: new Date().toISOString(), node_id: 'n', request_id: 'r', actor: 'anonymous', client_ip: '10.0.0.1', action: 'secret.read', target: null, version: null, outcome: 'allowed' as const, status: 200 };
      await Promise.all([log.record(rec), log.record(rec)]);
      log.close();
      await expect(log.record(rec)).rejects.toThrow();
      const f = parseExposition(m.render());
      const count = f.get('coffer_audit_write_duration_seconds')?.samples.find((s) => s.name.endsWith('_count'));
      expect(count?.value).toBe(1); // two records, one batch
      // A closed log rejects up front without attempting a batch, so no failure is counted.
      expect(f.get('coffer_audit_write_failures_total')?.samples[0]?.value).toBe(0);
    } finally {
      await log.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
