// The `coffer` executable as people use it: help, the dev node, client commands.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_SPECS } from '../../server/cli/audit-command.js';
import { CLIENT_SPECS, COMMANDS, COMPLETION_SPECS, ROOT_SPECS } from '../../server/cli/commands.js';
import { CHARSETS, ROTATE_LENGTH_MAX, ROTATE_LENGTH_MIN } from '../../server/secrets/random-value.js';
import { COFFER_BIN, ROOT, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';

const run = promisify(execFile);

/** A HOME of its own, so no test reads or writes a real login file. */
const HOME = tempDir('coffer-cli-home-');

async function coffer(args: string[], env: Record<string, string> = {}, input?: string) {
  const child = run(process.execPath, [COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '', HOME, ...env } });
  if (input !== undefined) {
    child.child.stdin!.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A port nothing listens on: bound once by the OS, then released. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Where a help text's two-column entries are misaligned. Entries are lines `  LEFT  SUMMARY` (a gap of
 * two spaces or more after the indent and some text); blank lines and unindented lines end a block.
 * In a block every entry's summary starts in one column, and a line indented deeper than the entries
 * without a gap of its own (a summary's continuation) starts in that column too.
 */
function misaligned(help: string): string[] {
  const bad: string[] = [];
  const blocks: string[][] = [[]];
  for (const l of help.split('\n')) {
    if (l.trim() === '' || !l.startsWith(' ')) blocks.push([]);
    else blocks.at(-1)!.push(l);
  }
  for (const block of blocks) {
    const entry = (l: string) => /^( *)(\S.*?\S|\S) {2,}(?=\S)/.exec(l);
    const entries = block.filter((l) => entry(l));
    if (entries.length === 0) continue;
    const column = entry(entries[0]!)![0].length;
    const indent = Math.min(...entries.map((l) => entry(l)![1]!.length));
    for (const l of block) {
      const m = entry(l);
      const at = m ? m[0].length : l.search(/\S/);
      if ((m || at > indent) && at !== column) bad.push(`column ${at}, not ${column}: ${l}`);
    }
  }
  return bad;
}

describe('help', () => {
  const specsOf = (name: string) =>
    name === 'audit' ? AUDIT_SPECS : name === 'completion' ? COMPLETION_SPECS : Object.hasOwn(ROOT_SPECS, name) ? {} : CLIENT_SPECS[name];

  it('coffer --help lists every command and subcommand of the command table, summaries aligned', async () => {
    const r = await coffer(['--help']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    for (const c of COMMANDS) {
      const i = lines.findIndex((l) => l.startsWith(`  ${c.name} `) || l === `  ${c.name}`);
      expect(i, c.name).toBeGreaterThan(0);
      const words = lines[i]!.trim().split(/\s+/);
      expect(words[0]).toBe(c.name);
      if (c.subcommands.length) expect(words[1]!.split('|'), c.name).toEqual([...c.subcommands]);
      // The summary starts in column 25, on the same line or alone on the next.
      const sameLine = lines[i]!.length > 25 && lines[i]!.slice(25) === c.summary && lines[i]!.slice(0, 25).endsWith('  ');
      expect(sameLine || lines[i + 1] === ' '.repeat(25) + c.summary, c.name).toBe(true);
    }
    // Every summary line (a command's or the help line's) begins at column 25.
    const commandBlock = lines.slice(lines.indexOf('Commands:') + 1, lines.indexOf('', lines.indexOf('Commands:')));
    for (const l of commandBlock) {
      if (/^ {25}\S/.test(l)) continue; // a summary on its own line
      if (/^  \S+( \S+)?$/.test(l) && l.length > 23) continue; // a long usage, summary on the next line
      expect(l.slice(23, 25), l).toBe('  ');
      expect(l[25], l).toMatch(/\S/);
    }
    expect(r.stdout).toMatch(/Exit codes:\n  0 +ok\n  1 .*refused.*\n  2 +usage.*\n  3 .*unreachable/);
  });

  it.each(COMMANDS.map((c) => c.name))('coffer %s --help exits 0 and covers every subcommand; client commands declare each', async (name) => {
    const c = COMMANDS.find((x) => x.name === name)!;
    const r = await coffer([name, '--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Usage/);
    for (const s of c.subcommands) expect(r.stdout, `${name} ${s}`).toMatch(new RegExp(`\\b${s}\\b`));
    const specs = specsOf(name);
    if (specs) expect(Object.keys(specs).sort(), `${name}: the subcommands the CLI accepts`).toEqual([...c.subcommands].sort());
  });

  it.each(COMMANDS.map((c) => c.name))('coffer %s --help: its summaries start in one column, continuations too', async (name) => {
    const r = await coffer([name, '--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(misaligned(r.stdout), name).toEqual([]);
  });

  it('the alignment check finds a summary or a continuation out of its column', () => {
    expect(misaligned('Usage:\n  coffer a X    one\n  coffer b      two\n                continued')).toEqual([]);
    expect(misaligned('Usage:\n  coffer a X    one\n  coffer b     two')).toHaveLength(1);
    expect(misaligned('Usage:\n  coffer a X    one\n                 continued one column late')).toHaveLength(1);
    expect(misaligned('Text at indent two with single spaces\n  is prose, not checked')).toEqual([]);
  });

  it('coffer --version and coffer version print the release of package.json; --json as one document', async () => {
    const release = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const args of [['--version'], ['version']]) {
      const r = await coffer(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`coffer ${release}\n`);
      expect(r.stderr).toBe('');
      const j = await coffer([...args, '--json']);
      expect(j.code, j.stderr).toBe(0);
      expect(JSON.parse(j.stdout)).toEqual({ version: release });
    }
    expect((await coffer(['--help'])).stdout).toMatch(/coffer --help \| --version\n[\s\S]*\n  version +print this build's release/);
  });

  it('--help before a command that parses its own flags shows its help instead of running it', async () => {
    for (const name of ['operator', 'sync', 'wg-agent']) {
      const r = await coffer(['--help', name]);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toBe((await coffer([name, '--help'])).stdout);
    }
  });

  it('the client commands in the dispatcher are exactly those of the table', () => {
    for (const name of [...Object.keys(CLIENT_SPECS), ...Object.keys(ROOT_SPECS)]) expect(COMMANDS.some((c) => c.name === name), name).toBe(true);
  });

  it('the table has login, logout, snapshot, completion, token lookup/self and dev-cluster with its subcommands', () => {
    const subs = Object.fromEntries(COMMANDS.map((c) => [c.name, [...c.subcommands]]));
    expect(subs).toMatchObject({
      login: [], logout: [], snapshot: ['save', 'restore'], completion: ['bash', 'zsh'], 'dev-cluster': ['run', 'status', 'restart', 'join'],
    });
    expect(subs.token).toEqual(expect.arrayContaining(['lookup', 'self']));
  });

  it.each([
    [['secret', 'frob'], 'secret', /unknown subcommand 'frob'/],
    [['secret'], 'secret', /missing subcommand/],
    [['secret', 'get'], 'secret', /missing NAME/],
    [['secret', 'get', 'a', 'b'], 'secret', /unexpected argument 'b'/],
    [['secret', 'get', 'a', '--frob'], 'secret', /unknown flag --frob/],
    [['secret', 'get', 'a', '--role', 'x'], 'secret', /unknown flag --role/],
    [['secret', 'get', 'a', '--stale=yes'], 'secret', /--stale takes no value/],
    [['secret', 'get', 'a', '--version', '0'], 'secret', /--version must be/],
    [['secret', 'get', 'a', '--version', '-2'], 'secret', /--version must be/],
    [['secret', 'get', 'a', '--version', '1.5'], 'secret', /--version must be/],
    [['secret', 'get', 'a', '--version'], 'secret', /--version needs a value/],
    [['secret', 'list', '--limit', '0'], 'secret', /--limit must be/],
    [['secret', 'list', '--limit', 'ten'], 'secret', /--limit must be/],
    [['secret', 'list', 'app/', 'more/'], 'secret', /unexpected argument 'more\/'/],
    [['secret', 'list', '--prefix', 'app/'], 'secret', /unknown flag --prefix/],
    [['secret', 'list', '--recursive=yes'], 'secret', /--recursive takes no value/],
    [['token', 'lookup', 'a', 'b'], 'token', /unexpected argument 'b'/],
    [['token', 'self', 'a'], 'token', /unexpected argument 'a'/],
    [['token', 'self', '--frob'], 'token', /unknown flag --frob/],
    [['login', 'sometoken'], 'login', /unexpected argument 'sometoken'/],
    [['login', '--token', 'x'], 'login', /not --token/],
    [['login', '--frob'], 'login', /unknown flag --frob/],
    [['login'], 'login', /no token on stdin/],
    [['logout', 'extra'], 'logout', /unexpected argument 'extra'/],
    [['logout', '--addr', 'http://x'], 'logout', /unknown flag --addr/],
    [['snapshot'], 'snapshot', /missing subcommand/],
    [['snapshot', 'frob'], 'snapshot', /unknown subcommand 'frob'/],
    [['snapshot', 'save'], 'snapshot', /missing FILE/],
    [['snapshot', 'save', 'a', 'b'], 'snapshot', /unexpected argument 'b'/],
    [['snapshot', 'save', '-', '--json'], 'snapshot', /no room for --json/],
    [['snapshot', 'restore', 'no-such-file.db'], 'snapshot', /cannot read no-such-file\.db/],
    [['completion'], 'completion', /missing subcommand/],
    [['completion', 'fish'], 'completion', /unknown subcommand 'fish'/],
    [['completion', 'bash', '--json'], 'completion', /unknown flag --json/],
    [['audit', 'tail', '--follow', '--json'], 'audit', /cannot follow/],
    [['secret', 'rotate', 'a', '--length', '0'], 'secret', /--length must be/],
    [['token', 'create', 'x', '--role', 'r', '--ttl', '0'], 'token', /--ttl must be/],
    [['token', 'create', 'x'], 'token', /--role is required/],
    [['token', 'frob'], 'token', /unknown subcommand 'frob'/],
    [['role', 'put', 'x'], 'role', /--file/],
    [['role', 'list', 'extra'], 'role', /unexpected argument 'extra'/],
    [['cluster', 'frob'], 'cluster', /unknown subcommand 'frob'/],
    [['cluster', 'add-peer', 'n4'], 'cluster', /missing HOST:PORT/],
    [['cluster', 'members', 'frob'], 'cluster', /unknown cluster members action 'frob'/],
    [['cluster', 'members', 'set', 'n9'], 'cluster', /ID=HOST:PORT/],
    [['audit', 'frob'], 'audit', /unknown subcommand 'frob'/],
    [['audit', 'tail', '--limit', '0'], 'audit', /--limit must be/],
    [['audit', 'export', '--since', '-1'], 'audit', /--since must be/],
    [['audit', 'verify', '--follow'], 'audit', /unknown flag --follow/],
    [['server', '--frob'], 'server', /unknown flag --frob/],
    [['server', 'extra'], 'server', /unexpected argument 'extra'/],
    [['dev-cluster', '--frob'], 'dev-cluster', /unknown flag --frob/],
    [['operator', 'render', '-f', 'x.yaml', '--frob'], 'operator render', /unknown flag --frob/],
    [['help', 'frob'], null, /unknown command 'frob'/],
    [['help', '--bogus'], null, /help: unknown flag --bogus/],
    [['help', 'secret', '--bogus'], null, /help: unknown flag --bogus/],
    [['help', 'secret', 'get'], null, /help: unexpected argument 'get'/],
    [['--bogus'], null, /unknown flag --bogus/],
    [['-x'], null, /unknown flag -x/],
    [['--help', '--bogus'], null, /unknown flag --bogus/],
    [['--json'], null, /--json goes with a command/],
    [['--version', 'foo'], null, /unexpected argument 'foo'/],
    [['version', 'extra'], 'version', /unexpected argument 'extra'/],
    [['version', '--frob'], 'version', /unknown flag --frob/],
    [['--frob', 'wg-agent'], 'wg-agent', /unknown flag --frob \(flags go after 'wg-agent'\)/],
    [['--frob', 'operator'], 'operator', /unknown flag --frob/],
    [['--addr', 'http://x', 'sync', 'run'], 'sync', /unknown flag --addr/],
    [['secret', 'rotate', 'a', '--charset', 'foo'], 'secret', new RegExp(`--charset must be one of ${Object.keys(CHARSETS).join(', ')}, got "foo"`)],
    [['secret', 'rotate', 'a', '--length', String(ROTATE_LENGTH_MIN - 1)], 'secret', new RegExp(`--length must be a whole number from ${ROTATE_LENGTH_MIN} to ${ROTATE_LENGTH_MAX}`)],
    [['secret', 'rotate', 'a', '--length', String(ROTATE_LENGTH_MAX + 1)], 'secret', /--length must be a whole number from/],
    [['cluster', 'add-peer', 'n4', 'bad'], 'cluster', /bad address "bad" for n4 \(expected host:port\)/],
    [['cluster', 'add-peer', 'n4', '10.0.0.4:70000'], 'cluster', /bad address "10\.0\.0\.4:70000"/],
    [['cluster', 'add-peer', 'n 4', '10.0.0.4:8201'], 'cluster', /bad node id "n 4"/],
    [['cluster', 'members', 'set', 'n1=10.0.0.1:8201', 'n2=bad'], 'cluster', /bad address "bad" for n2/],
    [['cluster', 'members', 'set', 'n1=10.0.0.1:8201', 'n1=10.0.0.2:8201'], 'cluster', /node id n1 listed twice/],
    [['dev-cluster', 'run', '--json'], 'dev-cluster', /run prints a running log/],
    [['dev-cluster', '--json'], 'dev-cluster', /--json goes with status, restart and join/],
    [['frob'], null, /unknown command 'frob'/],
  ] as const)('usage error: coffer %j exits 2 with one line and a hint', async (args, where, message) => {
    // A closed port: a check that slipped through would exit 3, not 2.
    const r = await coffer([...args], { COFFER_ADDR: `http://127.0.0.1:${await closedPort()}`, COFFER_TOKEN: 'x' }, '');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toContain(where === null ? "see 'coffer --help'" : `see 'coffer ${where} --help'`);
    expect(r.stdout).toBe('');
  });

  it('exits 3 when COFFER_ADDR points at a closed port, for every client command', async () => {
    const env = { COFFER_ADDR: `http://127.0.0.1:${await closedPort()}`, COFFER_TOKEN: 'x' };
    for (const args of [['secret', 'get', 'a'], ['secret', 'list'], ['token', 'list'], ['token', 'self'], ['role', 'list'], ['cluster', 'status'], ['audit', 'verify'], ['snapshot', 'save', path.join(HOME, 'x.db')], ['login']]) {
      const r = await coffer(args, env, 'x\n');
      expect(r.code, args.join(' ')).toBe(3);
      expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+/);
    }
  });

  it.each(['server', 'secret', 'token', 'role', 'cluster'])('coffer %s --help prints usage and exits 0', async (cmd) => {
    const r = await coffer([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage/);
  });

  it('lists the commands, and refuses an unknown one with exit 2', async () => {
    expect((await coffer(['--help'])).stdout).toMatch(/server[\s\S]*secret[\s\S]*token/);
    const bad = await coffer(['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it('help and client commands load neither the server nor the operator (Fastify, AWS SDK, SQLite, Kubernetes client)', async () => {
    // A module hook that refuses the heavy packages: any of them imported on these paths fails the command.
    const hook = `data:text/javascript,${encodeURIComponent(`
      export async function resolve(specifier, context, next) {
        if (/^(fastify|better-sqlite3|libsodium|@aws-sdk\\/client-kms|@kubernetes\\/client-node|cdk8s)$/.test(specifier)) {
          throw new Error('heavy module loaded: ' + specifier);
        }
        return next(specifier, context);
      }`)}`;
    const register = `data:text/javascript,${encodeURIComponent(`import { register } from 'node:module'; register(${JSON.stringify(hook)});`)}`;
    const light = (args: string[]) =>
      run(process.execPath, ['--import', register, COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '' } }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    for (const args of [['--help'], ['secret', '--help'], ['operator', '--help'], ['help', 'server']]) {
      const r = await light(args);
      expect(r.stderr, args.join(' ')).not.toMatch(/heavy module/);
      expect(r.code, args.join(' ')).toBe(0);
    }
    const get = await light(['secret', 'get', 'app/x', '--addr', `http://127.0.0.1:${await closedPort()}`]); // nothing listens there
    expect(get.stderr).not.toMatch(/heavy module/);
    expect(get.code).toBe(3);
    // Control: the hook does refuse them, so a command that needs one fails loudly.
    const server = await light(['server']);
    expect(server.stderr).toMatch(/heavy module loaded: (fastify|better-sqlite3|libsodium|@aws-sdk)/);
  });

  it('stops a server on a malformed variable with a message naming it', async () => {
    const r = await coffer(['server'], { VAULT_DATA_DIR: tempDir(), VAULT_DEK_CACHE_TTL_SECS: 'soon' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/VAULT_DEK_CACHE_TTL_SECS/);
  });

  it('refuses a local master key that is not 32 bytes', async () => {
    const r = await coffer(['server'], {
      VAULT_DATA_DIR: tempDir(),
      VAULT_API_ADDR: '127.0.0.1:0',
      VAULT_LOCAL_MASTER_KEY: Buffer.alloc(16).toString('base64'),
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/VAULT_LOCAL_MASTER_KEY/);
  });
});

/** The dev banner is written right after the "ready" log line a spawn waits for, and may arrive a moment later. */
async function bannerOf(node: SpawnedNode): Promise<void> {
  for (let i = 0; i < 250 && !/COFFER_TOKEN=\S+\n/.test(node.output()); i++) await new Promise((r) => setTimeout(r, 20));
}

describe('dev node', () => {
  let cwd: string;
  let node: SpawnedNode;
  const env = () => ({ VAULT_API_ADDR: '127.0.0.1:0', VAULT_RAFT_ADDR: '127.0.0.1:0' });

  beforeAll(async () => {
    cwd = tempDir('coffer-dev-');
    process.chdir(cwd);
    node = await spawnNode(env(), ['server', '--dev']);
    await bannerOf(node);
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('prints a working bootstrap token and keeps its key material in DEV-ONLY files', async () => {
    const token = /COFFER_TOKEN=(\S+)/.exec(node.output())?.[1];
    expect(token).toBeTruthy();
    expect(node.output()).toMatch(/DEV MODE/);
    // Master key, bootstrap token and cluster key, each 0600.
    const devFiles = fs.readdirSync(path.join(cwd, 'data')).filter((f) => f.startsWith('DEV-ONLY')).sort();
    expect(devFiles).toEqual(['DEV-ONLY-bootstrap-token', 'DEV-ONLY-cluster-key.b64', 'DEV-ONLY-local-master-key.b64']);
    for (const f of devFiles) expect(fs.statSync(path.join(cwd, 'data', f)).mode & 0o777).toBe(0o600);
    const clientEnv = { COFFER_ADDR: node.url, COFFER_TOKEN: token! };
    const put = await coffer(['secret', 'put', 'dev/greeting'], clientEnv, 'hello from stdin');
    expect(put.code).toBe(0);
    expect(put.stdout).toMatch(/^name +dev\/greeting\nversion +1\n/);
    // Empty stdin is refused (a forgotten pipe must not blank a secret) unless asked for.
    const empty = await coffer(['secret', 'put', 'dev/empty'], clientEnv, '');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/refusing to store an empty value \(use --allow-empty\)/);
    expect((await coffer(['secret', 'put', 'dev/empty', '--allow-empty'], clientEnv, '')).code).toBe(0);
    // ONE trailing newline is stripped, as the help says.
    expect((await coffer(['secret', 'put', 'dev/nl'], clientEnv, 'v\n\n')).code).toBe(0);
    expect(JSON.parse((await coffer(['secret', 'get', 'dev/nl', '--json'], clientEnv)).stdout)).toMatchObject({ value: 'v\n' });
    expect((await coffer(['secret', '--help'])).stdout).toMatch(/strips ONE trailing newline/);
    // The server refusing is exit 1: 404 (no such secret, no such version), 403 (a token without the right).
    const missing = await coffer(['secret', 'get', 'dev/nothing-here'], clientEnv);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\(404\)/);
    expect((await coffer(['secret', 'get', 'dev/greeting', '--version', '7'], clientEnv)).code).toBe(1);
    const rules = path.join(cwd, 'reader.json');
    fs.writeFileSync(rules, JSON.stringify({ rules: [{ paths: ['dev/*'], actions: ['list'] }] }));
    expect((await coffer(['role', 'put', 'reader', '--file', rules], clientEnv)).code).toBe(0);
    const minted = await coffer(['token', 'create', 'cli-reader', '--role', 'reader', '--ttl', '600', '--json'], clientEnv);
    expect(minted.code, minted.stderr).toBe(0);
    const readerToken = (JSON.parse(minted.stdout) as { token: string }).token;
    const forbidden = await coffer(['token', 'list'], { COFFER_ADDR: node.url, COFFER_TOKEN: readerToken });
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/\(403\)/);
    const get = await coffer(['secret', 'get', 'dev/greeting'], clientEnv);
    expect(get.stdout).toBe('hello from stdin\n');
    const denied = await coffer(['token', 'list'], { COFFER_ADDR: node.url, COFFER_TOKEN: 'nope' });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/unauthorized \(401\)/);
  });

  it('finds the same secrets and token after a restart', async () => {
    const token = /COFFER_TOKEN=(\S+)/.exec(node.output())?.[1];
    await node.stop();
    node = await spawnNode(env(), ['server', '--dev']);
    await bannerOf(node);
    expect(/COFFER_TOKEN=(\S+)/.exec(node.output())?.[1]).toBe(token);
    const get = await coffer(['secret', 'get', 'dev/greeting', '--json'], { COFFER_ADDR: node.url, COFFER_TOKEN: token! });
    expect(JSON.parse(get.stdout)).toMatchObject({ value: 'hello from stdin', version: 1 });
  });
});
