// README.md's walk-through, taken from README.md itself and run step by step
// with bash, so the README and the code cannot drift apart.
//
// The blocks are the ```sh blocks right after an HTML comment
// `<!-- walkthrough: server -->` (how the dev node is started) and
// `<!-- walkthrough -->` (the steps, in order). Each step runs as its own
// `bash -euo pipefail -c` in one temporary working folder (the dev node's),
// with a `coffer` on PATH that runs this build's dist/bin/coffer.js, and a
// temporary HOME/XDG_CONFIG_HOME (so `coffer login` writes there).
//
// One substitution: the dev node listens on free ports instead of
// 8200/8201, moved the way README says (VAULT_API_ADDR and VAULT_RAFT_ADDR),
// and the steps get the matching COFFER_ADDR. Nothing else is changed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/net.js';
import { COFFER_BIN, ROOT, tempDir } from '../helpers/node.js';

const run = promisify(execFile);

interface Block {
  kind: 'server' | 'step';
  script: string;
}

function walkthroughBlocks(readme: string): Block[] {
  const out: Block[] = [];
  for (const m of readme.matchAll(/<!-- walkthrough(: server)? -->\n```sh\n([\s\S]*?)```\n/g)) {
    out.push({ kind: m[1] ? 'server' : 'step', script: m[2]! });
  }
  return out;
}

const blocks = walkthroughBlocks(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
const serverBlock = blocks.find((b) => b.kind === 'server');
const steps = blocks.filter((b) => b.kind === 'step').map((b) => b.script);

describe("README's walk-through", () => {
  let work: string;
  let env: Record<string, string>;
  let server: ChildProcess | null = null;
  let serverOut = '';
  let bootstrapToken: string;
  const results: Array<{ script: string; code: number; stdout: string; stderr: string }> = [];

  async function startServer(): Promise<void> {
    serverOut = '';
    const api = env.COFFER_ADDR!.replace('http://', '');
    const raft = `127.0.0.1:${await freePort('127.0.0.1')}`;
    // Its own process group, so stopping it reaches the node under bash and the wrapper.
    server = spawn('bash', ['-euo', 'pipefail', '-c', serverBlock!.script], {
      cwd: work, env: { ...env, VAULT_API_ADDR: api, VAULT_RAFT_ADDR: raft }, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d: Buffer) => (serverOut += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (serverOut += d.toString()));
    const deadline = Date.now() + 30_000;
    // The banner ends with the token lines: the token itself, or what became of it.
    while (!/Coffer dev node listening[\s\S]*(# or: coffer login|Use your own token)[^\n]*\n/.test(serverOut)) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`dev node did not start:\n${serverOut}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stopServer(): Promise<void> {
    const s = server;
    if (!s || s.exitCode !== null || s.signalCode !== null) return;
    const exited = new Promise((r) => s.once('exit', r));
    process.kill(-s.pid!, 'SIGTERM');
    await exited;
    server = null;
  }

  beforeAll(async () => {
    expect(serverBlock, 'README has a <!-- walkthrough: server --> block').toBeDefined();
    work = tempDir('coffer-readme-');
    const bin = path.join(work, '.bin');
    const home = path.join(work, '.home');
    fs.mkdirSync(bin);
    fs.mkdirSync(home, { mode: 0o700 });
    fs.writeFileSync(path.join(bin, 'coffer'), `#!/bin/sh\nexec '${process.execPath}' '${COFFER_BIN}' "$@"\n`, { mode: 0o755 });
    env = {
      PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, '.config'),
      COFFER_ADDR: `http://127.0.0.1:${await freePort('127.0.0.1')}`,
      LANG: 'C.UTF-8',
    };
    await startServer();
    bootstrapToken = fs.readFileSync(path.join(work, 'data', 'DEV-ONLY-bootstrap-token'), 'utf8').trim();
  }, 60_000);

  afterAll(async () => {
    await stopServer();
  });

  it('has the steps a person needs, in an order that never locks them out', () => {
    expect(steps.length).toBeGreaterThanOrEqual(4);
    const all = steps.join('\n');
    const at = (s: string) => {
      const i = all.indexOf(s);
      expect(i, `walk-through contains ${s}`).toBeGreaterThanOrEqual(0);
      return i;
    };
    expect(at('coffer login < data/DEV-ONLY-bootstrap-token')).toBeLessThan(at('coffer secret put'));
    at('coffer secret rotate');
    at('coffer secret list app/');
    at('coffer role put');
    // Your own admin token, logged in with, before the bootstrap token is revoked; then token self.
    const ops = at('coffer token create ops-admin --role admin | coffer login');
    const revoke = at('coffer token revoke bootstrap-admin');
    expect(ops).toBeLessThan(revoke);
    expect(all.lastIndexOf('coffer token self')).toBeGreaterThan(revoke);
    // One spelling.
    expect(all).not.toMatch(/npx coffer|dist\/bin\/coffer\.js/);
  });

  it('runs every step to the end, each exiting 0', async () => {
    for (const script of steps) {
      let r;
      try {
        const { stdout, stderr } = await run('bash', ['-euo', 'pipefail', '-c', script], { cwd: work, env, timeout: 60_000 });
        r = { script, code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code: number; stdout: string; stderr: string };
        r = { script, code: e.code, stdout: e.stdout, stderr: e.stderr };
      }
      results.push(r);
      expect(r.code, `step failed:\n${script}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    }
  }, 120_000);

  it('does what each step says', () => {
    const step = (s: string) => {
      const r = results.find((x) => x.script.includes(s));
      expect(r, `a step with ${s} ran`).toBeDefined();
      return r!;
    };
    const login = step('coffer login < data/DEV-ONLY-bootstrap-token');
    expect(login.stderr).toMatch(/logged in as bootstrap-admin \(role admin/);
    expect(login.stdout).toMatch(/bootstrap-admin/);

    const secrets = step('coffer secret put app/db/password');
    expect(secrets.stdout).toContain('s3cr3t');
    expect(secrets.stdout).toMatch(/^app\/db\/$/m); // one level: the folder
    expect(secrets.stdout).toMatch(/^app\/db\/password$/m); // --recursive: the name

    const service = step('coffer role put app-writer');
    expect(service.stdout).toMatch(/ci-deployer/);
    expect(service.stdout).toMatch(/app-writer/);
    const tokenFile = path.join(work, 'ci-deployer.token');
    expect(fs.statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(tokenFile, 'utf8')).toMatch(/^\S{24,}\n$/); // the raw token alone

    const ops = step('coffer token revoke bootstrap-admin');
    expect(ops.stderr).toMatch(/logged in as ops-admin \(role admin/);
    expect(ops.stdout).toMatch(/ops-admin/);
    expect(ops.stdout).toMatch(/revoked_at\s+\d{4}-/); // token lookup bootstrap-admin
    // The last token shown is the last `token self`'s: still ops-admin.
    expect([...ops.stdout.matchAll(/^name\s+(\S+)$/gm)].at(-1)?.[1]).toBe('ops-admin');

    // The login file: 0600 in a 0700 folder, holding the ops token, not the bootstrap one.
    const file = path.join(env.XDG_CONFIG_HOME!, 'coffer', 'token');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const opsToken = fs.readFileSync(file, 'utf8').trim();
    expect(opsToken).not.toBe(bootstrapToken);
    // No raw token ever reached the terminal.
    for (const r of results) {
      for (const t of [bootstrapToken, opsToken, fs.readFileSync(tokenFile, 'utf8').trim()]) {
        expect(r.stdout + r.stderr).not.toContain(t);
      }
    }
  });

  it('after a restart, the banner says the bootstrap token was revoked instead of offering it, and you are still logged in', async () => {
    await stopServer();
    await startServer();
    expect(serverOut).toMatch(/bootstrap token in \S*DEV-ONLY-bootstrap-token was revoked at \d{4}-\d\d-\d\dT[\d:.]+Z/);
    expect(serverOut).toMatch(/Use your own token: coffer login/);
    expect(serverOut).not.toContain(bootstrapToken);
    expect(serverOut).not.toMatch(/COFFER_TOKEN=\S/);
    const { stdout } = await run('bash', ['-c', 'coffer token self'], { cwd: work, env });
    expect(stdout).toMatch(/ops-admin/);
  }, 60_000);
});
