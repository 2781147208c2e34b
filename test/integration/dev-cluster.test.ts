// `coffer dev-cluster` as people run it: the supervisor in the foreground
// (real node processes), and the one-shot commands beside it over its unix
// socket: status, restart ID, join [ID]; a line when a node dies.
// The dev cluster's ports are fixed offsets from --base-port (API base+10·i,
// Raft base+10·i+1): the test picks a base whose ports are free.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFFER_BIN, tempDir } from '../helpers/node.js';

const run = promisify(execFile);

async function coffer(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A base port whose four nodes' API and Raft ports are all free now. */
async function freeBase(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + 10 * Math.floor(Math.random() * 3000);
    const ports = [0, 1, 10, 11, 20, 21, 30, 31].map((o) => base + o);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port');
}

/** Pids of the processes whose VAULT_DATA_DIR is `dataDir` or a folder below it (Linux /proc). */
function processesOn(dataDir: string): number[] {
  const want = `VAULT_DATA_DIR=${dataDir}`;
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').some((v) => v === want || v.startsWith(`${want}/`))) out.push(Number(p));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('coffer dev-cluster', () => {
  let dir: string;
  let base: number;
  let sup: ChildProcess;
  let out = '';
  let token: string;
  const api = (slot: number) => `http://127.0.0.1:${base + slot * 10}`;

  beforeAll(async () => {
    dir = path.join(tempDir('coffer-devcl-'), 'c');
    base = await freeBase();
    sup = spawn(process.execPath, [COFFER_BIN, 'dev-cluster', '--dir', dir, `--base-port=${base}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    sup.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    sup.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the banner', () => out.includes('Ctrl-C stops every node.'));
    token = fs.readFileSync(path.join(dir, 'DEV-ONLY-bootstrap-token'), 'utf8').trim();
    await until('a leader', async () => {
      const r = await coffer(['dev-cluster', 'status', '--dir', dir]);
      return r.code === 0 && / leader /.test(r.stdout);
    });
  }, 60_000);

  afterAll(async () => {
    // Normally the Ctrl-C test has stopped everything. When it did not run (a filtered run, a failure), the
    // supervisor is killed and so is every node on this folder's data: they are its children, not ours.
    if (sup && sup.exitCode === null) sup.kill('SIGKILL');
    for (const pid of processesOn(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it('prints each node, the address to use, the token and the one-shot commands', () => {
    expect(out).toContain(`n1  API ${api(0)}  Raft 127.0.0.1:${base + 1}`);
    expect(out).toContain(`n3  API ${api(2)}  Raft 127.0.0.1:${base + 21}`);
    expect(out).toContain(`export COFFER_ADDR=${api(0)}`);
    expect(out).toContain(`coffer dev-cluster restart n2 --dir ${dir}`);
    expect(out).toContain(`coffer dev-cluster join --dir ${dir}`);
    expect(fs.statSync(path.join(dir, 'supervisor.sock')).mode & 0o777).toBe(0o600);
  });

  it('status lists every node running, with its role and address', async () => {
    const r = await coffer(['dev-cluster', 'status', '--dir', dir]);
    expect(r.code).toBe(0);
    for (const [i, id] of ['n1', 'n2', 'n3'].entries()) expect(r.stdout).toMatch(new RegExp(`${id} +running \\(pid \\d+\\) +(leader|follower) +${api(i)}`));
  });

  it('status and restart --json print one JSON document; a refused restart or join --json prints none', async () => {
    const r = await coffer(['dev-cluster', 'status', '--dir', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { dir: string; coffer_addr: string; nodes: Array<Record<string, unknown>> };
    expect(doc).toMatchObject({ dir, coffer_addr: api(0) });
    expect(doc.nodes.map((n) => n.id)).toEqual(['n1', 'n2', 'n3']);
    for (const [i, n] of doc.nodes.entries()) {
      expect(n).toEqual({
        id: `n${i + 1}`, state: 'running', pid: expect.any(Number), exit: null, role: expect.stringMatching(/^(leader|follower)$/), health: expect.any(String),
        api: api(i), raft: `127.0.0.1:${base + 10 * i + 1}`, joined: false, log: path.join(dir, `n${i + 1}.log`),
      });
    }
    const restarted = await coffer(['dev-cluster', 'restart', 'n2', '--dir', dir, '--json']);
    expect(restarted.code, restarted.stderr).toBe(0);
    const r2 = JSON.parse(restarted.stdout) as { id: string; pid: number; api: string };
    expect(r2).toEqual({ id: 'n2', pid: expect.any(Number), api: api(1) });
    expect(r2.pid).not.toBe(doc.nodes[1]!.pid);
    const after = JSON.parse((await coffer(['dev-cluster', 'status', '--dir', dir, '--json'])).stdout) as typeof doc;
    expect(after.nodes[1]).toMatchObject({ id: 'n2', state: 'running', pid: r2.pid });
    // Refused by the supervisor: exit 1, the reason on stderr, nothing on stdout.
    for (const args of [['restart', 'n9'], ['join', 'n1']]) {
      const refused = await coffer(['dev-cluster', ...args, '--dir', dir, '--json']);
      expect(refused.code, args.join(' ')).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/no node n9|n1 exists/);
    }
  });

  it('its socket: a restart followed by more bytes answers once and leaves one process on the node\'s data, the one the reply names; a line that never ends is cut off at 4 KiB', async () => {
    const pidOf = async (id: string) => Number(new RegExp(`${id} +running \\(pid (\\d+)\\)`).exec((await coffer(['dev-cluster', 'status', '--dir', dir])).stdout)?.[1]);
    const before = await pidOf('n3');
    expect(before).toBeGreaterThan(0);
    // Each string is its own write, 50 ms apart, so each lands as its own chunk.
    const talk = (...chunks: string[]) =>
      new Promise<{ reply: string; closed: boolean }>((resolve) => {
        let reply = '';
        const c = net.connect(path.join(dir, 'supervisor.sock'));
        c.setEncoding('utf8');
        c.on('data', (d: string) => (reply += d));
        c.on('close', () => resolve({ reply, closed: true }));
        c.on('error', () => {});
        chunks.forEach((b, i) => setTimeout(() => c.writable && c.write(b), 50 * i));
      });
    // A restart, then more bytes on the same connection: n3 restarts once, to the pid the reply names.
    const once = await talk('{"cmd":"restart","id":"n3"}\n{"cmd":"restart","id":"n3"}\n', '\n', '{"cmd":"restart","id":"n3"}\n');
    const reply = JSON.parse(once.reply) as { ok: boolean; text: string };
    expect(reply.ok).toBe(true);
    const restartedAs = Number(/n3 restarted \(pid (\d+)\)/.exec(reply.text)?.[1]);
    expect(restartedAs).not.toBe(before);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await pidOf('n3')).toBe(restartedAs);
    // Exactly one process runs on n3's data (a request run twice started a second one beside it).
    expect(processesOn(path.join(dir, 'n3'))).toEqual([restartedAs]);
    // A line that never ends is cut off at 4 KiB; the supervisor still answers.
    const endless = await talk('x'.repeat(5000));
    expect(endless).toEqual({ reply: '', closed: true });
    expect(await pidOf('n3')).toBe(restartedAs);
  });

  it('reports a node that dies, with a live COFFER_ADDR when it was n1, and restart ID brings it back on its data', async () => {
    const put = await fetch(`${api(0)}/v1/secrets/dc/a`, {
      method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ value: 'one' }),
    });
    expect(put.status).toBe(201);
    const status = (await coffer(['dev-cluster', 'status', '--dir', dir])).stdout;
    const pid = Number(/n1 +running \(pid (\d+)\)/.exec(status)?.[1]);
    process.kill(pid, 'SIGKILL');
    await until('the report', () => out.includes('n1 killed by SIGKILL'));
    expect(out).toContain(`start it again with: coffer dev-cluster restart n1 --dir ${dir}`);
    expect(out).toMatch(new RegExp(`n1 was your COFFER_ADDR; use a live node meanwhile:\\n +export COFFER_ADDR=http://127\\.0\\.0\\.1:(${base + 10}|${base + 20})\\n`));
    expect((await coffer(['dev-cluster', 'status', '--dir', dir])).stdout).toMatch(/n1 +killed by SIGKILL/);

    const restarted = await coffer(['dev-cluster', 'restart', 'n1', '--dir', dir]);
    expect(restarted.code, restarted.stderr).toBe(0);
    expect(restarted.stdout).toMatch(/n1 restarted \(pid \d+\)/);
    const read = await until('n1 serving the secret', async () => {
      const r = await fetch(`${api(0)}/v1/secrets/dc/a`).catch(() => null);
      return r?.status === 200 ? ((await r.json()) as { value: string }) : undefined;
    });
    expect(read.value).toBe('one');
    // A restart asked for by the user is not reported as a death.
    expect(out.match(/n1 killed by/g)).toHaveLength(1);
    expect(out).not.toMatch(/n1 exited/);
  }, 60_000);

  it('join starts n4 outside VAULT_PEERS and prints the command that adds it; it then replicates', async () => {
    const joined = await coffer(['dev-cluster', 'join', '--dir', dir]);
    expect(joined.code, joined.stderr).toBe(0);
    const addPeer = `coffer cluster add-peer n4 127.0.0.1:${base + 31}`;
    expect(joined.stdout).toContain(addPeer);
    expect(joined.stdout).toContain(`coffer cluster members set n1=127.0.0.1:${base + 1} n2=127.0.0.1:${base + 11} n3=127.0.0.1:${base + 21} n4=127.0.0.1:${base + 31}`);
    // Not a member yet: it knows no leader.
    expect((await fetch(`${api(3)}/v1/ready`)).status).toBe(503);
    const added = await coffer(addPeer.split(' ').slice(1), { COFFER_ADDR: api(1), COFFER_TOKEN: token });
    expect(added.code, added.stderr).toBe(0);
    const read = await until('n4 serving the secret', async () => {
      const r = await fetch(`${api(3)}/v1/secrets/dc/a`).catch(() => null);
      return r?.status === 200 ? ((await r.json()) as { value: string }) : undefined;
    });
    expect(read.value).toBe('one');
    expect((await coffer(['dev-cluster', 'status', '--dir', dir])).stdout).toMatch(/n4 +running .*\(joined\)/);
    // n4 exists now; a bad or unknown id is refused (exit 1), a usage mistake is exit 2.
    expect((await coffer(['dev-cluster', 'join', 'n4', '--dir', dir])).code).toBe(1);
    expect((await coffer(['dev-cluster', 'restart', 'n9', '--dir', dir])).code).toBe(1);
    expect((await coffer(['dev-cluster', 'restart', '--dir', dir])).code).toBe(2);
    expect((await coffer(['dev-cluster', 'frob', '--dir', dir])).code).toBe(2);
  }, 60_000);

  it('one-shot commands without a supervisor exit 3 and say how to start one; a second supervisor on the same folder is refused', async () => {
    const other = path.join(tempDir('coffer-devcl-none-'), 'x');
    const r = await coffer(['dev-cluster', 'status', '--dir', other]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`start one with: coffer dev-cluster --dir ${other}`);
    const second = await coffer(['dev-cluster', '--dir', dir, `--base-port=${base}`]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/already runs/);
  });

  it('Ctrl-C stops every node and removes the socket', async () => {
    const pids = [...(await coffer(['dev-cluster', 'status', '--dir', dir])).stdout.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(4);
    // Retired before stopping: the next run must not offer it (next test).
    const revoked = await coffer(['token', 'revoke', 'bootstrap-admin'], { COFFER_ADDR: api(1), COFFER_TOKEN: token });
    expect(revoked.code, revoked.stderr).toBe(0);
    const code = new Promise<number | null>((r) => sup.once('exit', (c) => r(c)));
    const before = out.length;
    sup.kill('SIGINT');
    expect(await code).toBe(0);
    expect(fs.existsSync(path.join(dir, 'supervisor.sock'))).toBe(false);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(out.slice(before)).not.toMatch(/killed by|exited with/); // nothing reported for the nodes it stopped itself
  }, 60_000);

  it('a new run on the same folder says the bootstrap token was revoked instead of printing it', async () => {
    out = '';
    sup = spawn(process.execPath, [COFFER_BIN, 'dev-cluster', '--dir', dir, `--base-port=${base}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    sup.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    sup.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the banner', () => out.includes('Ctrl-C stops every node.'));
    expect(out).toMatch(/The bootstrap token in \S+DEV-ONLY-bootstrap-token was revoked at \d{4}-\d\d-\d\dT[\d:.]+Z: it no longer works/);
    expect(out).not.toContain(token);
    expect(out).not.toMatch(/COFFER_TOKEN=\S/);
    const code = new Promise<number | null>((r) => sup.once('exit', (c) => r(c)));
    sup.kill('SIGINT');
    expect(await code).toBe(0);
  }, 60_000);
});
