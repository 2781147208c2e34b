// Snapshot images (issue 11, findings 5 and 6), over real SQLite files: a
// crafted image is refused whole, before it is proposed and again at apply,
// and a restore never brings back a token revoked since the image was taken.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_ROLE_RULES } from '../../../server/rbac/rules.js';
import { encodeCommand, type Command } from '../../../server/store/commands.js';
import { imageProblem } from '../../../server/store/image.js';
import { StateMachine } from '../../../server/store/state-machine.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-image-test-'));
let seq = 0;
const machines: StateMachine[] = [];
function fresh(): StateMachine {
  const sm = new StateMachine(fs.mkdtempSync(path.join(root, 'sm-')));
  machines.push(sm);
  return sm;
}
afterAll(() => {
  machines.forEach((m) => m.close());
  fs.rmSync(root, { recursive: true, force: true });
});

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-02-01T00:00:00.000Z';
const T2 = '2026-03-01T00:00:00.000Z';
const AT = '2026-04-01T00:00:00.000Z';
const digest = (n: number) => new Uint8Array(32).fill(n);

function apply(sm: StateMachine, cmds: Command[]) {
  let index = sm.appliedIndex().index;
  return cmds.map((c) => sm.applyEntry(++index, 1, encodeCommand(c)));
}

const token = (name: string, role: string, n: number): Command => ({ t: 'token.create', v: 1, name, token_sha256: digest(n), role, created_at: T0, expires_at: null });
const put = (name: string, version: number): Command => ({
  t: 'secret.put', v: 1, name, version, expected_current: version - 1, cas: null, ciphertext: new Uint8Array(32).fill(version),
  nonce: new Uint8Array(24), wrapped_dek: new Uint8Array(73), kms_key_id: 'local:test', created_at: T0, created_by: 'boot',
});

/** The state the image is taken of. */
function original(): StateMachine {
  const sm = fresh();
  const results = apply(sm, [
    { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['app/*'], actions: ['read_metadata'] }] },
    { t: 'role.put', v: 1, name: 'legacy', rules: [{ paths: ['old/*'], actions: ['list'] }] },
    { t: 'token.bootstrap', v: 1, token_sha256: digest(1), created_at: T0 },
    token('t1', 'reader', 2),
    token('t3', 'reader', 3),
    token('tl', 'legacy', 4),
    put('app/a', 1),
    put('app/a', 2),
    { t: 'kms.state', v: 1, values: { 'rewrap.watermark': 'none' } },
  ]);
  expect(results.every((r) => r.ok)).toBe(true);
  return sm;
}

function imageOf(sm: StateMachine): Buffer {
  const file = path.join(root, `image-${++seq}.db`);
  sm.writeImage(file);
  return fs.readFileSync(file);
}

let good: Buffer;
beforeAll(() => {
  good = imageOf(original());
});

/** The good image changed by `sql` (run on a copy, as an attacker would craft it). */
function crafted(sql: string): Buffer {
  const file = path.join(root, `crafted-${++seq}.db`);
  fs.writeFileSync(file, good);
  const db = new Database(file);
  db.exec(sql);
  db.close();
  return fs.readFileSync(file);
}

function tokens(sm: StateMachine): Record<string, { role: string; revoked_at: string | null }> {
  const rows = sm.db.prepare('SELECT name, role, revoked_at FROM tokens ORDER BY name').all() as { name: string; role: string; revoked_at: string | null }[];
  return Object.fromEntries(rows.map((r) => [r.name, { role: r.role, revoked_at: r.revoked_at }]));
}

const dump = (sm: StateMachine) =>
  ['secrets', 'secret_versions', 'roles', 'tokens', 'kms_state', 'raft_peers'].map((t) => sm.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all());

describe('image check', () => {
  it('accepts an image the node wrote', () => {
    expect(imageProblem(good)).toBeNull();
  });

  const CRAFTED: [string, string][] = [
    ['a column added (finding 5)', 'ALTER TABLE tokens ADD COLUMN extra'],
    ['a column added with a default', "ALTER TABLE secrets ADD COLUMN note TEXT DEFAULT 'x'"],
    ['an extra table', 'CREATE TABLE extra (x)'],
    ['an extra index', 'CREATE INDEX tokens_role ON tokens (role)'],
    ['a trigger', 'CREATE TRIGGER t AFTER INSERT ON tokens BEGIN DELETE FROM secrets; END'],
    ['a view', 'CREATE VIEW v AS SELECT * FROM tokens'],
    ['a missing table', 'DROP TABLE kms_state'],
    ['a table rebuilt without a constraint', 'CREATE TABLE t2 AS SELECT * FROM tokens; DROP TABLE tokens; ALTER TABLE t2 RENAME TO tokens'],
    ['a digest of the wrong size', "UPDATE tokens SET token_sha256 = x'00' WHERE name = 't1'"],
    ['a digest stored as text', "UPDATE tokens SET token_sha256 = 'abc' WHERE name = 't1'"],
    ['a timestamp that is not one', "UPDATE tokens SET created_at = 'yesterday' WHERE name = 't1'"],
    ['an invalid token name', "UPDATE tokens SET name = 'a b' WHERE name = 't1'"],
    ['a revocation time that is not one', "UPDATE tokens SET revoked_at = 5 WHERE name = 't1'"],
    ['a version number stored as text', "UPDATE secrets SET current_version = 'two'"],
    ['a version number that is not an integer', 'UPDATE secrets SET current_version = 1.5'],
    ['a version number beyond the safe range', 'UPDATE secrets SET current_version = 9007199254740993'],
    ['a current version with no row', 'UPDATE secrets SET current_version = 3'],
    ['a gap in the versions', 'DELETE FROM secret_versions WHERE version = 1'],
    ['versions beyond the current one', 'UPDATE secrets SET current_version = 1'],
    ['versions of no secret', "INSERT INTO secret_versions SELECT 'app/orphan', version, ciphertext, nonce, wrapped_dek, kms_key_id, wrapped_rotation_at, created_at, created_by FROM secret_versions"],
    ['a nonce of the wrong size', "UPDATE secret_versions SET nonce = x'00' WHERE version = 1"],
    ['a ciphertext shorter than its tag', "UPDATE secret_versions SET ciphertext = x'00' WHERE version = 1"],
    ['an empty wrapped DEK', "UPDATE secret_versions SET wrapped_dek = x'' WHERE version = 1"],
    ['an invalid secret name', "UPDATE secrets SET name = '../x'; UPDATE secret_versions SET name = '../x'"],
    ['rules that are not JSON', "UPDATE roles SET rules = 'not json' WHERE name = 'reader'"],
    ['rules with an unknown action', `UPDATE roles SET rules = '[{"paths":["a"],"actions":["fly"]}]' WHERE name = 'reader'`],
    ['a second built-in role', "UPDATE roles SET builtin = 1 WHERE name = 'reader'"],
    ['no admin role', "DELETE FROM roles WHERE name = 'admin'"],
    ['an invalid KMS state key', "INSERT INTO kms_state VALUES ('BAD KEY', 'v')"],
    ['a newer schema version', 'UPDATE applied SET schema_version = 99'],
    ['no applied row', 'DELETE FROM applied'],
  ];
  it.each(CRAFTED)('refuses an image with %s', (_what, sql) => {
    expect(imageProblem(crafted(sql))).toEqual(expect.any(String));
  });

  it('refuses what is not a whole SQLite database', () => {
    expect(imageProblem(Buffer.from('not a database at all'.repeat(10)))).toBe('not a SQLite database');
    expect(imageProblem(good.subarray(0, 2048))).toEqual(expect.any(String));
    const corrupt = Buffer.from(good);
    // Scribble over the second page (a b-tree page of a table), past the file header.
    for (let i = 4096 + 8; i < 4096 + 600; i++) corrupt[i] = (i * 37) & 0xff;
    expect(imageProblem(corrupt)).toEqual(expect.any(String));
  });

  it('a crafted image that reaches the log anyway is rejected by every node, which changes nothing', () => {
    const bad = crafted('ALTER TABLE tokens ADD COLUMN extra');
    const [a, b] = [original(), original()];
    const before = dump(a);
    for (const sm of [a, b]) {
      const [r] = apply(sm, [{ t: 'state.restore', v: 2, image: new Uint8Array(bad), at: AT }]);
      expect(r).toMatchObject({ ok: false, code: 'bad_request' });
      const [v1] = apply(sm, [{ t: 'state.restore', v: 1, image: new Uint8Array(bad) }]);
      expect(v1).toMatchObject({ ok: false, code: 'bad_request' });
    }
    expect(dump(a)).toEqual(before);
    expect(dump(b)).toEqual(before);
    expect(a.appliedIndex().index).toBe(b.appliedIndex().index);
  });
});

describe('restore keeps revocations (finding 6)', () => {
  /** The original state, moved on after the image was taken. */
  function later(): StateMachine {
    const sm = original();
    const results = apply(sm, [
      { t: 'token.revoke', v: 1, name: 'bootstrap-admin', revoked_at: T1 },
      { t: 'token.revoke', v: 1, name: 't3', revoked_at: T2 },
      // Deleted by an older release: no revocation time recorded, the token merely lost its role.
      { t: 'role.delete', v: 1, name: 'legacy' },
      token('t4', 'reader', 5),
      { t: 'token.revoke', v: 1, name: 't4', revoked_at: T2 },
      put('app/a', 3),
    ]);
    expect(results.every((r) => r.ok)).toBe(true);
    return sm;
  }

  it('a token revoked since the image was taken stays revoked; one created since is gone', () => {
    const sm = later();
    expect(apply(sm, [{ t: 'state.restore', v: 2, image: new Uint8Array(good), at: AT }])[0]).toEqual({ ok: true });
    expect(tokens(sm)).toEqual({
      'bootstrap-admin': { role: 'admin', revoked_at: T1 },
      t1: { role: 'reader', revoked_at: null },
      t3: { role: 'reader', revoked_at: T2 },
      // Its role comes back from the image, but the deletion had cut it off: revoked at the restore.
      tl: { role: 'legacy', revoked_at: AT },
    });
    expect(sm.db.prepare("SELECT current_version FROM secrets WHERE name = 'app/a'").pluck().get()).toBe(2);
    expect(sm.db.prepare("SELECT count(*) FROM roles WHERE name = 'legacy'").pluck().get()).toBe(1);
  });

  it('keeps a revocation by digest too, whatever name the image gives the token', () => {
    const sm = fresh();
    apply(sm, [token('renamed', 'admin', 2), { t: 'token.revoke', v: 1, name: 'renamed', revoked_at: T1 }]);
    apply(sm, [{ t: 'state.restore', v: 2, image: new Uint8Array(good), at: AT }]);
    // t1 carries digest 2 in the image.
    expect(tokens(sm).t1).toEqual({ role: 'reader', revoked_at: T1 });
  });

  it('keeps this release\'s built-in admin role whatever the image says about it', () => {
    const sm = later();
    const image = crafted("UPDATE roles SET rules = '[]' WHERE name = 'admin'");
    expect(imageProblem(image)).toBeNull();
    apply(sm, [{ t: 'state.restore', v: 2, image: new Uint8Array(image), at: AT }]);
    expect(JSON.parse(sm.db.prepare("SELECT rules FROM roles WHERE name = 'admin'").pluck().get() as string)).toEqual(ADMIN_ROLE_RULES);
  });

  it('gives the same result on every node', () => {
    const [a, b] = [later(), later()];
    for (const sm of [a, b]) apply(sm, [{ t: 'state.restore', v: 2, image: new Uint8Array(good), at: AT }]);
    expect(dump(a)).toEqual(dump(b));
  });

  it('an older release\'s state.restore v1 entry still applies as it did (a replayed log gives the same state)', () => {
    const sm = later();
    apply(sm, [{ t: 'state.restore', v: 1, image: new Uint8Array(good) }]);
    expect(tokens(sm)['bootstrap-admin']).toEqual({ role: 'admin', revoked_at: null });
  });
});
