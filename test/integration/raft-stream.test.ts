// Raft streams on a real 3-node cluster: members use them (not the HTTP
// fallback), and each way an outsider or a man in the middle would abuse the
// upgrade or the frames is refused and counted. The frame attacks hold the
// cluster key (the strongest outsider: it can open a stream as a member) and
// show that even then a frame altered, repeated or moved from another stream
// closes the stream. A member from before streams (an HTTP-only listener)
// still gets its batches.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterAuth, addressedPath, type CoveredHeaders } from '../../server/raft/cluster-auth.js';
import { BATCH_CONTENT_TYPE, decodeBatch, encodeBatch } from '../../server/raft/codec.js';
import { message, type Message } from '../../server/raft/core/index.js';
import { FrameWriter } from '../../server/raft/stream/frames.js';
import { STREAM_NONCE_HEADER, STREAM_PATH, STREAM_PROTOCOL, acceptBody, acceptedStream } from '../../server/raft/stream/handshake.js';
import { RAFT_PATHS, Transport } from '../../server/raft/transport.js';
import { capabilities } from '../../server/store/commands.js';
import { TestCluster, type ClusterMember } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';

let cluster: TestCluster;
const CAPS = capabilities().join(',');

interface Handshake {
  status: number;
  socket: Socket | null;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/** Sends one upgrade to `m`'s Raft listener with exactly these headers. */
function upgrade(m: ClusterMember, path: string, headers: Record<string, string>): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: m.host, port: m.raftPort, path, method: 'GET', agent: false, headers: { connection: 'Upgrade', upgrade: STREAM_PROTOCOL, ...headers } });
    req.on('upgrade', (res, socket: Socket) => {
      socket.on('error', () => {});
      resolve({ status: res.statusCode ?? 0, socket, headers: res.headers, body: null });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: null, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A signed handshake as `auth` to `m` (the headers a member's transport sends). */
function signedHeaders(auth: ClusterAuth, path: string, caps = CAPS): Record<string, string> {
  const covered: CoveredHeaders = { 'x-coffer-capabilities': caps };
  return { ...covered, ...auth.signRequest('GET', path, covered, '') };
}

/** Opens a stream as `auth` to `m` and returns its socket and a writer sealing frames for it. */
async function openAs(auth: ClusterAuth, m: ClusterMember): Promise<{ socket: Socket; writer: FrameWriter }> {
  const path = addressedPath(STREAM_PATH, m.id);
  const headers = signedHeaders(auth, path);
  const h = await upgrade(m, path, headers);
  expect(h.status).toBe(101);
  const { key } = acceptedStream(auth, m.id, headers['x-coffer-nonce']!, h.headers as Record<string, string>);
  return { socket: h.socket!, writer: new FrameWriter(key) };
}

function frame(writer: FrameWriter, payload: Buffer): Buffer {
  return Buffer.concat([writer.header(payload), payload]);
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metric(m: ClusterMember, name: string, labels = ''): Promise<number> {
  const r = await request(m.url, 'GET', '/metrics', { token: cluster.token });
  const line = r.text.split('\n').find((l: string) => l.startsWith(`${name}${labels} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

describe('Raft streams (3-node cluster)', () => {
  beforeAll(async () => {
    cluster = await TestCluster.start(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('members replicate over streams: the leader has one inbound stream from each follower, each follower at least the leader\'s, and writes commit', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await request(cluster.members[0]!.url, 'PUT', `/v1/secrets/stream/k${i}`, { token: cluster.token, body: { value: `v${i}` } });
      expect(r.status).toBeLessThan(300);
    }
    const roles = await Promise.all(cluster.members.map(async (m) => (await cluster.health(m))?.role));
    // A follower may also keep a stream from the other one, opened to ask for its vote.
    for (const [i, m] of cluster.members.entries()) {
      const ok = (n: number) => (roles[i] === 'leader' ? n === 2 : n >= 1);
      await eventually(`${m.id} streams`, async () => (ok(await metric(m, 'coffer_raft_streams_inbound')) ? true : undefined), 10_000);
    }
    expect(roles.filter((r) => r === 'leader')).toHaveLength(1);
  });

  describe('the upgrade, as an outsider would try it', () => {
    const target = () => cluster.members[0]!;
    const path = () => addressedPath(STREAM_PATH, target().id);

    it('no MAC, a wrong key, a non-member, the wrong receiver, no receiver, a replayed handshake: 401 each, counted by reason', async () => {
      const m = target();
      const key = Buffer.from(cluster.clusterKey, 'base64');
      const member = new ClusterAuth({ nodeId: cluster.members[1]!.id, key });
      const before = await Promise.all(['missing', 'bad_mac', 'unknown_sender', 'misdirected', 'malformed', 'replay'].map((r) => metric(m, 'coffer_raft_auth_refused_total', `{reason="${r}"}`)));
      const cases: [string, Record<string, string>, string][] = [
        [path(), { 'x-coffer-node': member.nodeId, 'x-coffer-capabilities': CAPS }, 'missing'],
        [path(), signedHeaders(new ClusterAuth({ nodeId: member.nodeId, key: randomBytes(32) }), path()), 'bad_mac'],
        [path(), signedHeaders(new ClusterAuth({ nodeId: 'ghost', key }), path()), 'unknown_sender'],
        [addressedPath(STREAM_PATH, cluster.members[2]!.id), signedHeaders(member, addressedPath(STREAM_PATH, cluster.members[2]!.id)), 'misdirected'],
        [STREAM_PATH, signedHeaders(member, STREAM_PATH), 'malformed'],
      ];
      for (const [p, headers, reason] of cases) {
        const h = await upgrade(m, p, headers);
        expect(h.status, reason).toBe(401);
        expect(h.body).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
        expect(h.headers['x-coffer-mac']).toBeUndefined();
      }
      // A handshake captured on the wire and sent again: the first opens a stream, the copy is refused.
      const captured = signedHeaders(member, path());
      const first = await upgrade(m, path(), captured);
      expect(first.status).toBe(101);
      first.socket!.destroy();
      const again = await upgrade(m, path(), captured);
      expect(again.status).toBe(401);
      const after = await Promise.all(['missing', 'bad_mac', 'unknown_sender', 'misdirected', 'malformed', 'replay'].map((r) => metric(m, 'coffer_raft_auth_refused_total', `{reason="${r}"}`)));
      expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1, 1, 1, 1]);
    });

    it('an upgrade anywhere else on the Raft listener, or to another protocol, is refused and closed', async () => {
      const m = target();
      const batch = addressedPath(RAFT_PATHS.batch, m.id);
      expect((await upgrade(m, batch, signedHeaders(new ClusterAuth({ nodeId: cluster.members[1]!.id, key: Buffer.from(cluster.clusterKey, 'base64') }), batch))).status).toBe(404);
      const ws = await new Promise<number>((resolve) => {
        const req = http.request({ host: m.host, port: m.raftPort, path: path(), agent: false, headers: { connection: 'Upgrade', upgrade: 'websocket' } });
        req.on('response', (res) => resolve(res.statusCode ?? 0));
        req.on('upgrade', () => resolve(101));
        req.end();
      });
      expect(ws).toBe(400);
    });
  });

  describe('frames, as a man in the middle would try them (with the cluster key, as a stopped member)', () => {
    // n3 is stopped so that its own stream does not replace the test's; it is still a voter, so a stream as n3 is admitted.
    let as3: ClusterAuth;
    let target: ClusterMember;
    beforeAll(async () => {
      const m3 = cluster.members[2]!;
      await cluster.stopMember(m3.id);
      as3 = new ClusterAuth({ nodeId: m3.id, key: Buffer.from(cluster.clusterKey, 'base64') });
      target = cluster.members[0]!;
    }, 30_000);
    afterAll(async () => {
      await cluster.startMember(cluster.members[2]!.id);
    }, 30_000);

    const badMacs = () => metric(target, 'coffer_raft_auth_refused_total', '{reason="bad_mac"}');
    const empty = encodeBatch([]);

    it('good frames keep the stream open; a flipped byte closes it', async () => {
      const before = await badMacs();
      const { socket, writer } = await openAs(as3, target);
      socket.write(frame(writer, empty));
      socket.write(frame(writer, empty));
      await sleep(300);
      expect(socket.destroyed).toBe(false);
      const bad = frame(writer, empty);
      bad[bad.length - 1]! ^= 0x01; // the tag, as the payload is empty
      socket.write(bad);
      await closed(socket);
      expect(await badMacs()).toBe(before + 1);
    });

    it('a frame repeated, or moved from another stream, closes the stream', async () => {
      const before = await badMacs();
      const a = await openAs(as3, target);
      const f = frame(a.writer, empty);
      a.socket.write(f);
      await sleep(200);
      expect(a.socket.destroyed).toBe(false);
      a.socket.write(f);
      await closed(a.socket);
      const b = await openAs(as3, target);
      const c = await openAs(as3, target); // replaces b as n3's stream: b's frames are no use on c either
      await closed(b.socket);
      c.socket.write(frame(b.writer, empty));
      await closed(c.socket);
      expect(await badMacs()).toBe(before + 2);
    });

    it('a frame with a bogus length is refused without buffering it', async () => {
      const { socket } = await openAs(as3, target);
      const head = Buffer.alloc(20);
      head.writeUInt32BE(0xffffffff, 0);
      socket.write(head);
      await closed(socket);
    });
  });
});

describe('Raft transport to a member from before streams', () => {
  it('falls back to one signed HTTP request per batch when the peer answers the upgrade with a signed 404', async () => {
    const key = randomBytes(32);
    const oldAuth = new ClusterAuth({ nodeId: 'old', key });
    const received: Message[] = [];
    let upgrades = 0;
    // What an older listener does: every request is authenticated; unknown paths are a signed 404; batches are taken.
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const claim = oldAuth.checkClaim(req.headers, (id) => id === 'new');
        const covered: CoveredHeaders = { 'x-coffer-capabilities': String(req.headers['x-coffer-capabilities']) };
        const slot = oldAuth.verifyRequest(claim, req.method!, req.url!, covered, body);
        if (req.headers.upgrade) upgrades++;
        const found = req.method === 'POST' && req.url === addressedPath(RAFT_PATHS.batch, 'old') && req.headers['content-type'] === BATCH_CONTENT_TYPE;
        if (found) received.push(...decodeBatch(body));
        const reply = found ? JSON.stringify({ node_id: 'old', capabilities: ['x@1'] }) : JSON.stringify({ error: { code: 'not_found', message: 'no' } });
        res.writeHead(found ? 200 : 404, { 'content-type': 'application/json', ...oldAuth.signResponse(slot, claim.nonce, found ? 200 : 404, reply) });
        res.end(reply);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const unreachable: string[] = [];
    const caps: string[][] = [];
    const t = new Transport({ nodeId: 'new', capabilities: ['x@1'], onUnreachable: (p) => unreachable.push(p), onPeerCapabilities: (_p, c) => caps.push(c) });
    t.authenticate(new ClusterAuth({ nodeId: 'new', key }));
    t.setPeer('old', `127.0.0.1:${port}`);
    try {
      const hb = (commit: number) => message({ type: 'heartbeat', from: 'new', to: 'old', term: 2, commit });
      t.send(hb(1));
      await eventually('first batch', async () => (received.length >= 1 ? true : undefined), 5_000);
      t.send(hb(2));
      t.send(hb(3));
      await eventually('later batches', async () => (received.length >= 3 ? true : undefined), 5_000);
      expect(received.map((m) => m.commit)).toEqual([1, 2, 3]);
      expect(upgrades).toBe(1); // tried once, then HTTP for a while
      expect(caps.at(-1)).toEqual(['x@1']);
      expect(unreachable).toEqual([]);
    } finally {
      t.close();
      await new Promise((r) => server.close(r));
    }
  });
});

/**
 * A member that accepts streams from `new` (after `delayMs`) and then never reads a byte (a process
 * stopped with SIGSTOP behaves so). Returns the accepted sockets as they come.
 */
async function silentMember(key: Buffer, delayMs = 0) {
  const auth = new ClusterAuth({ nodeId: 'hung', key });
  const accepted: Socket[] = [];
  const server = http.createServer((_req, res) => res.writeHead(500).end());
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    socket.on('error', () => {});
    socket.pause();
    accepted.push(socket);
    const claim = auth.checkClaim(req.headers, (id) => id === 'new');
    const caps = String(req.headers['x-coffer-capabilities']);
    const slot = auth.verifyRequest(claim, 'GET', req.url!, { 'x-coffer-capabilities': caps }, '');
    const nonce = auth.freshNonce();
    const signed = auth.signResponse(slot, claim.nonce, 101, acceptBody(nonce, 'x@1'));
    setTimeout(() => {
      if (socket.destroyed) return;
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n${STREAM_NONCE_HEADER}: ${nonce}\r\nx-coffer-capabilities: x@1\r\n` +
          Object.entries(signed).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n',
      );
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    accepted,
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: async () => {
      for (const s of accepted) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('Raft transport to a member that stops reading (hung, not dead)', () => {
  it('drops what does not fit and reports the peer unreachable, then closes the stalled stream and reports it again', async () => {
    const key = randomBytes(32);
    const member = await silentMember(key);
    const { accepted } = member;
    const unreachable: number[] = [];
    const started = Date.now();
    const t = new Transport({ nodeId: 'new', capabilities: ['x@1'], onUnreachable: () => unreachable.push(Date.now() - started), onPeerCapabilities: () => {} });
    t.authenticate(new ClusterAuth({ nodeId: 'new', key }));
    t.setPeer('hung', member.address);
    try {
      const big = (i: number) => message({ type: 'app', from: 'new', to: 'hung', term: 2, index: i, logTerm: 2, entries: [{ index: i + 1, term: 2, type: 'normal', data: new Uint8Array(1 << 20) }] });
      t.send(big(0));
      await eventually('stream open', async () => (accepted.length === 1 ? true : undefined), 5_000);
      // 40 MiB into a peer that reads nothing: the kernel's buffers fill, then the 16 MiB queue; the rest is dropped.
      for (let i = 1; i <= 40; i++) {
        t.send(big(i));
        await new Promise((r) => setImmediate(r));
      }
      expect(unreachable.length).toBeGreaterThan(0);
      const dropped = unreachable.length;
      // Nothing moves for 5 s: the stream is closed as stalled and the peer reported once more; memory is let go.
      await eventually('stall detected', async () => (unreachable.length > dropped ? true : undefined), 10_000);
      expect(unreachable.at(-1)!).toBeGreaterThanOrEqual(5_000);
      // The next message opens a fresh stream.
      t.send(big(41));
      await eventually('a new stream', async () => (accepted.length === 2 ? true : undefined), 5_000);
    } finally {
      t.close();
      await member.close();
    }
  }, 30_000);

  it('a peer removed while its stream is being opened gets no stream, and nothing is reported for it', async () => {
    const key = randomBytes(32);
    const member = await silentMember(key, 300);
    const unreachable: string[] = [];
    const t = new Transport({ nodeId: 'new', capabilities: ['x@1'], onUnreachable: (p) => unreachable.push(p), onPeerCapabilities: () => {} });
    t.authenticate(new ClusterAuth({ nodeId: 'new', key }));
    t.setPeer('hung', member.address);
    try {
      t.send(message({ type: 'heartbeat', from: 'new', to: 'hung', term: 2 }));
      await eventually('handshake arrived', async () => (member.accepted.length === 1 ? true : undefined), 5_000);
      t.removePeer('hung'); // before the 101 comes back
      expect(await endedWithin(member.accepted[0]!, 3_000)).toBe(true); // the sender closed the half-open stream
      expect(unreachable).toEqual([]);
    } finally {
      t.close();
      await member.close();
    }
  });
});

/** Whether the other end of `s` closes it (FIN or reset) within `ms`. */
function endedWithin(s: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    s.once('end', done);
    s.once('close', done);
    s.resume(); // a FIN is only seen by reading
  });
}
