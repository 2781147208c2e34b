// The agent's control loop against a fake interface (FakeHost), fake files and
// a fake resolver: what it applies, when it is ready, and what it keeps when a
// file goes bad. The real thing runs in network namespaces in test/wireguard.
import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WgAgent, type AgentSettings, type WireguardGoHandle } from '../../../wg-agent/agent.js';
import { createAgentServer, listen } from '../../../wg-agent/http.js';
import { EndpointResolver } from '../../../wg-agent/resolver.js';
import { FakeHost, KEYS, peersDoc } from './fixtures.js';

const PUB_OF = new Map(Object.values(KEYS).map((k) => [k.priv, k.pub]));

class FakeWireguardGo implements WireguardGoHandle {
  running = true;
  pid: number | null = 100;
  restarts = 0;
  lastExit: string | null = null;
}

function setup(name = 'n1') {
  const files = new Map<string, string>([
    ['/peers/peers.json', JSON.stringify(peersDoc())],
    [`/keys/${name}.key`, KEYS[name as keyof typeof KEYS].priv + '\n'],
    ['/keys/n2.key', KEYS.n2.priv + '\n'], // other pods' keys are in the Secret too; the agent reads only its own
  ]);
  const dns = new Map<string, string>([
    ['n1.vault-headless.ns.svc', '10.0.0.11'],
    ['n2.vault-headless.ns.svc', '10.0.0.12'],
  ]);
  const host = new FakeHost((priv) => PUB_OF.get(priv) ?? 'unknown');
  host.reset();
  const wgGo = new FakeWireguardGo();
  let logText = '';
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { logText += String(chunk); cb(); } }));
  const settings: AgentSettings = {
    name, iface: 'wg0', keysDir: '/keys', peersFile: '/peers/peers.json', wgBinary: 'wg', ipBinary: 'ip', pollIntervalMs: 60_000, resolveIntervalMs: 60_000,
  };
  const lookups: string[] = [];
  const resolver = new EndpointResolver(async (h) => {
    lookups.push(h);
    const ip = dns.get(h);
    if (!ip) throw new Error(`getaddrinfo ENOTFOUND ${h}`);
    return ip;
  });
  const readFile = (f: string) => {
    const t = files.get(f);
    if (t === undefined) throw Object.assign(new Error(`ENOENT: ${f}`), { code: 'ENOENT' });
    return Buffer.from(t);
  };
  const agent = new WgAgent({ settings, logger, runner: host, resolver, wireguardGo: wgGo, readFile });
  return { agent, host, files, dns, wgGo, lookups, log: () => logText };
}

const setCalls = (host: FakeHost) => host.calls.filter((c) => c[0] === 'wg' && c[1] === 'set');

describe('wg-agent control loop', () => {
  it('brings a fresh interface up: address, MTU, key from stdin, every other pod as a peer', async () => {
    const { agent, host, log } = setup();
    await agent.reconcile();
    expect(agent.reason).toBeNull();
    expect(agent.ready).toBe(true);
    expect(host).toMatchObject({ up: true, mtu: 1420, addresses: ['10.77.0.1/24'], privateKey: KEYS.n1.priv, listenPort: 51820 });
    expect(host.peers).toEqual([
      { publicKey: KEYS.n2.pub, endpoint: '10.0.0.12:51820', allowedIps: ['10.77.0.2/32'], keepalive: 25, latestHandshake: 0 },
      { publicKey: KEYS.n3.pub, endpoint: '192.0.2.3:51820', allowedIps: ['10.77.0.3/32'], keepalive: 25, latestHandshake: 0 },
    ]);
    expect(host.secrets).toEqual([KEYS.n1.priv]);
    // The private key is on no command line and in no log line; other pods' keys are never read.
    for (const c of host.calls) expect(c.join(' ')).not.toContain(KEYS.n1.priv);
    expect(log()).not.toContain(KEYS.n1.priv);
    expect(log()).not.toContain(KEYS.n2.priv);

    // A second pass changes nothing.
    const before = setCalls(host).length;
    await agent.reconcile();
    expect(setCalls(host).length).toBe(before);
    expect(agent.ready).toBe(true);
  });

  it('reports status without any private key', async () => {
    const { agent, host } = setup();
    await agent.reconcile();
    host.peers[0]!.latestHandshake = Math.floor(Date.now() / 1000) - 7;
    await agent.reconcile();
    const status = agent.status();
    expect(status).toMatchObject({
      name: 'n1', interface: 'wg0', address: '10.77.0.1/24', publicKey: KEYS.n1.pub, listenPort: 51820, ready: true,
      wireguardGo: { running: true, pid: 100, restarts: 0 },
    });
    expect(status.peers[0]).toMatchObject({ name: 'n2', endpoint: 'n2.vault-headless.ns.svc:51820', resolvedEndpoint: '10.0.0.12:51820', currentEndpoint: '10.0.0.12:51820' });
    expect(status.peers[0]!.latestHandshakeAgeSecs).toBeGreaterThanOrEqual(7);
    expect(status.peers[1]!.latestHandshakeAgeSecs).toBeNull();
    const text = JSON.stringify(status);
    for (const k of Object.values(KEYS)) expect(text).not.toContain(k.priv);
  });

  it('keeps the last good configuration when peers.json turns invalid, says why in /ready, and recovers', async () => {
    const { agent, host, files } = setup();
    await agent.reconcile();
    files.set('/peers/peers.json', JSON.stringify(peersDoc({ listenPort: 'x' })));
    await agent.reconcile();
    expect(agent.ready).toBe(false);
    expect(agent.reason).toMatch(/^invalid peers\.json: listenPort: .*last good version stays applied/);
    expect(host.peers).toHaveLength(2);
    expect(host.listenPort).toBe(51820);

    files.set('/peers/peers.json', '{"version":1');
    await agent.reconcile();
    expect(agent.reason).toMatch(/not valid JSON/);

    // A file that drops n3 and is valid again: n3 is removed, nothing else touched.
    const doc = peersDoc();
    doc.peers = (doc.peers as unknown[]).slice(0, 2);
    files.set('/peers/peers.json', JSON.stringify(doc));
    const before = setCalls(host).length;
    await agent.reconcile();
    expect(agent.ready).toBe(true);
    expect(host.peers.map((p) => p.publicKey)).toEqual([KEYS.n2.pub]);
    expect(setCalls(host).slice(before)).toEqual([['wg', 'set', 'wg0', 'peer', KEYS.n3.pub, 'remove']]);
  });

  it('recovers from a moment when peers.json cannot be read (the kubelet swapping ..data)', async () => {
    const { agent, files } = setup();
    await agent.reconcile();
    const text = files.get('/peers/peers.json')!;
    files.delete('/peers/peers.json');
    await agent.reconcile();
    expect(agent.reason).toMatch(/cannot read .*ENOENT \(the last good version stays applied\)/);
    files.set('/peers/peers.json', text); // the very same bytes again
    await agent.reconcile();
    expect(agent.reason).toBeNull();
  });

  it('is not ready, and applies nothing, while the first peers.json or key is missing or bad', async () => {
    const { agent, host, files } = setup();
    files.delete('/peers/peers.json');
    files.set('/keys/n1.key', 'not a key');
    await agent.reconcile();
    expect(agent.reason).toMatch(/cannot read \/peers\/peers\.json: ENOENT/);
    files.set('/peers/peers.json', JSON.stringify(peersDoc()));
    await agent.reconcile();
    expect(agent.reason).toMatch(/invalid \/keys\/n1\.key: expected a WireGuard private key/);
    expect(agent.reason).not.toContain('not a key');
    expect(setCalls(host)).toEqual([]);
    files.set('/keys/n1.key', KEYS.n1.priv);
    await agent.reconcile();
    expect(agent.ready).toBe(true);
  });

  it('refuses a peers.json that does not list this pod, keeping the last good one', async () => {
    const { agent, files, host } = setup();
    await agent.reconcile();
    const doc = peersDoc();
    doc.peers = (doc.peers as unknown[]).slice(1);
    files.set('/peers/peers.json', JSON.stringify(doc));
    await agent.reconcile();
    expect(agent.reason).toMatch(/no entry named "n1"/);
    expect(host.peers).toHaveLength(2);
  });

  it('applies a key that does not match peers.json but is not ready, naming the mismatch', async () => {
    const { agent, files, host } = setup();
    files.set('/keys/n1.key', KEYS.n3.priv);
    await agent.reconcile();
    expect(host.privateKey).toBe(KEYS.n3.priv);
    expect(agent.ready).toBe(false);
    expect(agent.reason).toMatch(/does not match the publicKey listed for n1/);
    expect(agent.reason).not.toContain(KEYS.n3.priv);
  });

  it('picks up a rotated key from the Secret', async () => {
    const { agent, files, host } = setup();
    await agent.reconcile();
    // Rotate n1 to a new key pair (n2's test pair; n2 leaves the list): both files change together.
    const rotated = { priv: KEYS.n2.priv, pub: KEYS.n2.pub };
    const peers = [
      { name: 'n1', publicKey: rotated.pub, address: '10.77.0.1', endpoint: 'n1.vault-headless.ns.svc:51820' },
      { name: 'n3', publicKey: KEYS.n3.pub, address: '10.77.0.3', endpoint: '192.0.2.3:51820' },
    ];
    files.set('/peers/peers.json', JSON.stringify(peersDoc({}, peers)));
    files.set('/keys/n1.key', rotated.priv);
    await agent.reconcile();
    expect(agent.reason).toBeNull();
    expect(host.privateKey).toBe(rotated.priv);
    expect(host.peers.map((p) => p.publicKey)).toEqual([KEYS.n3.pub]);
  });

  it('reapplies everything to a restarted wireguard-go, and is not ready while it is down', async () => {
    const { agent, host, wgGo } = setup();
    await agent.reconcile();
    wgGo.running = false;
    wgGo.pid = null;
    wgGo.lastExit = 'wireguard-go killed by SIGKILL';
    host.vanish();
    await agent.reconcile();
    expect(agent.reason).toBe('wireguard-go is not running (wireguard-go killed by SIGKILL)');
    // Restarted: a new process, an empty interface.
    wgGo.running = true;
    wgGo.pid = 101;
    wgGo.restarts = 1;
    host.reset();
    await agent.reconcile();
    expect(agent.ready).toBe(true);
    expect(host).toMatchObject({ up: true, addresses: ['10.77.0.1/24'], privateKey: KEYS.n1.priv });
    expect(host.peers.map((p) => p.endpoint)).toEqual(['10.0.0.12:51820', '192.0.2.3:51820']);
  });

  it('is not ready while the interface is missing although wireguard-go runs', async () => {
    const { agent, host } = setup();
    host.vanish();
    await agent.reconcile();
    expect(agent.reason).toMatch(/does not exist/);
  });

  it('re-resolves endpoints and updates only the peer that moved; a name that stops resolving keeps its address', async () => {
    const { agent, host, dns, lookups } = setup();
    await agent.reconcile();
    dns.set('n2.vault-headless.ns.svc', '10.0.0.22');
    const before = setCalls(host).length;
    await agent.resolveAll();
    await agent.reconcile();
    expect(setCalls(host).slice(before)).toEqual([['wg', 'set', 'wg0', 'peer', KEYS.n2.pub, 'endpoint', '10.0.0.22:51820']]);
    // Own endpoint and IPv4 literals are never looked up.
    expect(lookups.every((h) => h === 'n2.vault-headless.ns.svc')).toBe(true);

    dns.delete('n2.vault-headless.ns.svc');
    await agent.resolveAll();
    await agent.reconcile();
    expect(host.peers[0]!.endpoint).toBe('10.0.0.22:51820');
    expect(agent.status().peers[0]).toMatchObject({ resolvedEndpoint: '10.0.0.22:51820', resolveError: expect.stringMatching(/ENOTFOUND/) });
    expect(agent.ready).toBe(true);
  });

  it('configures a peer whose name does not resolve yet without an endpoint, stays ready, and adds it later', async () => {
    const { agent, host, dns } = setup();
    dns.delete('n2.vault-headless.ns.svc'); // the pod does not exist yet
    await agent.reconcile();
    expect(agent.ready).toBe(true);
    expect(host.peers[0]).toMatchObject({ publicKey: KEYS.n2.pub, endpoint: null });
    dns.set('n2.vault-headless.ns.svc', '10.0.0.12');
    await agent.reconcile(); // unresolved names are retried on every pass
    expect(host.peers[0]!.endpoint).toBe('10.0.0.12:51820');
  });
});

describe('wg-agent HTTP', () => {
  let server: http.Server | null = null;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = null;
  });

  async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: any }> {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    return { status: res.status, body: await res.json() };
  }

  it('serves /health, /ready with the reason, and /status', async () => {
    const { agent, files } = setup();
    server = createAgentServer(agent);
    const { port } = await listen(server, '127.0.0.1', 0);
    expect(await get(port, '/health')).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await get(port, '/ready')).toEqual({ status: 503, body: { ready: false, reason: 'starting' } });
    await agent.reconcile();
    expect(await get(port, '/ready')).toEqual({ status: 200, body: { ready: true } });
    files.set('/peers/peers.json', '[]');
    await agent.reconcile();
    expect(await get(port, '/ready')).toEqual({ status: 503, body: { ready: false, reason: expect.stringMatching(/^invalid peers\.json: peers\.json: expected a JSON object/) } });
    const status = await get(port, '/status');
    expect(status.status).toBe(200);
    expect(status.body.peersFile).toEqual({ valid: false, error: expect.any(String) });
    expect(JSON.stringify(status.body)).not.toContain(KEYS.n1.priv);
    expect((await get(port, '/nope')).status).toBe(404);
    expect((await get(port, '/ready', 'POST')).status).toBe(405);
  });
});
