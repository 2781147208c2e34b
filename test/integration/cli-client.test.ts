// The client commands of issue 17 as a person runs them (spawned `coffer` processes
// against a real node): login/logout and the token order, token create | login,
// token lookup/self, one-level secret list, snapshot save/restore, and --json on
// every client command of the command table. No raw token is ever put in an
// assertion message or printed.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_SPECS } from '../../server/cli/audit-command.js';
import { CLIENT_SPECS, COMMANDS, ROOT_SPECS } from '../../server/cli/commands.js';
import { CHARSETS, ROTATE_LENGTH_MAX, ROTATE_LENGTH_MIN } from '../../server/secrets/random-value.js';
import { COFFER_BIN, nodeEnv, randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';

const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function coffer(args: string[], env: Record<string, string>, input?: string): Promise<Result> {
  const child = run(process.execPath, [COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, maxBuffer: 64 * 1024 * 1024 });
  if (input !== undefined) child.child.stdin!.end(input);
  try {
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as Result;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A shell pipeline (for `coffer token create … | coffer login`); `coffer` is a function calling the build. */
async function shell(script: string, env: Record<string, string>): Promise<Result> {
  const prelude = `coffer() { ${JSON.stringify(process.execPath)} ${JSON.stringify(COFFER_BIN)} "$@"; }\nset -o pipefail\n`;
  try {
    const { stdout, stderr } = await run('bash', ['-c', prelude + script], { env: { PATH: process.env.PATH ?? '', ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as Result;
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const mode = (p: string) => fs.statSync(p).mode & 0o777;

let node: SpawnedNode;
let admin: string;

beforeAll(async () => {
  admin = randomToken();
  node = await spawnNode(nodeEnv({ dataDir: tempDir('coffer-cli-client-'), masterKey: randomMasterKey(), bootstrapToken: admin }));
}, 30_000);
afterAll(async () => {
  await node?.stop();
});

describe('login, logout and where the token comes from', () => {
  let home: string;
  let env: Record<string, string>;
  const file = () => path.join(home, '.config', 'coffer', 'token');

  beforeAll(() => {
    home = tempDir('coffer-login-home-');
    env = { HOME: home, COFFER_ADDR: node.url };
  });

  it('a refused token writes nothing and exits 1; a missing token names the way to log in', async () => {
    const bad = await coffer(['login'], env, 'not-a-real-token\n');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unauthorized \(401\)/);
    expect(fs.existsSync(path.join(home, '.config', 'coffer'))).toBe(false);
    const none = await coffer(['token', 'self'], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/coffer login/);
  });

  it('login checks the token, writes it 0600 in a 0700 folder, and later commands use it without COFFER_TOKEN', async () => {
    const r = await coffer(['login'], env, `${admin}\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^logged in as bootstrap-admin \(role admin, never expires\)/);
    expect(r.stdout).toBe('');
    expect(r.stderr.includes(admin)).toBe(false);
    expect(mode(file())).toBe(0o600);
    expect(mode(path.dirname(file()))).toBe(0o700);
    expect(fs.readFileSync(file(), 'utf8').trim() === admin).toBe(true);
    // No temporary file left beside it.
    expect(fs.readdirSync(path.dirname(file()))).toEqual(['token']);
    const self = await coffer(['token', 'self'], env);
    expect(self.code, self.stderr).toBe(0);
    expect(self.stdout).toMatch(/^name +bootstrap-admin$/m);
    expect(self.stdout).toMatch(/^role +admin$/m);
    expect(self.stdout.includes(admin)).toBe(false);
  });

  it('--token, then COFFER_TOKEN, override the login file; VAULT_BOOTSTRAP_TOKEN comes last', async () => {
    const minted = await coffer(['token', 'create', 'order-reader', '--role', 'admin', '--json'], env);
    expect(minted.code, minted.stderr).toBe(0);
    const other = (JSON.parse(minted.stdout) as { token: string }).token;
    const who = async (args: string[], extra: Record<string, string>) => {
      const r = await coffer(['token', 'self', '--json', ...args], { ...env, ...extra });
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { name: string }).name;
    };
    expect(await who([], {})).toBe('bootstrap-admin');
    expect(await who([], { COFFER_TOKEN: other })).toBe('order-reader');
    expect(await who(['--token', other], {})).toBe('order-reader');
    expect(await who(['--token', admin], { COFFER_TOKEN: other })).toBe('bootstrap-admin');
    // The login file beats VAULT_BOOTSTRAP_TOKEN; without the file, VAULT_BOOTSTRAP_TOKEN is used.
    expect(await who([], { VAULT_BOOTSTRAP_TOKEN: other })).toBe('bootstrap-admin');
    const elsewhere = tempDir('coffer-nohome-');
    expect(await who([], { HOME: elsewhere, VAULT_BOOTSTRAP_TOKEN: other })).toBe('order-reader');
    // XDG_CONFIG_HOME and COFFER_TOKEN_FILE move the file.
    const xdg = tempDir('coffer-xdg-');
    expect((await coffer(['login'], { ...env, XDG_CONFIG_HOME: xdg }, other)).code).toBe(0);
    expect(mode(path.join(xdg, 'coffer', 'token'))).toBe(0o600);
    expect(await who([], { XDG_CONFIG_HOME: xdg })).toBe('order-reader');
    const custom = path.join(tempDir('coffer-tf-'), 'sub', 'tok');
    const j = await coffer(['login', '--json'], { ...env, COFFER_TOKEN_FILE: custom }, `${other}\n`);
    expect(j.code, j.stderr).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual({ name: 'order-reader', role: 'admin', expires_at: null, token_file: custom });
    expect(mode(custom)).toBe(0o600);
    expect(mode(path.dirname(custom))).toBe(0o700);
    expect(await who([], { COFFER_TOKEN_FILE: custom })).toBe('order-reader');
  });

  it('token create | coffer login: only the token goes down the pipe', async () => {
    const h = tempDir('coffer-pipe-home-');
    const r = await shell('coffer token create piped-ops --role admin --ttl 3600 | coffer login', { HOME: h, COFFER_ADDR: node.url, COFFER_TOKEN: admin });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/token piped-ops \(role admin, expires .*\): shown once/);
    expect(r.stderr).toMatch(/logged in as piped-ops \(role admin, expires /);
    const self = await coffer(['token', 'lookup', '--json'], { HOME: h, COFFER_ADDR: node.url });
    expect(JSON.parse(self.stdout)).toMatchObject({ name: 'piped-ops', role: 'admin', rules: [{ paths: ['*'] }] });
    // Human create: one line on stdout, the token only.
    const human = await coffer(['token', 'create', 'one-line', '--role', 'admin'], { COFFER_ADDR: node.url, COFFER_TOKEN: admin });
    expect(human.code, human.stderr).toBe(0);
    expect(/^[^\s]+\n$/.test(human.stdout)).toBe(true);
    expect(human.stderr.includes(human.stdout.trim())).toBe(false);
  });

  it('token lookup NAME shows metadata, never the token; 404 for none', async () => {
    const e = { COFFER_ADDR: node.url, COFFER_TOKEN: admin };
    const r = await coffer(['token', 'lookup', 'piped-ops'], e);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^name +piped-ops$/m);
    expect(r.stdout).toMatch(/^revoked_at +-$/m);
    expect(r.stdout).not.toMatch(/token_sha256|digest/);
    const missing = await coffer(['token', 'lookup', 'nobody'], e);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\(404\)/);
  });

  it('logout removes the file (and says so when there is none); commands no longer use it', async () => {
    const r = await coffer(['logout'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/logged out: removed .*token/);
    expect(fs.existsSync(file())).toBe(false);
    const again = await coffer(['logout', '--json'], env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ removed: false, token_file: file() });
    expect((await coffer(['logout'], env)).stderr).toMatch(/not logged in/);
    expect((await coffer(['token', 'self'], env)).code).toBe(1);
  });
});

describe('secret list', () => {
  const e = () => ({ COFFER_ADDR: node.url, COFFER_TOKEN: admin });
  beforeAll(async () => {
    for (const n of ['app/a', 'app/b/c', 'app/b/d/e', 'app/z/y', 'apple', 'other']) {
      expect((await coffer(['secret', 'put', n, '--value', 'v'], e())).code).toBe(0);
    }
  });

  it('lists one level by default: secrets and folders (with /), one per line', async () => {
    const top = await coffer(['secret', 'list'], e());
    expect(top.code, top.stderr).toBe(0);
    expect(top.stdout.split('\n').filter((l) => /^(app|apple|other)/.test(l))).toEqual(['app/', 'apple', 'other']);
    const app = await coffer(['secret', 'list', 'app/'], e());
    expect(app.stdout).toBe('app/a\napp/b/\napp/z/\n');
    const b = await coffer(['secret', 'list', 'app/b/', '--json'], e());
    expect(JSON.parse(b.stdout)).toEqual({ prefix: 'app/b/', names: ['app/b/c'], folders: ['app/b/d/'] });
    expect((await coffer(['secret', 'list', 'nothing/'], e())).stdout).toBe('');
  });

  it('--recursive lists every name below the prefix; --limit stops after N entries', async () => {
    const all = await coffer(['secret', 'list', 'app/', '--recursive'], e());
    expect(all.stdout).toBe('app/a\napp/b/c\napp/b/d/e\napp/z/y\n');
    expect(JSON.parse((await coffer(['secret', 'list', 'app', '--recursive', '--json'], e())).stdout)).toEqual({
      prefix: 'app',
      names: ['app/a', 'app/b/c', 'app/b/d/e', 'app/z/y', 'apple'],
    });
    expect((await coffer(['secret', 'list', 'app/', '--limit', '2'], e())).stdout).toBe('app/a\napp/b/\n');
    expect((await coffer(['secret', 'list', 'app/', '--recursive', '--limit', '3'], e())).stdout).toBe('app/a\napp/b/c\napp/b/d/e\n');
  });
});

describe('snapshot', () => {
  it('save writes a 0600 file (no .tmp left); restore brings back a deleted secret', async () => {
    const e = { COFFER_ADDR: node.url, COFFER_TOKEN: admin };
    expect((await coffer(['secret', 'put', 'snap/keep'], e, 'kept value')).code).toBe(0);
    const dir = tempDir('coffer-snap-');
    const file = path.join(dir, 'state.db');
    const save = await coffer(['snapshot', 'save', file], e);
    expect(save.code, save.stderr).toBe(0);
    expect(save.stdout).toMatch(/^saved \d+ bytes to /);
    expect(mode(file)).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['state.db']);
    // '-' writes the same kind of image to stdout.
    const toStdout = await run(process.execPath, [COFFER_BIN, 'snapshot', 'save', '-'], { env: { PATH: process.env.PATH ?? '', ...e }, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
    expect(toStdout.stdout.subarray(0, 16).toString('latin1')).toBe(fs.readFileSync(file).subarray(0, 16).toString('latin1'));
    expect((await coffer(['secret', 'delete', 'snap/keep'], e)).stdout).toBe('deleted snap/keep\n');
    expect((await coffer(['secret', 'get', 'snap/keep'], e)).code).toBe(1);
    const restore = await coffer(['snapshot', 'restore', file], e);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/^restored +true$/m);
    expect((await coffer(['secret', 'get', 'snap/keep'], e)).stdout).toBe('kept value\n');
    // Not admin: refused, and nothing written.
    const reader = JSON.parse((await coffer(['token', 'create', 'snap-reader', '--role', 'admin', '--json'], e)).stdout) as { token: string };
    expect((await coffer(['token', 'revoke', 'snap-reader'], e)).code).toBe(0);
    const refused = await coffer(['snapshot', 'save', path.join(dir, 'no.db')], { COFFER_ADDR: node.url, COFFER_TOKEN: reader.token });
    expect(refused.code).toBe(1);
    expect(fs.readdirSync(dir)).toEqual(['state.db']);
  });
});

describe('values the CLI refuses itself (exit 2) are the ones the server refuses', () => {
  it('rotate: every charset and both ends of the length range pass; one past either end and another charset are refused by the server too', async () => {
    const e = { COFFER_ADDR: node.url, COFFER_TOKEN: admin };
    expect((await coffer(['secret', 'put', 'bounds/a', '--value', 'v'], e)).code).toBe(0); // rotate needs a secret
    for (const charset of Object.keys(CHARSETS)) {
      const r = await coffer(['secret', 'rotate', 'bounds/a', '--charset', charset, '--json'], e);
      expect(r.code, r.stderr).toBe(0);
    }
    for (const length of [ROTATE_LENGTH_MIN, ROTATE_LENGTH_MAX]) {
      const r = await coffer(['secret', 'rotate', 'bounds/a', '--length', String(length), '--json'], e);
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { value: string }).value).toHaveLength(length);
    }
    // Sent past the CLI: the API answers 400 for what the CLI refuses with exit 2.
    const rotate = (body: unknown) =>
      fetch(`${node.url}/v1/secrets/bounds/a:rotate`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const body of [{ length: ROTATE_LENGTH_MIN - 1 }, { length: ROTATE_LENGTH_MAX + 1 }, { charset: 'foo' }]) {
      expect((await rotate(body)).status, JSON.stringify(body)).toBe(400);
    }
  });
});

/** Commands of the table that run no client request: everything else must have a --json case below. */
const NOT_CLIENT = ['server', 'dev-cluster', 'wg-agent', 'operator', 'sync', 'completion', 'version'];

describe('--json on every client command', () => {
  const dir = tempDir('coffer-json-');
  const rules = path.join(dir, 'rules.json');
  fs.writeFileSync(rules, JSON.stringify({ rules: [{ paths: ['json/*'], actions: ['list'] }] }));
  const snap = path.join(dir, 'snap.db');
  const home = tempDir('coffer-json-home-');
  // In order: later cases use what earlier ones made. [command line, stdin, expected JSON shape]
  const CASES: Array<[string, string[], string | undefined, Record<string, unknown>]> = [
    ['login', ['login'], 'ADMIN', { name: 'bootstrap-admin' }],
    ['secret put', ['secret', 'put', 'json/a', '--value', 'v1'], undefined, { name: 'json/a', version: 1 }],
    ['secret get', ['secret', 'get', 'json/a'], undefined, { name: 'json/a', value: 'v1' }],
    ['secret meta', ['secret', 'meta', 'json/a'], undefined, { name: 'json/a', current_version: 1 }],
    ['secret rotate', ['secret', 'rotate', 'json/a'], undefined, { name: 'json/a', version: 2 }],
    ['secret list', ['secret', 'list', 'json/'], undefined, { names: ['json/a'], folders: [] }],
    ['secret delete', ['secret', 'delete', 'json/a'], undefined, { deleted: 'json/a' }],
    ['token create', ['token', 'create', 'json-tok', '--role', 'admin'], undefined, { name: 'json-tok', role: 'admin' }],
    ['token lookup', ['token', 'lookup', 'json-tok'], undefined, { name: 'json-tok', revoked_at: null }],
    ['token self', ['token', 'self'], undefined, { name: 'bootstrap-admin', role: 'admin' }],
    ['token list', ['token', 'list'], undefined, { tokens: expect.arrayContaining([expect.objectContaining({ name: 'json-tok' })]) }],
    ['token revoke', ['token', 'revoke', 'json-tok'], undefined, { revoked: 'json-tok' }],
    ['role put', ['role', 'put', 'json-role', '--file', rules], undefined, { name: 'json-role' }],
    ['role get', ['role', 'get', 'json-role'], undefined, { name: 'json-role', rules: [{ paths: ['json/*'], actions: ['list'] }] }],
    ['role list', ['role', 'list'], undefined, { roles: expect.arrayContaining([expect.objectContaining({ name: 'json-role' })]) }],
    ['role delete', ['role', 'delete', 'json-role'], undefined, { deleted: 'json-role' }],
    ['cluster status', ['cluster', 'status'], undefined, { node_id: 'n1', leader_id: 'n1' }],
    ['cluster members', ['cluster', 'members'], undefined, { source: 'none', members: [] }],
    // Declaring the one member it has (the autopilot matches by id, so the address changes nothing), then clearing.
    ['cluster members set', ['cluster', 'members', 'set', 'n1=127.0.0.1:9'], undefined, { source: 'api', members: [{ id: 'n1', address: '127.0.0.1:9' }] }],
    ['cluster members clear', ['cluster', 'members', 'clear'], undefined, { source: 'none', members: [] }],
    // A one-node cluster cannot take a member that never answers without losing its leader, so these two are
    // refusals: the reason on stderr, nothing on stdout (never half a document).
    ['cluster add-peer', ['cluster', 'add-peer', 'n1', '127.0.0.1:9'], undefined, { refused: /conflict \(409\): n1 is already a voter/ }],
    ['cluster remove-peer', ['cluster', 'remove-peer', 'n9'], undefined, { refused: /not_found \(404\): n9 is not a member/ }],
    ['cluster transfer-leadership', ['cluster', 'transfer-leadership'], undefined, { leader_id: 'n1' }],
    ['audit tail', ['audit', 'tail', '--limit', '3'], undefined, { records: expect.any(Array) }],
    ['audit export', ['audit', 'export', '--since', '0'], undefined, { records: expect.any(Array) }],
    ['audit verify', ['audit', 'verify'], undefined, { ok: true, first_break: null }],
    ['snapshot save', ['snapshot', 'save', snap], undefined, { file: snap }],
    ['snapshot restore', ['snapshot', 'restore', snap], undefined, { restored: true }],
    ['logout', ['logout'], undefined, { removed: true }],
  ];

  it('covers every client command and subcommand of the table (a new one without a case fails here)', () => {
    const table = COMMANDS.filter((c) => !NOT_CLIENT.includes(c.name)).flatMap((c) => (c.subcommands.length ? c.subcommands.map((s) => `${c.name} ${s}`) : [c.name]));
    // A case may name an action below the subcommand (cluster members set): it counts for its subcommand.
    expect([...new Set(CASES.map(([k]) => k.split(' ').slice(0, 2).join(' ')))].sort()).toEqual([...table].sort());
    expect(CASES.map(([k]) => k)).toEqual(expect.arrayContaining(['cluster members set', 'cluster members clear']));
    // And the dispatcher's specs are the same set.
    const specs = [
      ...Object.entries(CLIENT_SPECS).flatMap(([c, s]) => Object.keys(s).map((v) => `${c} ${v}`)),
      ...Object.keys(AUDIT_SPECS).map((v) => `audit ${v}`),
      ...Object.keys(ROOT_SPECS),
    ];
    expect(specs.sort()).toEqual([...table].sort());
  });

  it.each(CASES.map((c, i) => [c[0], i] as const))('coffer %s --json prints one JSON document', async (_name, i) => {
    const [, args, input, shape] = CASES[i]!;
    const r = await coffer([...args, '--json'], { COFFER_ADDR: node.url, HOME: home }, input === 'ADMIN' ? `${admin}\n` : input);
    if (shape.refused instanceof RegExp) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(shape.refused);
      expect(r.stdout).toBe('');
      return;
    }
    expect(r.code, r.stderr).toBe(0);
    let doc: unknown;
    expect(() => (doc = JSON.parse(r.stdout)), `${args.join(' ')}: stdout is not one JSON document`).not.toThrow();
    expect(doc).toMatchObject(shape);
  });
});
