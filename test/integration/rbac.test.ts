// Role-based access control over a listening node: roles created through the
// API with exact, prefix (`app/*`), one-segment (`+`) and `*` rules; tokens
// minted for them; every path-scoped action tried on names inside and outside
// each rule. The expectations are written out here, not derived from the
// server's matcher.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, type HttpResponse } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const PATH_ACTIONS = ['create', 'update', 'delete', 'rotate', 'list', 'read_metadata'] as const;
type PathAction = (typeof PATH_ACTIONS)[number];

interface RoleCase {
  rules: { paths: string[]; actions: string[] }[];
  /** Names every path action is allowed on. */
  inside: string[];
  outside: string[];
}

const ROLES: Record<string, RoleCase> = {
  exact: {
    rules: [{ paths: ['app/db'], actions: [...PATH_ACTIONS] }],
    inside: ['app/db'],
    outside: ['app/db2', 'app/db/x', 'app', 'xapp/db', 'App/db', 'other'],
  },
  prefix: {
    rules: [{ paths: ['app/*'], actions: [...PATH_ACTIONS] }],
    inside: ['app/a', 'app/a/b/c', 'app/db', 'app/.x'],
    outside: ['app', 'apps/a', 'xapp/a', 'other/app/a', 'APP/a'],
  },
  plus: {
    rules: [{ paths: ['teams/+/db', 'svc/+'], actions: [...PATH_ACTIONS] }],
    inside: ['teams/red/db', 'teams/blue/db', 'svc/a'],
    outside: ['teams/db', 'teams/red/x/db', 'teams/red/db/x', 'teams/red/dbx', 'svc', 'svc/a/b'],
  },
  star: {
    rules: [{ paths: ['*'], actions: [...PATH_ACTIONS] }],
    inside: ['anything', 'a/b/c', 'app', 'teams/red/db'],
    outside: [],
  },
};

let n: TestNode;
let admin: ReturnType<typeof client>;
const tokens: Record<string, string> = {};

async function mint(name: string, role: string): Promise<string> {
  const res = await admin.post('/v1/tokens', { name, role });
  expect(res.status).toBe(201);
  return res.body.token as string;
}

async function putRole(name: string, rules: RoleCase['rules']): Promise<void> {
  const res = await admin.put(`/v1/roles/${name}`, { rules });
  expect(res.status).toBe(201);
}

beforeAll(async () => {
  n = await startTestNode();
  admin = client(n.url, n.token);
  for (const [role, rc] of Object.entries(ROLES)) {
    await putRole(role, rc.rules);
    tokens[role] = await mint(`t-${role}`, role);
  }
  // Split rights: metadata and listing on app/*, writes only below app/own/.
  await putRole('split', [
    { paths: ['app/*'], actions: ['read_metadata', 'list'] },
    { paths: ['app/own/*'], actions: ['create', 'update'] },
  ]);
  tokens.split = await mint('t-split', 'split');
  await putRole('nothing', []);
  tokens.nothing = await mint('t-nothing', 'nothing');
  await putRole('tokens-only', [{ paths: [], actions: ['manage_tokens'] }]);
  tokens.tokensOnly = await mint('t-tokens-only', 'tokens-only');
  await putRole('roles-only', [{ paths: [], actions: ['manage_roles'] }]);
  tokens.rolesOnly = await mint('t-roles-only', 'roles-only');
  await putRole('admin-action', [{ paths: [], actions: ['admin'] }]);
  tokens.adminAction = await mint('t-admin-action', 'admin-action');
});

afterAll(async () => {
  await n?.close();
});

function expectAllowed(res: HttpResponse, what: string): void {
  expect(res.status, `${what}: ${res.text}`).toBeGreaterThanOrEqual(200);
  expect(res.status, `${what}: ${res.text}`).toBeLessThan(300);
}

function expectForbidden(res: HttpResponse, what: string): void {
  expect({ what, status: res.status, code: res.body?.error?.code }).toEqual({ what, status: 403, code: 'forbidden' });
  expectError(res, 403, 'forbidden');
}

/** Runs every path action with `token` on `name` (which must not exist yet); admin fills in what the role may not do. */
async function matrix(token: string, name: string, allowed: (a: PathAction) => boolean): Promise<void> {
  const c = client(n.url, token);
  const check = (a: PathAction, res: HttpResponse) => (allowed(a) ? expectAllowed(res, `${a} ${name}`) : expectForbidden(res, `${a} ${name}`));

  const created = await c.put(`/v1/secrets/${name}`, { value: 'v1' });
  check('create', created);
  if (allowed('create')) expect(created.status).toBe(201);
  else expect((await admin.put(`/v1/secrets/${name}`, { value: 'v1' })).status).toBe(201);

  check('update', await c.put(`/v1/secrets/${name}`, { value: 'v2' }));
  const rotated = await c.post(`/v1/secrets/${name}:rotate`);
  check('rotate', rotated);
  if (!allowed('rotate')) expect(rotated.text).not.toMatch(/"value"/);

  const meta = await c.get(`/v1/metadata/${name}`);
  check('read_metadata', meta);
  if (allowed('read_metadata')) expect(meta.body.name).toBe(name);

  const listed = await c.get(`/v1/metadata?prefix=${encodeURIComponent(name)}&limit=1000`);
  if (listed.status === 200) {
    expect(listed.body.names.includes(name), `list ${name}`).toBe(allowed('list'));
    for (const other of listed.body.names as string[]) expect(other.startsWith(name)).toBe(true);
  } else {
    // A role with no list right anywhere is refused outright.
    expect(allowed('list')).toBe(false);
    expectForbidden(listed, `list ${name}`);
  }

  const deleted = await c.del(`/v1/secrets/${name}`);
  check('delete', deleted);
  if (allowed('delete')) expect(deleted.status).toBe(204);
  else expect((await admin.del(`/v1/secrets/${name}`)).status).toBe(204);
  // A refused delete really did nothing before the admin cleaned up: checked by the 204 above.
}

describe('path-scoped actions', () => {
  for (const [role, rc] of Object.entries(ROLES)) {
    it(`${role}: every action allowed inside the rule`, async () => {
      for (const name of rc.inside) await matrix(tokens[role]!, name, () => true);
    });
    if (rc.outside.length > 0) {
      it(`${role}: every action forbidden outside the rule`, async () => {
        for (const name of rc.outside) await matrix(tokens[role]!, name, () => false);
      });
    }
  }

  it('split rules: each action only where its own rule matches', async () => {
    const own = new Set<PathAction>(['create', 'update', 'read_metadata', 'list']);
    await matrix(tokens.split!, 'app/own/x', (a) => own.has(a));
    await matrix(tokens.split!, 'app/shared', (a) => a === 'read_metadata' || a === 'list');
    await matrix(tokens.split!, 'elsewhere/x', () => false);
  });

  it('a role without rules may do nothing, and gets 403 (not 401) everywhere', async () => {
    await matrix(tokens.nothing!, 'app/any', () => false);
    const c = client(n.url, tokens.nothing);
    expectForbidden(await c.get('/v1/metadata'), 'list all');
  });

  it('a forbidden update or rotate leaves the secret unchanged', async () => {
    await admin.put('/v1/secrets/guarded/x', { value: 'original' });
    const c = client(n.url, tokens.prefix);
    expectForbidden(await c.put('/v1/secrets/guarded/x', { value: 'evil' }), 'update');
    expectForbidden(await c.put('/v1/secrets/guarded/x', { value: 'evil', cas: 1 }), 'update with cas');
    expectForbidden(await c.post('/v1/secrets/guarded/x:rotate'), 'rotate');
    expectForbidden(await c.del('/v1/secrets/guarded/x'), 'delete');
    const meta = await admin.get('/v1/metadata/guarded/x');
    expect(meta.body.current_version).toBe(1);
    expect((await client(n.url).get('/v1/secrets/guarded/x')).body.value).toBe('original');
  });
});

describe('listing', () => {
  it('returns only names the role may list, across pages, and cursors never name hidden secrets', async () => {
    const names = ['app/a1', 'app/a2', 'apps/hidden1', 'app/a3', 'appz', 'b/hidden2', 'app/a4/deep', 'teams/red/db'];
    for (const name of names) await admin.put(`/v1/secrets/${name}`, { value: 'x' });
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 20; page++) {
      const q: string = `/v1/metadata?prefix=ap&limit=1${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await client(n.url, tokens.prefix).get(q);
      expect(res.status).toBe(200);
      seen.push(...(res.body.names as string[]));
      cursor = res.body.next_cursor as string | null;
      if (cursor) expect(Buffer.from(cursor, 'base64url').toString('utf8')).toMatch(/^app\//);
      if (!cursor) break;
    }
    expect(seen).toEqual(['app/a1', 'app/a2', 'app/a3', 'app/a4/deep']);
    // The last listable name ends the listing even though hidden names sort after it.
    const last = await client(n.url, tokens.prefix).get('/v1/metadata?prefix=ap&limit=4');
    expect(last.body).toEqual({ names: ['app/a1', 'app/a2', 'app/a3', 'app/a4/deep'], next_cursor: null });
    const all = await client(n.url, tokens.plus).get('/v1/metadata?limit=1000');
    expect(all.body.names).toEqual(['teams/red/db']);
    const everything = await client(n.url, tokens.star).get('/v1/metadata?limit=1000');
    expect(everything.body.names).toEqual(expect.arrayContaining(names));
  });
});

describe('global actions', () => {
  it('manage_tokens, manage_roles and admin each need their own grant', async () => {
    const routes: [string, (c: ReturnType<typeof client>) => Promise<HttpResponse>][] = [
      ['manage_tokens', (c) => c.get('/v1/tokens')],
      ['manage_tokens', (c) => c.post('/v1/tokens', { name: `probe-${Math.random().toString(36).slice(2)}`, role: 'prefix' })],
      ['manage_tokens', (c) => c.del('/v1/tokens/t-nothing-does-not-exist')],
      ['manage_roles', (c) => c.get('/v1/roles')],
      ['manage_roles', (c) => c.get('/v1/roles/prefix')],
      ['manage_roles', (c) => c.put('/v1/roles/probe', { rules: [{ paths: ['x/*'], actions: ['list'] }] })],
      ['manage_roles', (c) => c.del('/v1/roles/probe-missing')],
      ['admin', (c) => c.get('/v1/admin/audit')],
      ['admin', (c) => c.get('/v1/admin/cluster')],
    ];
    const holders: Record<string, string> = {
      manage_tokens: tokens.tokensOnly!,
      manage_roles: tokens.rolesOnly!,
      admin: tokens.adminAction!,
    };
    for (const [holderAction, token] of Object.entries({ ...holders, star: tokens.star!, nothing: tokens.nothing! })) {
      const c = client(n.url, token);
      for (const [needed, call] of routes) {
        const res = await call(c);
        const what = `${holderAction} calling a ${needed} route`;
        if (holderAction === needed) {
          // Allowed past authorization: a 404 for a missing token/role is fine, a 403 is not.
          expect(res.status, `${what}: ${res.text}`).not.toBe(403);
          expect(res.status, `${what}: ${res.text}`).not.toBe(401);
        } else {
          expectForbidden(res, what);
        }
      }
    }
  });

  it('path rules never grant a global action, even with `*`', async () => {
    expectForbidden(await client(n.url, tokens.star).get('/v1/tokens'), 'star listing tokens');
    expectForbidden(await client(n.url, tokens.star).get('/v1/admin/audit'), 'star reading audit');
  });

  it('the built-in admin role cannot be changed or deleted, not even by an admin', async () => {
    const rules = [{ paths: ['*'], actions: ['list'] }];
    for (const c of [admin, client(n.url, tokens.rolesOnly)]) {
      expectError(await c.put('/v1/roles/admin', { rules }), 409, 'conflict');
      expectError(await c.put('/v1/roles/admin', { rules: [] }), 409, 'conflict');
      expectError(await c.del('/v1/roles/admin'), 409, 'conflict');
    }
    const role = await admin.get('/v1/roles/admin');
    expect(role.body).toMatchObject({ name: 'admin', builtin: true });
    expect(role.body.rules).toEqual([
      { paths: ['*'], actions: ['create', 'update', 'delete', 'rotate', 'list', 'read_metadata', 'manage_tokens', 'manage_roles', 'admin'] },
    ]);
    // And the bootstrap admin still has everything.
    expect((await admin.get('/v1/admin/cluster')).status).toBe(200);
  });

  it('manage_tokens without admin cannot mint a token for a role with global actions', async () => {
    const c = client(n.url, tokens.tokensOnly);
    for (const role of ['admin', 'tokens-only', 'roles-only', 'admin-action']) {
      const res = await c.post('/v1/tokens', { name: `esc-${role}`, role });
      expectForbidden(res, `mint ${role}`);
      expect(res.text).not.toContain('cft_');
    }
    const listed = await admin.get('/v1/tokens');
    expect((listed.body.tokens as { name: string }[]).some((t) => t.name.startsWith('esc-'))).toBe(false);
    // A data role is fine, and that token gets exactly that role.
    const ok = await c.post('/v1/tokens', { name: 'minted-by-tokens-only', role: 'prefix' });
    expect(ok.status).toBe(201);
    expectForbidden(await client(n.url, ok.body.token).get('/v1/tokens'), 'data token listing tokens');
    // An admin may mint any role.
    expect((await admin.post('/v1/tokens', { name: 'minted-admin', role: 'admin' })).status).toBe(201);
  });

  it('manage_roles without admin cannot grant global actions, to its own role or any other', async () => {
    const c = client(n.url, tokens.rolesOnly);
    const escalate = [{ paths: ['*'], actions: ['admin', 'manage_tokens', 'manage_roles', 'create', 'update'] }];
    expectForbidden(await c.put('/v1/roles/roles-only', { rules: escalate }), 'grant itself admin');
    expectForbidden(await c.put('/v1/roles/prefix', { rules: [{ paths: [], actions: ['admin'] }] }), 'grant another role admin');
    expectForbidden(await c.put('/v1/roles/new-powerful', { rules: [{ paths: [], actions: ['manage_tokens'] }] }), 'create a privileged role');
    // Still no admin route for it afterwards, and the roles are unchanged.
    expectForbidden(await c.get('/v1/admin/audit'), 'audit after attempted escalation');
    expect((await admin.get('/v1/roles/prefix')).body.rules).toEqual(ROLES.prefix!.rules);
    expect((await admin.get('/v1/roles/new-powerful')).status).toBe(404);
    // Data-only roles are its business.
    expect((await c.put('/v1/roles/data-role', { rules: [{ paths: ['d/*'], actions: ['create', 'list'] }] })).status).toBe(201);
    expect((await c.put('/v1/roles/data-role', { rules: [{ paths: ['d/*'], actions: ['list'] }] })).status).toBe(200);
    expect((await c.del('/v1/roles/data-role')).status).toBe(204);
    // An admin may create privileged roles.
    expect((await admin.put('/v1/roles/ops', { rules: [{ paths: [], actions: ['manage_tokens'] }] })).status).toBe(201);
  });

  it('a role change applies to existing tokens at once; a deleted role\'s tokens are refused at once', async () => {
    await putRole('shifting', [{ paths: ['s/*'], actions: ['create'] }]);
    const t = await mint('t-shifting', 'shifting');
    const c = client(n.url, t);
    expect((await c.put('/v1/secrets/s/one', { value: 'x' })).status).toBe(201);
    expect((await admin.put('/v1/roles/shifting', { rules: [{ paths: ['other/*'], actions: ['create'] }] })).status).toBe(200);
    expectForbidden(await c.put('/v1/secrets/s/two', { value: 'x' }), 'after narrowing');
    expect((await admin.del('/v1/roles/shifting')).status).toBe(204);
    expectError(await c.put('/v1/secrets/other/x', { value: 'x' }), 401, 'unauthorized');
  });

  // Issue 11, finding 11: recreating a deleted role with more rights silently upgraded its old tokens.
  it('a deleted role\'s tokens never come back with a new role of that name', async () => {
    await putRole('fleeting', [{ paths: ['f/*'], actions: ['read_metadata'] }]);
    const old = client(n.url, await mint('t-fleeting', 'fleeting'));
    expect((await admin.put('/v1/secrets/f/x', { value: 'x' })).status).toBe(201);
    expect((await old.get('/v1/metadata/f/x')).status).toBe(200);
    expect((await admin.del('/v1/roles/fleeting')).status).toBe(204);
    expectError(await old.get('/v1/metadata/f/x'), 401, 'unauthorized');
    // The same name again, now with every path action: the old token stays refused.
    await putRole('fleeting', [{ paths: ['*'], actions: [...PATH_ACTIONS] }]);
    expectError(await old.get('/v1/metadata/f/x'), 401, 'unauthorized');
    expectError(await old.put('/v1/secrets/f/x', { value: 'taken over' }), 401, 'unauthorized');
    const listed = (await admin.get('/v1/tokens')).body.tokens.find((t: { name: string }) => t.name === 't-fleeting');
    expect(listed.revoked_at).toEqual(expect.any(String));
    // A token minted for the new role gets the new role's rights.
    const fresh = client(n.url, await mint('t-fleeting-2', 'fleeting'));
    expect((await fresh.put('/v1/secrets/f/x', { value: 'v2' })).status).toBe(200);
    expect((await admin.get('/v1/metadata/f/x')).body.current_version).toBe(2);
  });

  // Issue 11, finding 10: manage_tokens alone could revoke every admin token and lock the admins out.
  it('manage_tokens without admin cannot revoke tokens it could not mint, bootstrap-admin included', async () => {
    const c = client(n.url, tokens.tokensOnly);
    const victims = ['bootstrap-admin', 't-admin-action', 't-roles-only'];
    for (const name of victims) expectForbidden(await c.del(`/v1/tokens/${name}`), `revoke ${name}`);
    expect((await admin.get('/v1/admin/cluster')).status).toBe(200);
    expect((await client(n.url, tokens.adminAction).get('/v1/admin/audit')).status).toBe(200);
    const listed = (await admin.get('/v1/tokens')).body.tokens as { name: string; revoked_at: string | null }[];
    for (const name of victims) expect(listed.find((t) => t.name === name)?.revoked_at).toBeNull();
    // Tokens of data roles are its business; an admin may revoke any token.
    expect((await c.post('/v1/tokens', { name: 'data-victim', role: 'prefix' })).status).toBe(201);
    expect((await c.del('/v1/tokens/data-victim')).status).toBe(204);
    expect((await admin.post('/v1/tokens', { name: 'admin-victim', role: 'admin' })).status).toBe(201);
    expect((await admin.del('/v1/tokens/admin-victim')).status).toBe(204);
  });
});

// Issue 11, finding 9: 403 said "does not allow update" for existing names and "create" for missing ones.
describe('names outside a token\'s rules', () => {
  it('every path route answers the same 403 whether or not the name exists', async () => {
    await admin.put('/v1/secrets/probe/exists', { value: 'x' });
    const routes: [string, (c: ReturnType<typeof client>, name: string) => Promise<HttpResponse>][] = [
      ['PUT', (c, name) => c.put(`/v1/secrets/${name}`, { value: 'y' })],
      ['PUT with cas', (c, name) => c.put(`/v1/secrets/${name}`, { value: 'y', cas: 1 })],
      ['rotate', (c, name) => c.post(`/v1/secrets/${name}:rotate`)],
      ['DELETE', (c, name) => c.del(`/v1/secrets/${name}`)],
      ['metadata', (c, name) => c.get(`/v1/metadata/${name}`)],
      ['list', (c, name) => c.get(`/v1/metadata?prefix=${encodeURIComponent(name)}`)],
    ];
    for (const holder of ['nothing', 'prefix', 'plus', 'exact', 'split', 'tokensOnly']) {
      const c = client(n.url, tokens[holder]);
      for (const [route, call] of routes) {
        const existing = await call(c, 'probe/exists');
        const missing = await call(c, 'probe/missing');
        const what = `${holder} ${route}`;
        if (route === 'list' && existing.status === 200) {
          // A role that may list elsewhere gets an empty page either way.
          expect({ what, body: existing.body }).toEqual({ what, body: { names: [], next_cursor: null } });
        } else {
          expectForbidden(existing, what);
        }
        expect({ what, status: missing.status, body: missing.body }).toEqual({ what, status: existing.status, body: existing.body });
      }
    }
    expect((await admin.get('/v1/metadata/probe/exists')).body.current_version).toBe(1);
  });
});
