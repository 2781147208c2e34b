// The sign/verify rules of Raft cluster authentication, each as the forgery
// or replay it refuses.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthRefusal, CLOCK_WINDOW_MS, ClusterAuth, addressedPath, type CoveredHeaders, type RefusalReason } from '../../../server/raft/cluster-auth.js';
import { NonceCache } from '../../../server/raft/nonce-cache.js';

const KEY = randomBytes(32);
const OTHER_KEY = randomBytes(32);
const PATH = '/raft/v1/batch';
const BODY = Buffer.from('a binary batch \x00\x01\x02 of entries');
const COVERED: CoveredHeaders = { 'x-coffer-capabilities': 'secret.put@1,token.create@1' };
const members = (...ids: string[]) => (id: string) => ids.includes(id);

function clock(start = 1_700_000_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** A sender and a receiver sharing a clock; the receiver knows the members `n1` and `n2`. */
function pair(opts: { senderKey?: Uint8Array; receiverKey?: Uint8Array; previous?: Uint8Array; senderId?: string; maxNonces?: number } = {}) {
  const c = clock();
  const sender = new ClusterAuth({ nodeId: opts.senderId ?? 'n1', key: opts.senderKey ?? KEY, now: c.now });
  const receiver = new ClusterAuth({ nodeId: 'n2', key: opts.receiverKey ?? KEY, previous: opts.previous ?? null, now: c.now, ...(opts.maxNonces ? { maxNonces: opts.maxNonces } : {}) });
  return { c, sender, receiver };
}

/** What the receiver does with one request: headers, then MAC and nonce. */
function receive(receiver: ClusterAuth, headers: Record<string, string>, body: Uint8Array = BODY, covered: CoveredHeaders = COVERED, path = PATH, isMember = members('n1', 'n2', 'n3')) {
  const claim = receiver.checkClaim(headers, isMember);
  return receiver.verifyRequest(claim, 'POST', path, covered, body);
}

function refusal(fn: () => unknown): RefusalReason {
  try {
    fn();
  } catch (err) {
    if (err instanceof AuthRefusal) return err.reason;
    throw err;
  }
  throw new Error('expected the request to be refused');
}

describe('cluster authentication of Raft requests', () => {
  it('accepts a request signed with the shared key by a member, once', () => {
    const { sender, receiver } = pair();
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    expect(receive(receiver, h)).toBe(0);
    expect(refusal(() => receive(receiver, h))).toBe('replay');
  });

  it('binds a request to its receiver: one addressed to n2 is refused by n3, whose nonces never saw it', () => {
    const c = clock();
    const sender = new ClusterAuth({ nodeId: 'n1', key: KEY, now: c.now });
    const n2 = new ClusterAuth({ nodeId: 'n2', key: KEY, now: c.now });
    const n3 = new ClusterAuth({ nodeId: 'n3', key: KEY, now: c.now });
    const path = addressedPath(PATH, 'n2');
    const h = sender.signRequest('POST', path, COVERED, BODY);
    expect(receive(n2, h, BODY, COVERED, path)).toBe(0);
    // The captured bytes, replayed to another member within the clock window.
    expect(refusal(() => receive(n3, h, BODY, COVERED, path))).toBe('misdirected');
    // Stripping or rewriting the address breaks the MAC.
    expect(refusal(() => receive(n3, h, BODY, COVERED, PATH))).toBe('bad_mac');
    expect(refusal(() => receive(n3, h, BODY, COVERED, addressedPath(PATH, 'n3')))).toBe('bad_mac');
    // Any other query is malformed, even under a valid MAC.
    for (const q of ['?to=n2&x=1', '?x=n2', '?to=', '?to=n2/..']) {
      const hq = sender.signRequest('POST', PATH + q, COVERED, BODY);
      expect(refusal(() => receive(n2, hq, BODY, COVERED, PATH + q)), q).toBe('malformed');
    }
    // A sender from before addressing (no query) is still accepted during a rolling upgrade.
    expect(receive(n3, sender.signRequest('POST', PATH, COVERED, BODY), BODY, COVERED, PATH)).toBe(0);
  });

  it('refuses a request without the auth headers, or with any one of them missing', () => {
    const { sender, receiver } = pair();
    expect(refusal(() => receive(receiver, { 'x-coffer-node': 'n1' }))).toBe('missing');
    for (const drop of ['x-coffer-node', 'x-coffer-time', 'x-coffer-nonce', 'x-coffer-mac']) {
      const h: Record<string, string> = { ...sender.signRequest('POST', PATH, COVERED, BODY) };
      delete h[drop];
      expect(refusal(() => receive(receiver, h))).toBe('missing');
    }
  });

  it('refuses a made-up MAC and one computed under another key', () => {
    const { sender, receiver } = pair();
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    expect(refusal(() => receive(receiver, { ...h, 'x-coffer-mac': Buffer.alloc(32, 1).toString('base64url') }))).toBe('bad_mac');
    expect(refusal(() => receive(receiver, { ...h, 'x-coffer-mac': 'not-a-mac' }))).toBe('malformed');
    const forger = pair({ senderKey: OTHER_KEY });
    expect(refusal(() => receive(forger.receiver, forger.sender.signRequest('POST', PATH, COVERED, BODY)))).toBe('bad_mac');
  });

  it('refuses a request whose body, path, method or covered headers changed by one byte', () => {
    const { sender, receiver } = pair();
    const flipped = Buffer.from(BODY);
    flipped[3]! ^= 0x01;
    expect(refusal(() => receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY), flipped))).toBe('bad_mac');
    expect(refusal(() => receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY), BODY, COVERED, '/raft/v1/propose'))).toBe('bad_mac');
    const caps = { 'x-coffer-capabilities': 'secret.put@1,token.create@2' };
    expect(refusal(() => receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY), BODY, caps))).toBe('bad_mac');
    // A covered header that the sender did not send cannot be added on the way.
    const bare = sender.signRequest('POST', PATH, {}, BODY);
    expect(refusal(() => receive(receiver, bare, BODY, { 'x-coffer-capabilities': '' }))).toBe('bad_mac');
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    expect(refusal(() => receiver.verifyRequest(receiver.checkClaim(h, members('n1')), 'PUT', PATH, COVERED, BODY))).toBe('bad_mac');
  });

  it('refuses a sender id changed in transit (the MAC covers it)', () => {
    const { sender, receiver } = pair();
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    expect(refusal(() => receive(receiver, { ...h, 'x-coffer-node': 'n3' }))).toBe('bad_mac');
  });

  it('refuses a sender that is not in the configuration even with a valid MAC, and its own id', () => {
    const ghost = pair({ senderId: 'ghost' });
    expect(refusal(() => receive(ghost.receiver, ghost.sender.signRequest('POST', PATH, COVERED, BODY)))).toBe('unknown_sender');
    const self = pair({ senderId: 'n2' });
    expect(refusal(() => receive(self.receiver, self.sender.signRequest('POST', PATH, COVERED, BODY)))).toBe('unknown_sender');
  });

  it('refuses a timestamp more than 60 s in the past or the future, and accepts one at the edge', () => {
    const { c, sender, receiver } = pair();
    const old = sender.signRequest('POST', PATH, COVERED, BODY);
    c.advance(CLOCK_WINDOW_MS + 1);
    expect(refusal(() => receive(receiver, old))).toBe('stale');
    const future = sender.signRequest('POST', PATH, COVERED, BODY);
    c.advance(-(2 * CLOCK_WINDOW_MS + 2));
    expect(refusal(() => receive(receiver, future))).toBe('stale');
    const edge = sender.signRequest('POST', PATH, COVERED, BODY);
    c.advance(CLOCK_WINDOW_MS);
    expect(receive(receiver, edge)).toBe(0);
  });

  it('still refuses a replay late in the window, after many other requests', () => {
    const { c, sender, receiver } = pair();
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    receive(receiver, h);
    for (let i = 0; i < 1000; i++) {
      c.advance(50);
      receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY));
    }
    expect(refusal(() => receive(receiver, h))).toBe('replay');
    c.advance(10_001);
    expect(refusal(() => receive(receiver, h))).toBe('stale');
  });

  it('refuses a replay of a nonce the full cache had to forget', () => {
    const { c, sender, receiver } = pair({ maxNonces: 4 });
    const first = sender.signRequest('POST', PATH, COVERED, BODY);
    receive(receiver, first);
    for (let i = 0; i < 10; i++) {
      c.advance(1);
      receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY));
    }
    expect(refusal(() => receive(receiver, first))).toBe('replay');
    c.advance(1);
    expect(receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY))).toBe(0); // fresh requests still pass
  });

  it('accepts the previous key during a key change, and refuses a key that is neither', () => {
    const next = randomBytes(32);
    // Receiver on the new key with the old one as previous; sender still on the old key.
    const old = pair({ senderKey: KEY, receiverKey: next, previous: KEY });
    expect(receive(old.receiver, old.sender.signRequest('POST', PATH, COVERED, BODY))).toBe(1);
    const cur = pair({ senderKey: next, receiverKey: next, previous: KEY });
    expect(receive(cur.receiver, cur.sender.signRequest('POST', PATH, COVERED, BODY))).toBe(0);
    const neither = pair({ senderKey: OTHER_KEY, receiverKey: next, previous: KEY });
    expect(refusal(() => receive(neither.receiver, neither.sender.signRequest('POST', PATH, COVERED, BODY)))).toBe('bad_mac');
  });

  it('signs the reply with the key that verified the request, so an old-key requester can check it', () => {
    const next = randomBytes(32);
    const { sender, receiver } = pair({ senderKey: KEY, receiverKey: next, previous: KEY });
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    const slot = receive(receiver, h);
    const body = Buffer.from('{"node_id":"n2","capabilities":["secret.put@1"]}');
    const rh = receiver.signResponse(slot, h['x-coffer-nonce'], 200, body);
    expect(() => sender.verifyResponse('n2', h['x-coffer-nonce'], 200, rh, body)).not.toThrow();
  });

  it('refuses a reply that is unsigned, forged, for another request, from another node or altered', () => {
    const { sender, receiver } = pair();
    const h = sender.signRequest('POST', PATH, COVERED, BODY);
    const slot = receive(receiver, h);
    const nonce = h['x-coffer-nonce'];
    const body = Buffer.from('{"node_id":"n2","capabilities":["secret.put@1"]}');
    const rh = receiver.signResponse(slot, nonce, 200, body);
    expect(refusal(() => sender.verifyResponse('n2', nonce, 200, {}, body))).toBe('missing');
    expect(refusal(() => sender.verifyResponse('n2', nonce, 200, { ...rh, 'x-coffer-mac': Buffer.alloc(32).toString('base64url') }, body))).toBe('bad_mac');
    const other = sender.signRequest('POST', PATH, COVERED, BODY)['x-coffer-nonce'];
    expect(refusal(() => sender.verifyResponse('n2', other, 200, rh, body))).toBe('bad_mac');
    expect(refusal(() => sender.verifyResponse('n3', nonce, 200, rh, body))).toBe('malformed');
    expect(refusal(() => sender.verifyResponse('n2', nonce, 503, rh, body))).toBe('bad_mac');
    const altered = Buffer.from(body.toString().replace('secret.put@1', 'secret.put@9'));
    expect(refusal(() => sender.verifyResponse('n2', nonce, 200, rh, altered))).toBe('bad_mac');
    // The request MAC is not a reply MAC (domain separation).
    expect(refusal(() => sender.verifyResponse('n1', nonce, 200, { 'x-coffer-node': 'n1', 'x-coffer-mac': h['x-coffer-mac']! }, BODY))).toBe('bad_mac');
  });

  it('zeroes its keys on close: what it signs afterwards is refused', () => {
    const { sender, receiver } = pair();
    sender.close();
    expect(refusal(() => receive(receiver, sender.signRequest('POST', PATH, COVERED, BODY)))).toBe('bad_mac');
  });

  it('uses a fresh nonce for every request', () => {
    const { sender } = pair();
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) seen.add(sender.signRequest('POST', PATH, COVERED, BODY)['x-coffer-nonce']);
    expect(seen.size).toBe(2000);
  });
});

describe('NonceCache', () => {
  it('forgets nonces whose time left the window, and keeps its size bounded', () => {
    const cache = new NonceCache(1000, 100);
    for (let i = 0; i < 500; i++) expect(cache.admit(`n${i}`, i, i)).toBe(true);
    expect(cache.size).toBeLessThanOrEqual(100);
    expect(cache.admit('n499', 499, 500)).toBe(false);
    expect(cache.admit('n10', 10, 500)).toBe(false); // evicted by the cap: refused by the floor
    cache.admit('late', 5000, 5000);
    expect(cache.size).toBe(1); // everything older than the window went
  });
});
