// Issue 11, finding 12: a busy API or Raft port used to make `coffer server`
// log EADDRINUSE and hang forever, so a supervisor never saw it fail. The
// attack: another process holds the port first; the node must exit non-zero
// within seconds, saying which listener and address.
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { freePort } from '../helpers/net.js';
import { nodeEnv, randomMasterKey, randomToken, runToExit, spawnNode, tempDir } from '../helpers/node.js';

const HOST = '127.0.0.1';
let held: net.Server[] = [];

afterEach(async () => {
  await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  held = [];
});

/** Occupies host:port the way any other program would. */
async function occupy(port: number): Promise<void> {
  const srv = net.createServer((sock) => sock.destroy());
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, HOST, () => resolve());
  });
  held.push(srv);
}

async function ports(): Promise<{ api: number; raft: number }> {
  return { api: await freePort(HOST), raft: await freePort(HOST) };
}

function env(p: { api: number; raft: number }): Record<string, string> {
  return {
    ...nodeEnv({ dataDir: tempDir(), masterKey: randomMasterKey(), bootstrapToken: randomToken() }),
    VAULT_API_ADDR: `${HOST}:${p.api}`,
    VAULT_RAFT_ADDR: `${HOST}:${p.raft}`,
  };
}

describe('coffer server on a busy port', () => {
  for (const which of ['api', 'raft'] as const) {
    const name = which === 'api' ? 'API listener (VAULT_API_ADDR)' : 'Raft listener (VAULT_RAFT_ADDR)';

    it(`exits non-zero within seconds, naming the ${which} address`, async () => {
      const p = await ports();
      await occupy(p[which]);
      const started = Date.now();
      const { code, output } = await runToExit(env(p), ['server'], 10_000);
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(code, output).not.toBe(0);
      expect(code, output).not.toBeNull();
      expect(output).toContain(`coffer server: ${name} cannot listen on ${HOST}:${p[which]}: the address is already in use`);
    }, 20_000);

    it(`exits non-zero with --dev too when the ${which} port is busy`, async () => {
      const p = await ports();
      await occupy(p[which]);
      const e = env(p);
      // --dev fills in only what is unset; the data folder gets its DEV-ONLY keys.
      const dev = { PATH: process.env.PATH ?? '', VAULT_DATA_DIR: path.join(e.VAULT_DATA_DIR!, 'dev'), VAULT_API_ADDR: e.VAULT_API_ADDR!, VAULT_RAFT_ADDR: e.VAULT_RAFT_ADDR! };
      const { code, output } = await runToExit(dev, ['server', '--dev'], 10_000);
      expect(code, output).not.toBe(0);
      expect(code, output).not.toBeNull();
      expect(output).toContain(`${name} cannot listen on ${HOST}:${p[which]}: the address is already in use`);
    }, 20_000);
  }

  it('starts normally once the port is free again', async () => {
    const p = await ports();
    await occupy(p.api);
    const e = env(p);
    expect((await runToExit(e, ['server'], 10_000)).code).not.toBe(0);
    await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))));
    // The failed start left the data folder usable: the same folder starts and serves.
    const node = await spawnNode(e);
    try {
      expect((await request(node.url, 'GET', '/v1/health')).status).toBe(200);
    } finally {
      expect(await node.stop()).toBe(0);
    }
  }, 30_000);
});
