// A failed fsync of the Raft log stops the node: it reports not ready and
// refuses writes, and does not retry (the kernel may have dropped the pages).
// The fault is injected, since a real disk cannot fail on demand.
import fs from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { client } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

let n: TestNode | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await n?.close().catch(() => undefined);
  n = null;
});

describe('raft log fsync failure', () => {
  it('stops the node instead of retrying', async () => {
    n = await startTestNode();
    const c = client(n.url, n.token);
    expect((await c.put('/v1/secrets/before', { value: 'ok' })).status).toBe(201);

    const fdatasync = vi.spyOn(fs, 'fdatasync').mockImplementation(((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    }) as typeof fs.fdatasync);
    const failed = await c.put('/v1/secrets/during', { value: 'x' });
    expect(failed.status).toBe(503);
    expect(fdatasync).toHaveBeenCalled();

    fdatasync.mockRestore(); // the disk "recovers": the node must still not carry on
    const ready = await client(n.url).get('/v1/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.problem).toMatch(/raft log write failed: EIO/);
    expect((await client(n.url).get('/v1/health')).body.status).toBe('degraded');
    const after = await c.put('/v1/secrets/after', { value: 'y' });
    expect(after.status).toBe(503);
    expect(after.body.error.code).toBe('no_leader');
  });
});
