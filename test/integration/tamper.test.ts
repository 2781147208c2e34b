// Tampering with state.db while the node is down: every stored record that was
// changed must fail authentication on read (500 integrity_error), never yield a
// value, and leave untouched versions readable.
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

beforeAll(async () => {
  first = await startTestNode();
  const c = client(first.url, first.token);
  for (const name of [...Object.keys(CASES), 'donor/secret']) {
    for (const version of [1, 2]) {
      const res = await c.put(`/v1/secrets/${name}`, { value: VALUE(name, version) });
      expect(res.body.version).toBe(version);
    }
  }
  // donor/secret provides sealed rows to move into other secrets.
  await first.close();

  const db = new Database(path.join(first.dataDir, 'state.db'));
  db.transaction(() => {
    flip(db, 'flip/ciphertext-first', 2, 'ciphertext', () => 0);
    flip(db, 'flip/ciphertext-tag', 1, 'ciphertext', (n) => n - 1);
    flip(db, 'flip/nonce', 1, 'nonce', () => 5);
    flip(db, 'flip/wrapped-dek', 2, 'wrapped_dek', (n) => Math.floor(n / 2));
    flip(db, 'flip/wrapped-dek-format', 1, 'wrapped_dek', () => 0);
    copySealed(db, ['swap/v1-into-v2', 1], ['swap/v1-into-v2', 2]);
    copySealed(db, ['donor/secret', 1], ['moved/from-other-secret', 1]);
    truncate(db, 'truncate/ciphertext', 2, 'ciphertext');
    truncate(db, 'truncate/nonce', 2, 'nonce');
    truncate(db, 'truncate/wrapped-dek', 2, 'wrapped_dek');
    db.prepare("UPDATE secret_versions SET ciphertext = CAST(hex(ciphertext) AS TEXT) WHERE name = 'retype/ciphertext-as-text' AND version = 1").run();
    // A row whose name column is changed: the sealed bytes belong to another name now.
    db.prepare("DELETE FROM secret_versions WHERE name = 'renamed/row' AND version = 1").run();
    db.prepare("UPDATE secret_versions SET name = 'renamed/row', version = 1 WHERE name = 'donor/secret' AND version = 2").run();
  })();
  db.close();
  // Our connection was the last one: closing it checkpointed, so the edits are in state.db itself.
  expect(fs.existsSync(path.join(first.dataDir, 'state.db-wal'))).toBe(false);

  restarted = await startTestNode({ dataDir: first.dataDir, masterKey: first.masterKey, bootstrapToken: first.token });
});

afterAll(async () => {
  await restarted?.close();
});

const untouched = (name: CaseName): number => (CASES[name].version === 1 ? 2 : 1);

describe('tampered state.db', () => {
  it.each(Object.keys(CASES) as CaseName[])('%s: the changed version fails with integrity_error, the other still reads', async (name) => {
    const c = client(restarted.url);
    const bad = CASES[name].version;
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
    expectError(await client(restarted.url, restarted.token).get(`/v1/secrets/${name}?version=${bad}`), 500, 'integrity_error');

    const good = untouched(name);
    const ok = await c.get(`/v1/secrets/${name}?version=${good}`);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ name, version: good, value: VALUE(name, good) });
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
