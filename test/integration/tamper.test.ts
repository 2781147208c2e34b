// Tampering with state.db: every stored record that was changed must fail
// authentication on read (500 integrity_error), never yield a value, and leave
// untouched versions readable. First while the node is down (cold caches),
// then underneath a running node whose DEK cache (with the per-version
// XChaCha20 subkeys) is warm for every version that gets changed.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

type Column = 'ciphertext' | 'nonce' | 'wrapped_dek';

const VALUE = (name: string, version: number) => `value-of-${name}-v${version}-do-not-leak`;

// Each secret gets versions 1 and 2, then exactly one stored thing is changed.
const CASES = {
  'flip/ciphertext-first': { version: 2 },
  'flip/ciphertext-tag': { version: 1 },
  'flip/nonce': { version: 1 },
  'flip/wrapped-dek': { version: 2 },
  'flip/wrapped-dek-format': { version: 1 },
  'swap/v1-into-v2': { version: 2 },
  'moved/from-other-secret': { version: 1 },
  'truncate/ciphertext': { version: 2 },
  'truncate/nonce': { version: 2 },
  'truncate/wrapped-dek': { version: 2 },
  'retype/ciphertext-as-text': { version: 1 },
  'renamed/row': { version: 1 },
} as const;
type CaseName = keyof typeof CASES;

let first: TestNode;
let restarted: TestNode;

function flip(db: Database.Database, name: string, version: number, column: Column, at: (len: number) => number): void {
  const row = db.prepare(`SELECT ${column} AS b FROM secret_versions WHERE name = ? AND version = ?`).get(name, version) as { b: Buffer };
  const b = Buffer.from(row.b);
  const i = at(b.length);
  b[i] = b[i]! ^ 0x01;
  const changed = db.prepare(`UPDATE secret_versions SET ${column} = ? WHERE name = ? AND version = ?`).run(b, name, version).changes;
  expect(changed).toBe(1);
}

function truncate(db: Database.Database, name: string, version: number, column: Column): void {
  const row = db.prepare(`SELECT ${column} AS b FROM secret_versions WHERE name = ? AND version = ?`).get(name, version) as { b: Buffer };
  db.prepare(`UPDATE secret_versions SET ${column} = ? WHERE name = ? AND version = ?`).run(row.b.subarray(0, row.b.length - 1), name, version);
}

function copySealed(db: Database.Database, from: [string, number], to: [string, number]): void {
  const src = db.prepare('SELECT ciphertext, nonce, wrapped_dek, kms_key_id FROM secret_versions WHERE name = ? AND version = ?').get(...from);
  const changed = db
    .prepare('UPDATE secret_versions SET ciphertext = @ciphertext, nonce = @nonce, wrapped_dek = @wrapped_dek, kms_key_id = @kms_key_id WHERE name = @name AND version = @version')
    .run({ ...(src as object), name: to[0], version: to[1] }).changes;
  expect(changed).toBe(1);
}

/** Makes exactly the changes CASES describes, on secrets named `${prefix}${case}` (donor: `${prefix}donor/secret`). */
function tamperAll(db: Database.Database, prefix: string): void {
  const n = (name: string) => prefix + name;
  db.transaction(() => {
    flip(db, n('flip/ciphertext-first'), 2, 'ciphertext', () => 0);
    flip(db, n('flip/ciphertext-tag'), 1, 'ciphertext', (len) => len - 1);
    flip(db, n('flip/nonce'), 1, 'nonce', () => 5);
    flip(db, n('flip/wrapped-dek'), 2, 'wrapped_dek', (len) => Math.floor(len / 2));
    flip(db, n('flip/wrapped-dek-format'), 1, 'wrapped_dek', () => 0);
    copySealed(db, [n('swap/v1-into-v2'), 1], [n('swap/v1-into-v2'), 2]);
    copySealed(db, [n('donor/secret'), 1], [n('moved/from-other-secret'), 1]);
    truncate(db, n('truncate/ciphertext'), 2, 'ciphertext');
    truncate(db, n('truncate/nonce'), 2, 'nonce');
    truncate(db, n('truncate/wrapped-dek'), 2, 'wrapped_dek');
    db.prepare("UPDATE secret_versions SET ciphertext = CAST(hex(ciphertext) AS TEXT) WHERE name = ? AND version = 1").run(n('retype/ciphertext-as-text'));
    // A row whose name column is changed: the sealed bytes belong to another name now.
    db.prepare('DELETE FROM secret_versions WHERE name = ? AND version = 1').run(n('renamed/row'));
    db.prepare('UPDATE secret_versions SET name = ?, version = 1 WHERE name = ? AND version = 2').run(n('renamed/row'), n('donor/secret'));
  })();
}

/** Writes versions 1 and 2 of every case and of the donor, each with its own value. */
async function writeAll(url: string, token: string, prefix: string): Promise<void> {
  const c = client(url, token);
  for (const name of [...Object.keys(CASES), 'donor/secret']) {
    for (const version of [1, 2]) {
      const res = await c.put(`/v1/secrets/${prefix}${name}`, { value: VALUE(prefix + name, version) });
      expect(res.body.version).toBe(version);
    }
  }
}

/** The changed version fails closed (twice, on every path to it), the other version still reads. */
async function expectTamperedCase(url: string, token: string, name: string, bad: number): Promise<void> {
  const c = client(url);
  const paths = [`/v1/secrets/${name}?version=${bad}`, `/v1/secrets/${name}?version=${bad}&consistency=stale`];
  if (bad === 2) paths.push(`/v1/secrets/${name}`); // the current version
  for (const p of paths) {
    // Twice: a failure must not be cached into a success (or vice versa).
    for (let i = 0; i < 2; i++) {
      const res = await c.get(p);
      expectError(res, 500, 'integrity_error');
      expect(res.text).not.toContain('do-not-leak');
      expect(res.text).not.toContain(name); // not even which row
    }
  }
  // With a valid admin token too: authority does not open a bad record.
  expectError(await client(url, token).get(`/v1/secrets/${name}?version=${bad}`), 500, 'integrity_error');

  const good = bad === 1 ? 2 : 1;
  const ok = await c.get(`/v1/secrets/${name}?version=${good}`);
  expect(ok.status).toBe(200);
  expect(ok.body).toMatchObject({ name, version: good, value: VALUE(name, good) });
}

beforeAll(async () => {
  first = await startTestNode();
  // donor/secret provides sealed rows to move into other secrets.
  await writeAll(first.url, first.token, '');
  await first.close();

  const db = new Database(path.join(first.dataDir, 'state.db'));
  tamperAll(db, '');
  db.close();
  // Our connection was the last one: closing it checkpointed, so the edits are in state.db itself.
  expect(fs.existsSync(path.join(first.dataDir, 'state.db-wal'))).toBe(false);

  restarted = await startTestNode({ dataDir: first.dataDir, masterKey: first.masterKey, bootstrapToken: first.token });
});

afterAll(async () => {
  await restarted?.close();
});

describe('tampered state.db', () => {
  it.each(Object.keys(CASES) as CaseName[])('%s: the changed version fails with integrity_error, the other still reads', async (name) => {
    await expectTamperedCase(restarted.url, restarted.token, name, CASES[name].version);
  });

  it('still serves the donor row and other secrets, and metadata of tampered ones', async () => {
    const c = client(restarted.url, restarted.token);
    expect((await c.get('/v1/secrets/donor/secret?version=1')).body.value).toBe(VALUE('donor/secret', 1));
    const meta = await c.get('/v1/metadata/flip/nonce');
    expect(meta.status).toBe(200);
    expect(meta.body.current_version).toBe(2);
  });

  it('audits integrity failures as errors and logs them without values', async () => {
    const c = client(restarted.url, restarted.token);
    const res = await c.get('/v1/secrets/flip/nonce?version=1');
    expectError(res, 500, 'integrity_error');
    const audit = await c.get('/v1/admin/audit?limit=1000');
    const rec = audit.body.records.find((r: { request_id: string }) => r.request_id === res.headers['x-request-id']);
    expect(rec).toMatchObject({ action: 'secret.read', target: 'flip/nonce', version: 1, outcome: 'error', status: 500 });
    const log = fs.readFileSync(restarted.logFile, 'utf8');
    expect(log).toContain('request failed');
    expect(log).not.toContain('do-not-leak');
  });

  it('a new write after tampering still gets a fresh, readable version', async () => {
    const c = client(restarted.url, restarted.token);
    const w = await c.put('/v1/secrets/flip/ciphertext-first', { value: 'fresh' });
    expect(w.body.version).toBe(3);
    expect((await client(restarted.url).get('/v1/secrets/flip/ciphertext-first')).body.value).toBe('fresh');
    expectError(await client(restarted.url).get('/v1/secrets/flip/ciphertext-first?version=2'), 500, 'integrity_error');
  });
});

describe('tampered underneath a running node, caches warm', () => {
  const PREFIX = 'warm/';
  let live: TestNode;

  beforeAll(async () => {
    live = await startTestNode();
    await writeAll(live.url, live.token, PREFIX);
    // Read every version twice, so the DEK cache holds each version's DEK and subkey (and the row cache its row).
    const c = client(live.url);
    for (const name of [...Object.keys(CASES), 'donor/secret']) {
      for (const version of [1, 2]) {
        for (let i = 0; i < 2; i++) {
          const res = await c.get(`/v1/secrets/${PREFIX}${name}?version=${version}`);
          expect(res.body.value).toBe(VALUE(PREFIX + name, version));
        }
      }
    }
    const metrics = (await c.get('/metrics')).text;
    const entries = Number(/^coffer_dek_cache_entries (\d+)$/m.exec(metrics)?.[1]);
    expect(entries).toBe(2 * (Object.keys(CASES).length + 1));
    expect(Number(/^coffer_dek_cache_hits_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(entries);

    // Another connection changes the rows while the node runs (WAL: the node sees committed changes).
    const db = new Database(path.join(live.dataDir, 'state.db'));
    db.pragma('busy_timeout = 5000');
    tamperAll(db, PREFIX);
    db.close();
    // Any secret change drops the node's in-memory ciphertext rows, so the next reads fetch the changed ones.
    expect((await client(live.url, live.token).put(`/v1/secrets/${PREFIX}unrelated`, { value: 'x' })).status).toBe(201);
  });

  afterAll(async () => {
    await live?.close();
  });

  it.each(Object.keys(CASES) as CaseName[])('%s: a warm cache does not mask the change', async (name) => {
    await expectTamperedCase(live.url, live.token, PREFIX + name, CASES[name].version);
  });
});
