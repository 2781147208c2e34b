// `coffer wg-agent` as a process, on any machine (no root, no WireGuard):
// help and flag errors, and the agent's HTTP answers when wireguard-go cannot
// start. The real overlay is exercised by test/wireguard (npm run test:wireguard).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { request } from '../../helpers/http.js';
import { COFFER_BIN, runToExit, tempDir } from '../../helpers/node.js';
import { KEYS, peersDoc } from './fixtures.js';

describe('coffer wg-agent (process)', () => {
  it('prints its help with every option and its default, and is listed in coffer --help', async () => {
    const r = await runToExit({}, ['wg-agent', '--help']);
    expect(r.code).toBe(0);
    for (const opt of ['--name', '--interface', '--keys-dir', '--peers-file', '--listen', '--wireguard-go', '--wg', '--ip', '--poll-interval-ms', '--resolve-interval-ms']) {
      expect(r.output).toContain(opt);
    }
    expect(r.output).toMatch(/default wg0/);
    expect(r.output).toMatch(/default 0\.0\.0\.0:8203/);
    expect((await runToExit({}, ['help', 'wg-agent'])).output).toContain('Usage: coffer wg-agent');
    expect((await runToExit({}, ['--help'])).output).toMatch(/\n {2}wg-agent {2,}/);
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--poll-interval-ms', 'soon'], /--poll-interval-ms must be a whole number/],
    [['--listen', 'everywhere'], /--listen: expected IPv4:port/],
  ])('exits 2 on %j with a clear message', async (argv, message) => {
    const r = await runToExit({}, ['wg-agent', ...argv]);
    expect(r.code).toBe(2);
    expect(r.output).toMatch(message);
  });

  it('answers /health, says why it is not ready when wireguard-go cannot start, and stops on SIGTERM with 0', async () => {
    const dir = tempDir('coffer-wg-agent-');
    fs.mkdirSync(path.join(dir, 'keys'));
    fs.writeFileSync(path.join(dir, 'keys', 'n1.key'), KEYS.n1.priv + '\n', { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'peers.json'), JSON.stringify(peersDoc()));
    const proc = spawn(process.execPath, [
      COFFER_BIN, 'wg-agent', '--name', 'n1', '--keys-dir', path.join(dir, 'keys'), '--peers-file', path.join(dir, 'peers.json'),
      '--listen', '127.0.0.1:0', '--wireguard-go', path.join(dir, 'no-such-wireguard-go'), '--poll-interval-ms', '100',
    ], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    try {
      const port = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`agent did not listen:\n${out}`)), 10_000);
        proc.stdout.on('data', () => {
          const m = /"listen":"127\.0\.0\.1:(\d+)"/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1] as string);
          }
        });
      });
      const base = `http://127.0.0.1:${port}`;
      expect((await request(base, 'GET', '/health')).status).toBe(200);
      let ready = await request(base, 'GET', '/ready');
      for (let i = 0; i < 50 && !/ENOENT/.test(ready.text); i++) {
        await new Promise((r) => setTimeout(r, 100));
        ready = await request(base, 'GET', '/ready');
      }
      expect(ready.status).toBe(503);
      expect(ready.body).toEqual({ ready: false, reason: expect.stringMatching(/^wireguard-go is not running \(wireguard-go cannot start .*no-such-wireguard-go: spawn .* ENOENT\)$/) });
      const status = await request(base, 'GET', '/status');
      expect(status.body).toMatchObject({ name: 'n1', interface: 'wg0', address: '10.77.0.1/24', publicKey: KEYS.n1.pub, peersFile: { valid: true }, keyFile: { valid: true } });
      expect(status.text).not.toContain(KEYS.n1.priv);
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(out).not.toContain(KEYS.n1.priv);
      for (const line of out.trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow(); // pino JSON only
    } finally {
      proc.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
