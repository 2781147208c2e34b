// The `coffer` executable as people use it: help, the dev node, client commands.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFFER_BIN, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';

const run = promisify(execFile);

async function coffer(args: string[], env: Record<string, string> = {}, input?: string) {
  const child = run(process.execPath, [COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
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

describe('help', () => {
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
    const get = await light(['secret', 'get', 'app/x', '--addr', 'http://127.0.0.1:9']); // nothing listens there
    expect(get.stderr).not.toMatch(/heavy module/);
    expect(get.code).toBe(1);
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
    expect(JSON.parse(put.stdout)).toMatchObject({ name: 'dev/greeting', version: 1 });
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
