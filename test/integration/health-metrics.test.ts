// Liveness, readiness, Prometheus metrics and TLS on a listening node.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { client } from '../helpers/http.js';
import { startTestNode, tempDir, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

describe('health and readiness', () => {
  it('reports the node, its role, release and capabilities to anyone', async () => {
    const n = await startTestNode();
    nodes.push(n);
    const h = await client(n.url).get('/v1/health');
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: 'ok', node_id: 'n1', role: 'leader', leader_id: 'n1', version: '0.1.0' });
    expect(h.body.capabilities).toContain('secret.put@1');
    const r = await client(n.url).get('/v1/ready');
    expect(r.status).toBe(200);
    expect(r.body.ready).toBe(true);
  });
});

describe('metrics', () => {
  it('serves Prometheus text to allowlisted addresses and counts requests, KMS calls, cache and audit', async () => {
    const n = await startTestNode();
    nodes.push(n);
    const c = client(n.url, n.token);
    await c.put('/v1/secrets/m/one', { value: 'x' });
    await c.get('/v1/secrets/m/one');
    await c.get('/v1/secrets/m/one');
    await c.get('/v1/secrets/nope');
    const m = await client(n.url).get('/metrics');
    expect(m.status).toBe(200);
    expect(m.headers['content-type']).toMatch(/^text\/plain; version=0.0.4/);
    const text = m.text;
    expect(text).toMatch(/coffer_http_requests_total\{route="\/v1\/secrets\/\*",method="GET",status="200",outcome="allowed"\} 2/);
    expect(text).toMatch(/coffer_http_requests_total\{route="\/v1\/secrets\/\*",method="GET",status="404",outcome="error"\} 1/);
    expect(text).toMatch(/coffer_http_request_duration_seconds_count\{route="\/v1\/secrets\/\*",method="PUT",outcome="allowed"\} 1/);
    expect(text).toMatch(/coffer_kms_requests_total\{operation="generate_data_key",result="ok"\} 1/);
    expect(text).toMatch(/coffer_kms_requests_total\{operation="decrypt",result="ok"\} 1/);
    expect(text).toMatch(/coffer_dek_cache_hits_total 1/);
    expect(text).toMatch(/coffer_dek_cache_misses_total 1/);
    expect(text).toMatch(/coffer_audit_write_duration_seconds_count [1-9]/);
    expect(text).toMatch(/coffer_raft_applied_index [1-9]/);
    expect(text).not.toContain('m/one'); // route templates only, never names
    // Disk: the audit database's size and the room left on the data folder's filesystem.
    const auditBytes = Number(/^coffer_audit_db_bytes (\d+)$/m.exec(text)?.[1]);
    const onDisk = ['audit.db', 'audit.db-wal'].map((f) => path.join(n.dataDir, f)).filter((f) => fs.existsSync(f))
      .reduce((sum, f) => sum + fs.statSync(f).size, 0);
    expect(auditBytes).toBeGreaterThan(0);
    expect(Math.abs(auditBytes - onDisk)).toBeLessThanOrEqual(64 * 1024); // a record or two may land in between
    const free = fs.statfsSync(n.dataDir);
    const available = Number(/^coffer_data_dir_available_bytes (\d+)$/m.exec(text)?.[1]);
    expect(available).toBeGreaterThan(0);
    expect(Math.abs(available - free.bavail * free.bsize)).toBeLessThan(512 * 1024 * 1024);
  });

  it('needs an allowlisted address or an admin token', async () => {
    const n = await startTestNode({ env: { VAULT_READ_ALLOWLIST: '' } });
    nodes.push(n);
    expect((await client(n.url).get('/metrics')).body.error.code).toBe('ip_not_allowed');
    expect((await client(n.url, 'cft_wrong').get('/metrics')).status).toBe(401);
    expect((await client(n.url, n.token).get('/metrics')).status).toBe(200);
  });
});

describe('TLS', () => {
  it('serves the API over TLS when both files are given', async () => {
    const dir = tempDir();
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
      '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const n = await startTestNode({ env: { VAULT_TLS_CERT_FILE: cert, VAULT_TLS_KEY_FILE: key } });
    nodes.push(n);
    expect(n.url).toMatch(/^https:/);
    const body = await new Promise<string>((resolve, reject) => {
      https.get(`${n.url}/v1/health`, { ca: fs.readFileSync(cert) }, (res) => {
        let t = '';
        res.on('data', (d) => (t += d));
        res.on('end', () => resolve(t));
      }).on('error', reject);
    });
    expect(JSON.parse(body).status).toBe('ok');
  });
});
