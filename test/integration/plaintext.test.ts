// Nothing secret reaches the disk in the clear: after writing, rotating and
// reading secrets and minting tokens, every file in the data folder (state.db
// and its -wal/-shm, raft/log, audit.db, the node's own logs) is searched for
// the values and tokens as UTF-8, hex and base64 (at every alignment).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { client } from '../helpers/http.js';
import { allFiles, nodeEnv, randomMasterKey, randomToken, spawnNode, startTestNode, tempDir } from '../helpers/node.js';

/** Encodings a value could hide under inside a file: raw, hex, and base64/base64url at each 3-byte alignment. */
function needles(secret: string): Buffer[] {
  const raw = Buffer.from(secret, 'utf8');
  const out = [raw, Buffer.from(raw.toString('hex')), Buffer.from(raw.toString('hex').toUpperCase())];
  for (let shift = 0; shift < 3; shift++) {
    const b64 = Buffer.concat([Buffer.alloc(shift), raw]).toString('base64');
    // Drop the characters that depend on the unknown neighbouring bytes.
    const core = b64.slice(shift === 0 ? 0 : shift + 1, b64.length - 4);
    out.push(Buffer.from(core), Buffer.from(core.replace(/\+/g, '-').replace(/\//g, '_')));
  }
  return out;
}

/** Every (file, encoding) in which one of the secrets is found. */
function findLeaks(dir: string, secrets: Record<string, string>, only?: (file: string) => boolean): string[] {
  const leaks: string[] = [];
  const files = allFiles(dir).filter((f) => !only || only(f));
  for (const file of files) {
    const content = fs.readFileSync(file);
    for (const [label, secret] of Object.entries(secrets)) {
      needles(secret).forEach((n, i) => {
        if (content.includes(n)) leaks.push(`${label} in ${path.relative(dir, file)} (encoding #${i})`);
      });
    }
  }
  return leaks;
}

function marker(label: string): string {
  return `${label}-${randomBytes(18).toString('base64url')}`;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

async function exercise(url: string, adminToken: string): Promise<Record<string, string>> {
  const c = client(url, adminToken);
  const secrets: Record<string, string> = {
    v1: marker('first-value'),
    v2: marker('second-value ✓ ünïcode'),
    other: marker('other-secret'),
    rejected: marker('rejected-value'),
  };
  expect((await c.put('/v1/secrets/leak/probe', { value: secrets.v1 })).status).toBe(201);
  expect((await c.put('/v1/secrets/leak/probe', { value: secrets.v2 })).status).toBe(200);
  expect((await c.put('/v1/secrets/leak/other', { value: secrets.other })).status).toBe(201);
  const rotated = await c.post('/v1/secrets/leak/probe:rotate', { length: 48 });
  expect(rotated.status).toBe(200);
  secrets.rotated = rotated.body.value as string;
  const rotatedHex = await c.post('/v1/secrets/leak/other:rotate', { length: 40, charset: 'hex' });
  secrets.rotatedHex = rotatedHex.body.value as string;
  // Reads of every version, current and stale.
  const reader = client(url);
  expect((await reader.get('/v1/secrets/leak/probe?version=1')).body.value).toBe(secrets.v1);
  expect((await reader.get('/v1/secrets/leak/probe?version=2')).body.value).toBe(secrets.v2);
  expect((await reader.get('/v1/secrets/leak/probe')).body.value).toBe(secrets.rotated);
  expect((await reader.get('/v1/secrets/leak/probe?consistency=stale')).body.value).toBe(secrets.rotated);
  // Refused writes carrying a secret: malformed JSON, wrong type next to it, unknown field, no permission.
  expect((await c.put('/v1/secrets/leak/probe', undefined, { rawBody: `{"value":"${secrets.rejected}"` })).status).toBe(400);
  expect((await c.put('/v1/secrets/leak/probe', { value: secrets.rejected, extra: true })).status).toBe(400);
  expect((await client(url, 'cft_nope').put('/v1/secrets/leak/probe', { value: secrets.rejected })).status).toBe(401);
  // Tokens: the one minted now and the one used to mint it.
  const minted = await c.post('/v1/tokens', { name: 'leak-probe', role: 'admin' });
  expect(minted.status).toBe(201);
  secrets.mintedToken = minted.body.token as string;
  expect((await client(url, secrets.mintedToken).get('/v1/metadata/leak/probe')).status).toBe(200);
  secrets.bootstrapToken = adminToken;
  // A deleted secret's values must not linger either.
  const gone = marker('deleted-value');
  await c.put('/v1/secrets/leak/deleted', { value: gone });
  expect((await c.del('/v1/secrets/leak/deleted')).status).toBe(204);
  secrets.deleted = gone;
  return secrets;
}

describe('no plaintext on disk', () => {
  it('in-process node: values, rotated values and tokens appear in no file under the data folder', async () => {
    const n = await startTestNode();
    const secrets = await exercise(n.url, n.token);
    await n.close();

    const files = allFiles(n.dataDir).map((f) => path.relative(n.dataDir, f));
    expect(files).toEqual(expect.arrayContaining(['state.db', 'audit.db', path.join('raft', 'log'), 'node.log']));
    expect(findLeaks(n.dataDir, secrets)).toEqual([]);
    // The digests are what is stored for tokens, and they are there: the search would have seen bytes.
    const log = fs.readFileSync(n.logFile, 'utf8');
    expect(log.length).toBeGreaterThan(0);
    expect(log).not.toContain(sha256Hex(secrets.mintedToken!));
  });

  it('real `coffer server` process: same search, including its stdout/stderr, -wal and -shm while running', async () => {
    const dataDir = tempDir();
    const token = randomToken();
    const env = { ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token }), LOG_LEVEL: 'debug' };
    const proc = await spawnNode(env);
    const outFile = path.join(dataDir, 'server-output.log');
    let secrets: Record<string, string>;
    try {
      secrets = await exercise(proc.url, token);
      // While the process runs, state.db-wal / -shm and audit.db-wal hold the latest pages: search them now too.
      const live = allFiles(dataDir).map((f) => path.relative(dataDir, f));
      expect(live).toEqual(expect.arrayContaining(['state.db-wal', 'audit.db-wal']));
      expect(findLeaks(dataDir, secrets)).toEqual([]);
    } finally {
      const code = await proc.stop();
      fs.writeFileSync(outFile, proc.output());
      expect(code).toBe(0);
    }
    expect(fs.readFileSync(outFile, 'utf8')).toContain('coffer node ready');
    // The values above were opened by libsodium (its self-test passed in the real server process).
    expect(fs.readFileSync(outFile, 'utf8')).toMatch(/"cipher":"sodium".*coffer node ready/);
    expect(findLeaks(dataDir, secrets)).toEqual([]);
  });

  it('the search itself works: a planted value is found in each encoding', () => {
    const dir = tempDir();
    const s = marker('planted');
    fs.writeFileSync(path.join(dir, 'raw'), `xx${s}yy`);
    fs.writeFileSync(path.join(dir, 'hex'), Buffer.from(s).toString('hex'));
    for (const pad of [0, 1, 2]) {
      fs.writeFileSync(path.join(dir, `b64-${pad}`), Buffer.concat([randomBytes(pad), Buffer.from(s)]).toString('base64'));
    }
    const leaks = findLeaks(dir, { s });
    for (const f of ['raw', 'hex', 'b64-0', 'b64-1', 'b64-2']) expect(leaks.some((l) => l.includes(` ${f} `))).toBe(true);
  });
});
