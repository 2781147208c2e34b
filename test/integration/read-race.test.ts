// Value reads racing the changes that replace a stored version underneath
// them (a fuzz run once answered 500 integrity_error for an existing version):
// restore of an image, delete + re-create of the same (name, version), a new
// version, a KMS rotation with a forced re-wrap pass. Every read must answer
// 200 with a value that was written, or 404; never a 500.
import { afterEach, describe, expect, it } from 'vitest';
import type { LocalKms } from '../../server/kms/local.js';
import { request } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function snapshot(n: TestNode): Promise<Buffer> {
  const res = await fetch(`${n.url}/v1/admin/snapshot`, { headers: { authorization: `Bearer ${n.token}` } });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function hammer(env: Record<string, string>, ms: number): Promise<void> {
  const n = await startTestNode({ env: { VAULT_KMS_REWRAP_ENABLED: 'true', VAULT_KMS_REWRAP_POLL_SECS: '3600', VAULT_KMS_REWRAP_MAX_PER_SEC: '10000', ...env } });
  nodes.push(n);
  const admin = (method: string, path: string, body?: unknown) => request(n.url, method, path, { token: n.token, ...(body === undefined ? {} : { body }) });
  expect((await admin('PUT', '/v1/secrets/race/b', { value: 'setup-1' })).status).toBe(201);
  expect((await admin('PUT', '/v1/secrets/race/b', { value: 'setup-2' })).status).toBe(200);
  const image = await snapshot(n);
  const written = new Set(['setup-1', 'setup-2']);
  const problems: string[] = [];
  let stop = false;
  let reads = 0;

  const reader = async (path: string) => {
    while (!stop) {
      const res = await request(n.url, 'GET', path);
      reads++;
      if (res.status === 200 ? !written.has(res.body.value) : res.status !== 404) {
        problems.push(`${path}: ${res.status} ${res.status === 200 ? 'an unknown value' : res.text}`);
      }
    }
  };
  let counter = 0;
  const writer = async () => {
    const kms = n.node.internals.kms as LocalKms;
    for (let step = 0; !stop; step++) {
      const value = `w-${++counter}`;
      written.add(value);
      switch (step % 5) {
        case 0: {
          const res = await fetch(`${n.url}/v1/admin/snapshot`, {
            method: 'POST', body: image, headers: { authorization: `Bearer ${n.token}`, 'content-type': 'application/octet-stream' },
          });
          if (res.status !== 200) problems.push(`restore: ${res.status}`);
          break;
        }
        case 1:
          await admin('DELETE', '/v1/secrets/race/b');
          await admin('PUT', '/v1/secrets/race/b', { value });
          break;
        case 2:
          await admin('PUT', '/v1/secrets/race/b', { value });
          break;
        case 3:
          kms.rotate();
          await admin('POST', '/v1/admin/kms/rewrap');
          break;
        default:
          await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  const readers = [reader('/v1/secrets/race/b?version=1'), reader('/v1/secrets/race/b?version=2'), reader('/v1/secrets/race/b'), reader('/v1/secrets/race/b?version=1&consistency=stale')];
  const writing = writer();
  await new Promise((r) => setTimeout(r, ms));
  stop = true;
  await Promise.all([...readers, writing]);
  expect(reads).toBeGreaterThan(100);
  expect(problems.slice(0, 10)).toEqual([]);
}

describe('value reads racing restores, re-creates and re-wraps', () => {
  it('with the DEK cache (the default)', async () => {
    await hammer({}, 3_000);
  }, 30_000);

  it('without the DEK cache', async () => {
    await hammer({ VAULT_DEK_CACHE_TTL_SECS: '0' }, 3_000);
  }, 30_000);
});
