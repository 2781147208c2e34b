// A failed fdatasync of the Raft log cannot be retried (the kernel may have
// dropped the pages it could not write), and it does not tell whether the
// write is committed (the record may still be on disk, and a leader's appends
// leave before its own fsync). So the node must neither carry on nor answer
// the pending write with an error: `coffer server` exits non-zero at once,
// saying why, and starting it again works. The fault is injected, since a real
// disk cannot fail on demand.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../server/config/config.js';
import { startNode, type RunningNode } from '../../server/node/node.js';
import { client, request } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';

const FAIL_FDATASYNC = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fail-fdatasync.mjs');
const EXIT_STORAGE_FAULT = 74;

let inProcess: RunningNode | null = null;
let spawned: SpawnedNode | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await inProcess?.close().catch(() => undefined);
  inProcess = null;
  await spawned?.stop('SIGKILL');
  spawned = null;
});

describe('raft log fsync failure', () => {
  it('coffer server exits non-zero before answering the pending write, and a restart recovers', async () => {
    const dataDir = tempDir();
    const marker = path.join(tempDir(), 'disk-is-failing');
    const token = randomToken();
    const env = {
      ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token }),
      NODE_OPTIONS: `--import ${FAIL_FDATASYNC}`,
      COFFER_TEST_FAIL_FDATASYNC: marker,
    };
    spawned = await spawnNode(env);
    const c = client(spawned.url, token);
    expect((await c.put('/v1/secrets/before', { value: 'ok' })).status).toBe(201);

    fs.writeFileSync(marker, '');
    const exited = new Promise<number | null>((resolve) => spawned!.proc.once('exit', (code) => resolve(code)));
    // No answer at all: the outcome is unknown, which a client must treat like a timeout, never an error.
    const during = await c.put('/v1/secrets/during', { value: 'x' }, { timeoutMs: 10_000 }).then(
      (res) => `answered ${res.status} ${res.text}`,
      (err: Error) => `no answer (${err.message})`,
    );
    expect(during).toMatch(/^no answer/);
    expect(await exited).toBe(EXIT_STORAGE_FAULT);
    expect(spawned.output()).toMatch(/"level":60.*raft log write failed: EIO on fdatasync.*storage fault: exiting so the node is restarted/s);
    expect(spawned.output()).toContain('coffer server: stopped after a storage fault: raft log write failed: EIO on fdatasync');

    // The disk is replaced (the fault is gone): the same data folder starts and serves.
    fs.rmSync(marker);
    spawned = await spawnNode(env);
    const again = client(spawned.url, token);
    expect((await again.get('/v1/metadata/before')).body.current_version).toBe(1);
    expect((await again.put('/v1/secrets/after', { value: 'y' })).status).toBe(201);
    // The unanswered write may or may not have survived (its record reached the file before the fsync
    // failed); either is allowed, since nobody was told it failed.
    expect([200, 404]).toContain((await again.get('/v1/metadata/during')).status);
  });

  it('in-process, the exit hook runs before the pending write is failed, and the node stays stopped', async () => {
    const dataDir = tempDir();
    const token = randomToken();
    const events: string[] = [];
    const logger = pino({ level: 'silent' });
    inProcess = await startNode(loadConfig(nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token })), logger, {
      onFatal: (err) => events.push(`fatal: ${err.message}`),
    });
    const c = client(inProcess.apiUrl, token);
    expect((await c.put('/v1/secrets/before', { value: 'ok' })).status).toBe(201);

    // The pool's fdatasync, and the event loop's (a lone append after lone ones, as here, is synced there).
    const eio = () => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    const fdatasync = vi.spyOn(fs, 'fdatasync').mockImplementation(((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      cb(eio());
    }) as typeof fs.fdatasync);
    const fdatasyncSync = vi.spyOn(fs, 'fdatasyncSync').mockImplementation(() => {
      throw eio();
    });
    const failed = await c.put('/v1/secrets/during', { value: 'x' });
    events.push(`answered ${failed.status}`);
    expect(fdatasync.mock.calls.length + fdatasyncSync.mock.calls.length).toBeGreaterThan(0);
    // `coffer server` exits in the hook, so this 503 is only what an embedder without one gets.
    expect(events).toEqual(['fatal: raft log write failed: EIO on fdatasync', 'answered 503']);

    fdatasync.mockRestore(); // the disk "recovers": the node must still not carry on
    fdatasyncSync.mockRestore();
    const ready = await request(inProcess.apiUrl, 'GET', '/v1/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.problem).toMatch(/raft log write failed: EIO/);
    const health = await request(inProcess.apiUrl, 'GET', '/v1/health');
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('stopped');
    const after = await c.put('/v1/secrets/after', { value: 'y' });
    expect(after.status).toBe(503);
    expect(after.body.error.code).toBe('no_leader');
    expect(events).toHaveLength(2); // the hook runs once
  });
});
