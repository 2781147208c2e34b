// GET /v1/metadata?prefix=P&delimiter=/ on a real node: one folder level,
// names and folders sharing pages and cursor; a role sees a folder only when
// it may list a name in it (also with a cursor it forged); only '/' is a
// delimiter; without it the answer is what it always was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

// Names chosen around '/' in byte order ('-' '.' '/' '0'), so folders and names interleave.
const NAMES = [
  'app-other',
  'app.cfg',
  'app/a-x',
  'app/a.y',
  'app/a/deep/er/x',
  'app/a/x',
  'app/a/y',
  'app/a0',
  'app/b/secret',
  'app/b/more/secret',
  'app/c/1',
  'app/top',
  'app0',
  'other/x',
  'teams/t1/db',
  'teams/t2/cache',
  'teams/t3/db/backup',
  'z',
];

let n: TestNode;
let admin: ReturnType<typeof client>;
const tokens: Record<string, string> = {};

async function role(name: string, rules: unknown): Promise<ReturnType<typeof client>> {
  expect((await admin.put(`/v1/roles/${name}`, { rules })).status).toBe(201);
  const minted = await admin.post('/v1/tokens', { name, role: name });
  expect(minted.status).toBe(201);
  tokens[name] = minted.body.token;
  return client(n.url, minted.body.token);
}

const q = (params: Record<string, string | number>): string =>
  '/v1/metadata?' + Object.entries(params).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');

/** Every page of a listing, following next_cursor, as [names, folders] per page. */
async function pages(c: ReturnType<typeof client>, params: Record<string, string | number>): Promise<{ names: string[]; folders: string[] }[]> {
  const out: { names: string[]; folders: string[] }[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100; i++) {
    const res = await c.get(q({ ...params, ...(cursor === null ? {} : { cursor }) }));
    expect(res.status).toBe(200);
    out.push({ names: res.body.names, folders: res.body.folders });
    cursor = res.body.next_cursor;
    if (cursor === null) return out;
  }
  throw new Error('cursor never ended');
}

beforeAll(async () => {
  n = await startTestNode();
  admin = client(n.url, n.token);
  for (const name of NAMES) expect((await admin.put(`/v1/secrets/${name}`, { value: 'v' })).status).toBe(201);
});
afterAll(async () => {
  await n?.close();
});

describe('GET /v1/metadata?delimiter=/', () => {
  it('lists one level: names directly under the prefix and folders ending in /', async () => {
    const top = await admin.get(q({ prefix: '', delimiter: '/' }));
    expect(top.status).toBe(200);
    expect(top.body).toEqual({ names: ['app-other', 'app.cfg', 'app0', 'z'], folders: ['app/', 'other/', 'teams/'], next_cursor: null });
    expect((await admin.get(q({ prefix: 'app/', delimiter: '/' }))).body).toEqual({
      names: ['app/a-x', 'app/a.y', 'app/a0', 'app/top'],
      folders: ['app/a/', 'app/b/', 'app/c/'],
      next_cursor: null,
    });
    expect((await admin.get(q({ prefix: 'app/a/', delimiter: '/' }))).body).toEqual({ names: ['app/a/x', 'app/a/y'], folders: ['app/a/deep/'], next_cursor: null });
    // A prefix that is not a folder: entries run to the next '/'.
    expect((await admin.get(q({ prefix: 'app/a', delimiter: '/' }))).body).toEqual({ names: ['app/a-x', 'app/a.y', 'app/a0'], folders: ['app/a/'], next_cursor: null });
    expect((await admin.get(q({ prefix: 'nothing/', delimiter: '/' }))).body).toEqual({ names: [], folders: [], next_cursor: null });
  });

  it('pages over names and folders together: every entry once, in order, at most limit per page', async () => {
    for (const prefix of ['', 'app/', 'app', 'teams/']) {
      const whole = (await admin.get(q({ prefix, delimiter: '/', limit: 1000 }))).body;
      const all = [...whole.names, ...whole.folders].sort();
      for (const limit of [1, 2, 3, 5]) {
        const got = await pages(admin, { prefix, delimiter: '/', limit });
        for (const p of got) expect(p.names.length + p.folders.length).toBeLessThanOrEqual(limit);
        const seen = got.flatMap((p) => [...p.names, ...p.folders].sort());
        expect(seen, `prefix ${prefix} limit ${limit}`).toEqual(all);
        // No empty last page: a cursor only when something follows.
        expect(got.length).toBe(Math.max(1, Math.ceil(all.length / limit)));
      }
    }
  });

  it('never shows a folder the role cannot list a name in', async () => {
    const onlyA = await role('only-a', [{ paths: ['app/a/*'], actions: ['list'] }]);
    expect((await onlyA.get(q({ prefix: 'app/', delimiter: '/' }))).body).toEqual({ names: [], folders: ['app/a/'], next_cursor: null });
    expect((await onlyA.get(q({ prefix: '', delimiter: '/' }))).body).toEqual({ names: [], folders: ['app/'], next_cursor: null });
    expect((await onlyA.get(q({ prefix: 'app/b/', delimiter: '/' }))).body).toEqual({ names: [], folders: [], next_cursor: null });
    expect((await onlyA.get(q({ prefix: 'app/a/', delimiter: '/' }))).body).toEqual({ names: ['app/a/x', 'app/a/y'], folders: ['app/a/deep/'], next_cursor: null });
    // Paging one entry at a time, and with cursors forged to point anywhere, app/b/ never appears.
    const forged = ['app/a/', 'app/a0', 'app/b', 'app/b/', 'app/b/more/', 'app/', '', 'a', 'zzz'].map((c) => Buffer.from(c).toString('base64url'));
    for (const cursor of forged) {
      const res = await onlyA.get(q({ prefix: 'app/', delimiter: '/', limit: 1, ...(cursor ? { cursor } : {}) }));
      expect(res.status).toBe(200);
      expect(res.text).not.toMatch(/app\/b|app\/c|app\/top|app\/a0/);
    }

    const plus = await role('team-db', [{ paths: ['teams/+/db'], actions: ['list'] }]);
    // t2 holds no db; t3's db is a folder, not a name the rule matches.
    expect((await plus.get(q({ prefix: 'teams/', delimiter: '/' }))).body).toEqual({ names: [], folders: ['teams/t1/'], next_cursor: null });
    // read_metadata alone is no right to list; nor is a rule naming a path that does not exist.
    const meta = await role('meta-only', [{ paths: ['*'], actions: ['read_metadata'] }, { paths: ['app/z/q'], actions: ['list'] }]);
    expect((await meta.get(q({ prefix: '', delimiter: '/' }))).body).toEqual({ names: [], folders: [], next_cursor: null });
    // A role without list anywhere: 403, as without the delimiter.
    const none = await role('no-list', [{ paths: ['*'], actions: ['read_metadata'] }]);
    expectError(await none.get(q({ prefix: 'app/', delimiter: '/' })), 403, 'forbidden');
    expectError(await client(n.url).get(q({ prefix: 'app/', delimiter: '/' })), 401, 'unauthorized');
  });

  it('accepts only / as the delimiter', async () => {
    for (const bad of ['delimiter=,', 'delimiter=', 'delimiter=//', 'delimiter=a', 'delimiter=%00', 'delimiter=/&delimiter=/', 'delimiter=%5C']) {
      expectError(await admin.get(`/v1/metadata?prefix=app/&${bad}`), 400, 'bad_request');
    }
    // '/' percent-encoded is the same delimiter.
    expect((await admin.get('/v1/metadata?prefix=app/&delimiter=%2F')).body.folders).toEqual(['app/a/', 'app/b/', 'app/c/']);
  });

  it('without the delimiter answers exactly as before: every name below, no folders key', async () => {
    const res = await admin.get(q({ prefix: 'app/' }));
    expect(res.body).toEqual({
      names: NAMES.filter((x) => x.startsWith('app/')).sort(),
      next_cursor: null,
    });
    expect(Object.keys(res.body).sort()).toEqual(['names', 'next_cursor']);
    const onlyA = client(n.url, tokens['only-a']!);
    expect((await onlyA.get(q({ prefix: 'app/' }))).body).toEqual({ names: ['app/a/deep/er/x', 'app/a/x', 'app/a/y'], next_cursor: null });
    const paged = await pages(admin, { prefix: '', limit: 4 });
    expect(paged.flatMap((p) => p.names)).toEqual([...NAMES].sort());
    expect(paged.every((p) => p.folders === undefined)).toBe(true);
  });

  it('audits a one-level listing as secret.list with its prefix', async () => {
    await admin.get(q({ prefix: 'teams/', delimiter: '/' }));
    const rows = (await admin.get('/v1/admin/audit?limit=1000')).body.records as { action: string; target: string | null; status: number }[];
    expect(rows.filter((r) => r.action === 'secret.list' && r.target === 'teams/').length).toBeGreaterThan(0);
    expect(rows.some((r) => r.action === 'secret.list' && r.status === 400)).toBe(true);
  });
});
