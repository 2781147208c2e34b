// VAULT_READ_ALLOWLIST_FILE on a real node: reads really come from other
// loopback addresses (127.0.0.2, 127.0.0.3). The attacker's view: a pod is
// deleted and its IP given to another pod; once the file drops the address,
// that address must not read a value any more, memo or not.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, request, type HttpResponse } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, runToExit, startTestNode, tempDir, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function node(file: string): Promise<TestNode> {
  const n = await startTestNode({ env: { VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_READ_ALLOWLIST_FILE: file } });
  nodes.push(n);
  expect((await client(n.url, n.token).put('/v1/secrets/app/key', { value: 'the-value' })).status).toBe(201);
  return n;
}

const read = (n: TestNode, from: string) => request(n.url, 'GET', '/v1/secrets/app/key', { localAddress: from });
const allowed = (r: HttpResponse) => r.status === 200 && r.body.value === 'the-value';
const refused = (r: HttpResponse) => r.status === 403 && r.body?.error?.code === 'ip_not_allowed' && !r.text.includes('the-value');

/** Polls until `from` reads the value (or is refused), bounded. */
async function until(n: TestNode, from: string, want: 'allowed' | 'refused', ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await read(n, from);
    if (want === 'allowed' ? allowed(r) : refused(r)) return;
    if (Date.now() > deadline) throw new Error(`${from} not ${want} within ${ms} ms: ${r.status} ${r.body?.error?.code ?? ''}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

async function metric(n: TestNode, line: string): Promise<number> {
  const text = (await client(n.url, n.token).get('/metrics')).text;
  const m = new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${line} in /metrics`);
  return Number(m[1]);
}

/** The kubelet's ConfigMap update: a new timestamped folder, then `..data` swapped to it by rename. */
let swaps = 0;
function kubeletWrite(dir: string, content: string): void {
  const ts = path.join(dir, `..2026_12_05_13_00_00.${++swaps}`);
  fs.mkdirSync(ts);
  fs.writeFileSync(path.join(ts, 'allowlist'), content);
  fs.symlinkSync(path.basename(ts), path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  if (!fs.existsSync(path.join(dir, 'allowlist'))) fs.symlinkSync('..data/allowlist', path.join(dir, 'allowlist'));
}

describe('VAULT_READ_ALLOWLIST_FILE', () => {
  it('adds the file to the env list and drops a removed address as soon as the file is re-read', async () => {
    const dir = tempDir('coffer-cm-');
    const file = path.join(dir, 'plain-allowlist');
    fs.writeFileSync(file, '# sync pods\n127.0.0.2\n');
    const n = await node(file);
    expect(allowed(await read(n, '127.0.0.1'))).toBe(true); // env list
    expect(allowed(await read(n, '127.0.0.2'))).toBe(true); // file
    expect(refused(await read(n, '127.0.0.3'))).toBe(true);
    expect(await metric(n, 'coffer_read_allowlist_file_valid')).toBe(1);

    // The pod behind 127.0.0.2 is deleted: its address goes, and its memoized "yes" with it.
    fs.writeFileSync(file, '# sync pods\n127.0.0.3\n');
    await until(n, '127.0.0.2', 'refused');
    await until(n, '127.0.0.3', 'allowed');
    expect(allowed(await read(n, '127.0.0.1'))).toBe(true);
    expect(await metric(n, 'coffer_read_allowlist_reloads_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
  });

  it('follows the kubelet ..data swap, keeps the last good list over a malformed file and recovers', async () => {
    const dir = tempDir('coffer-cm-');
    kubeletWrite(dir, '127.0.0.2\n');
    const n = await node(path.join(dir, 'allowlist'));
    expect(allowed(await read(n, '127.0.0.2'))).toBe(true);

    kubeletWrite(dir, '127.0.0.3\n');
    await until(n, '127.0.0.3', 'allowed');
    expect(refused(await read(n, '127.0.0.2'))).toBe(true);

    // Malformed: the last good list stays, the metric and the log say why (the line, not the content).
    kubeletWrite(dir, '127.0.0.4\n127.0.0.5 127.0.0.6\n');
    const deadline = Date.now() + 10_000;
    while ((await metric(n, 'coffer_read_allowlist_file_valid')) !== 0) {
      if (Date.now() > deadline) throw new Error('malformed file not noticed');
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(await metric(n, 'coffer_read_allowlist_reloads_total{outcome="invalid"}')).toBe(1);
    expect(allowed(await read(n, '127.0.0.3'))).toBe(true);
    expect(refused(await read(n, '127.0.0.4'))).toBe(true);
    const log = fs.readFileSync(n.logFile, 'utf8');
    expect(log).toMatch(/"line":2.*read allowlist file is malformed/);
    expect(log).not.toContain('127.0.0.4'); // the bad line is quoted (shortened), the rest of the file is not

    // A good file again clears it.
    kubeletWrite(dir, '127.0.0.4\n');
    await until(n, '127.0.0.4', 'allowed');
    expect(refused(await read(n, '127.0.0.3'))).toBe(true);
    expect(await metric(n, 'coffer_read_allowlist_file_valid')).toBe(1);
    expect(allowed(await read(n, '127.0.0.1'))).toBe(true);
  });

  it('starts with the env list when the file is missing and picks it up when the kubelet mounts it', async () => {
    const dir = tempDir('coffer-cm-');
    const n = await node(path.join(dir, 'allowlist'));
    expect(allowed(await read(n, '127.0.0.1'))).toBe(true);
    expect(refused(await read(n, '127.0.0.2'))).toBe(true);
    expect(await metric(n, 'coffer_read_allowlist_file_valid')).toBe(0);
    expect(fs.readFileSync(n.logFile, 'utf8')).toContain('VAULT_READ_ALLOWLIST_FILE does not exist yet');
    kubeletWrite(dir, '127.0.0.2\n');
    await until(n, '127.0.0.2', 'allowed');
    expect(await metric(n, 'coffer_read_allowlist_file_valid')).toBe(1);
  });

  it('a malformed file at start stops `coffer server`, naming the variable and the line', async () => {
    const dir = tempDir('coffer-cm-');
    const file = path.join(dir, 'allowlist');
    fs.writeFileSync(file, '127.0.0.2\n\n10.0.0.0/33\n');
    const env = { ...nodeEnv({ dataDir: tempDir(), masterKey: randomMasterKey(), bootstrapToken: randomToken() }), VAULT_READ_ALLOWLIST_FILE: file };
    const { code, output } = await runToExit(env);
    expect(code).toBe(2);
    expect(output).toContain('VAULT_READ_ALLOWLIST_FILE');
    expect(output).toContain('line 3');
    expect(output).not.toContain('coffer node ready');
    expect(output).not.toMatch(/\n\s+at /);
  });

  it('an emptied file leaves the env list only; the refusal is the documented 403', async () => {
    const dir = tempDir('coffer-cm-');
    const file = path.join(dir, 'allowlist');
    fs.writeFileSync(file, '127.0.0.2\n');
    const n = await node(file);
    fs.writeFileSync(file, '');
    await until(n, '127.0.0.2', 'refused');
    expectError(await read(n, '127.0.0.2'), 403, 'ip_not_allowed');
    expect(allowed(await read(n, '127.0.0.1'))).toBe(true);
  });
});
