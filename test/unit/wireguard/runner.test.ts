import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EndpointResolver } from '../../../wg-agent/resolver.js';
import { CommandError, maskKeys, ProcessRunner } from '../../../wg-agent/runner.js';
import { KEYS } from './fixtures.js';

describe('command runner', () => {
  const roots: string[] = [];
  afterEach(() => {
    for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
  });
  const tmpRoot = () => {
    const r = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-runner-test-'));
    roots.push(r);
    return r;
  };

  it('hands a secret over as a /dev/stdin the tool can open, and leaves no file behind', async () => {
    const root = tmpRoot();
    const runner = new ProcessRunner(root);
    // `wg set … private-key /dev/stdin` opens /dev/stdin by name: so does this.
    const secret = Buffer.from(KEYS.n1.priv + '\n');
    const { stdout } = await runner.run('sh', ['-c', 'cat /dev/stdin; echo ---; ls -A "$0"/*/', root], { secretStdin: secret });
    // The tool read the key, and the private directory was already empty while it ran.
    expect(stdout.toString()).toBe(`${KEYS.n1.priv}\n---\n`);
    const [dir] = fs.readdirSync(root);
    expect(fs.statSync(path.join(root, dir!)).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.join(root, dir!))).toEqual([]);
    runner.close();
    expect(fs.readdirSync(root)).toEqual([]);
  });

  it('reports a failing command with its stderr, masking anything key-shaped', async () => {
    const runner = new ProcessRunner(tmpRoot());
    const err = await runner.run('sh', ['-c', `echo "bad key ${KEYS.n2.priv}" >&2; exit 3`]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).code).toBe(3);
    expect((err as Error).message).toMatch(/bad key \+L\+5…\(key\)/);
    expect((err as Error).message).not.toContain(KEYS.n2.priv);
    expect(maskKeys(`x ${KEYS.n1.pub} y`)).toBe('x 8JOU…(key) y');
  });

  it('bounds a command in time, and reports a missing binary', async () => {
    const runner = new ProcessRunner(tmpRoot());
    await expect(runner.run('sleep', ['5'], { timeoutMs: 100 })).rejects.toThrow(/no answer within 100 ms/);
    await expect(runner.run('/nonexistent/wg', ['show'])).rejects.toThrow(/ENOENT/);
  });
});

describe('endpoint resolver', () => {
  it('resolves names, passes IPv4 literals through, reports changes, keeps the last address on failure', async () => {
    const answers = new Map([['a.svc', '10.0.0.1']]);
    const r = new EndpointResolver(async (h) => {
      const ip = answers.get(h);
      if (!ip) throw new Error(`ENOTFOUND ${h}`);
      return ip;
    });
    expect(await r.resolve(['a.svc:51820', '192.0.2.1:51820', 'b.svc:51820'])).toEqual([
      { endpoint: 'a.svc:51820', from: null, to: '10.0.0.1:51820' },
      { endpoint: '192.0.2.1:51820', from: null, to: '192.0.2.1:51820' },
    ]);
    expect(r.unresolved(['a.svc:51820', 'b.svc:51820'])).toEqual(['b.svc:51820']);
    answers.set('a.svc', '10.0.0.2');
    expect(await r.resolve(['a.svc:51820'])).toEqual([{ endpoint: 'a.svc:51820', from: '10.0.0.1:51820', to: '10.0.0.2:51820' }]);
    answers.delete('a.svc');
    expect(await r.resolve(['a.svc:51820'])).toEqual([]);
    expect(r.info('a.svc:51820')).toMatchObject({ address: '10.0.0.2:51820', error: 'ENOTFOUND a.svc' });
    r.retain(['192.0.2.1:51820']);
    expect(r.get('a.svc:51820')).toBeNull();
  });

  it('gives up on a lookup that hangs', async () => {
    const r = new EndpointResolver(() => new Promise<string>(() => {}), 50);
    await r.resolve(['slow.svc:1']);
    expect(r.info('slow.svc:1')).toMatchObject({ address: null, error: 'no answer within 50 ms' });
  });
});
