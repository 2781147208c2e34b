// Cluster authentication for the Raft listener (DESIGN §1): every request
// carries an HMAC-SHA256 under VAULT_CLUSTER_KEY over its method, path,
// sender id, timestamp, a random nonce, the x-coffer-* headers the receiver
// acts on, and its body. Every reply to an authenticated request carries an
// HMAC over the request's nonce, its status and its body, so a requester
// only trusts what a member answered to this very request (replies carry the
// capabilities the leader gates commands on).
//
// Every request is addressed: its path carries `?to=<receiver id>` under the
// MAC, and a receiver refuses one addressed to another member, so a request
// captured on its way to one member cannot be replayed to another (whose
// nonce cache has not seen it), e.g. a forwarded write to the next leader.
// A path without `to` is still accepted: it is how members from before this
// change sign, for the length of a rolling upgrade; they verify the whole
// URL, so the query is compatible with them.
//
// VAULT_CLUSTER_KEY_PREVIOUS is also accepted when verifying (a rolling key
// change); requests are always signed with the current key, and a reply
// with the key that verified its request.
import { createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { NonceCache } from './nonce-cache.js';

export const AUTH_HEADER = {
  node: 'x-coffer-node',
  time: 'x-coffer-time',
  nonce: 'x-coffer-nonce',
  mac: 'x-coffer-mac',
} as const;

/** Headers other than the auth headers that a receiver acts on: covered by the MAC when present, in this order. */
export const COVERED_HEADERS = ['x-coffer-capabilities', 'x-coffer-message', 'x-coffer-sha256'] as const;
export type CoveredHeaders = Partial<Record<(typeof COVERED_HEADERS)[number], string>>;

/** A request whose timestamp is further than this from the receiver's clock is refused. */
export const CLOCK_WINDOW_MS = 60_000;
/** Nonces remembered at most (about 100 bytes each); see NonceCache for what happens beyond. */
export const MAX_NONCES = 1 << 17;

export const KEY_BYTES = 32;
const NONCE_BYTES = 16;
const NONCE_RE = /^[A-Za-z0-9_-]{22}$/; // 16 bytes, base64url
const MAC_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes, base64url
const TIME_RE = /^[0-9]{1,15}$/;
const NODE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Whether `s` has the form of a nonce this module issues. */
export const isNonceText = (s: string): boolean => NONCE_RE.test(s);

/** Why a request was refused; the label values of coffer_raft_auth_refused_total. */
export type RefusalReason = 'missing' | 'malformed' | 'unknown_sender' | 'stale' | 'bad_mac' | 'replay' | 'misdirected';
export const REFUSAL_REASONS: readonly RefusalReason[] = ['missing', 'malformed', 'unknown_sender', 'stale', 'bad_mac', 'replay', 'misdirected'];

/** The path a request to `receiver` is sent and signed on (node ids are URL-safe: NODE_RE). */
export function addressedPath(path: string, receiver: string): string {
  return `${path}?to=${receiver}`;
}

export class AuthRefusal extends Error {
  override readonly name = 'AuthRefusal';
  constructor(readonly reason: RefusalReason, message: string) {
    super(message);
  }
}

/** The auth headers of one request as received (possibly absent or repeated). */
export type RequestHeaders = Record<string, string | string[] | undefined>;

/** What a receiver learned from a request's headers before its body arrived. */
export interface RequestClaim {
  node: string;
  time: number;
  timeText: string;
  nonce: string;
  mac: Buffer;
}

/** Which key verified a request: its reply is signed with the same one. */
export type KeySlot = 0 | 1;

export interface ClusterAuthOptions {
  nodeId: string;
  key: Uint8Array;
  previous?: Uint8Array | null;
  now?: () => number;
  maxNonces?: number;
}

export class ClusterAuth {
  readonly nodeId: string;
  private readonly keys: Buffer[];
  private readonly now: () => number;
  private readonly nonces: NonceCache;
  private readonly pool = Buffer.alloc(NONCE_BYTES * 256);
  private poolAt = this.pool.length;

  constructor(opts: ClusterAuthOptions) {
    if (opts.key.length !== KEY_BYTES) throw new Error(`cluster key must be ${KEY_BYTES} bytes`);
    if (opts.previous && opts.previous.length !== KEY_BYTES) throw new Error(`previous cluster key must be ${KEY_BYTES} bytes`);
    this.nodeId = opts.nodeId;
    // Own copies, zeroed by close(); the caller's arrays are left as they are.
    this.keys = [Buffer.from(opts.key)];
    if (opts.previous) this.keys.push(Buffer.from(opts.previous));
    this.now = opts.now ?? Date.now;
    this.nonces = new NonceCache(CLOCK_WINDOW_MS, opts.maxNonces ?? MAX_NONCES);
  }

  // ---- requester side ---------------------------------------------------------

  /**
   * Auth headers for one outgoing request. `body` is what goes on the wire
   * (empty for a streamed body, whose digest travels in x-coffer-sha256).
   */
  signRequest(method: string, path: string, covered: CoveredHeaders, body: string | Uint8Array): Record<string, string> & { 'x-coffer-nonce': string } {
    const time = String(this.now());
    const nonce = this.nextNonce();
    const mac = requestMac(this.keys[0]!, method, path, this.nodeId, time, nonce, covered, body).toString('base64url');
    return { [AUTH_HEADER.node]: this.nodeId, [AUTH_HEADER.time]: time, [AUTH_HEADER.nonce]: nonce, [AUTH_HEADER.mac]: mac };
  }

  /**
   * Checks a reply to a request this node signed with `nonce`: it must come
   * from `peer` and carry a MAC under one of our keys. Throws AuthRefusal otherwise.
   */
  verifyResponse(peer: string, nonce: string, status: number, headers: RequestHeaders, body: Uint8Array): KeySlot {
    const node = single(headers[AUTH_HEADER.node]);
    const macText = single(headers[AUTH_HEADER.mac]);
    if (node === undefined || macText === undefined) throw new AuthRefusal('missing', `reply from ${peer} is not authenticated`);
    if (node !== peer || !MAC_RE.test(macText)) throw new AuthRefusal('malformed', `reply from ${peer} names another sender or a malformed MAC`);
    const mac = Buffer.from(macText, 'base64url');
    for (let i = 0; i < this.keys.length; i++) if (timingSafeEqual(responseMac(this.keys[i]!, node, nonce, status, body), mac)) return i as KeySlot;
    throw new AuthRefusal('bad_mac', `reply from ${peer} fails its MAC`);
  }

  /**
   * The key of one Raft stream (stream/): both ends derive it from the key
   * that verified the handshake, the two ids and both nonces, so it is fresh
   * per connection (the receiver's nonce is new) and a captured handshake
   * replayed later yields a stream nobody can write to.
   */
  streamKey(slot: KeySlot, sender: string, receiver: string, senderNonce: string, receiverNonce: string): Buffer {
    const key = this.keys[slot] ?? this.keys[0]!;
    return createHmac('sha256', key).update(`coffer-raft-stream-v1\n${sender}\n${receiver}\n${senderNonce}\n${receiverNonce}\n`).digest();
  }

  /** A fresh random nonce in the header form (16 bytes, base64url). */
  freshNonce(): string {
    return this.nextNonce();
  }

  // ---- receiver side ----------------------------------------------------------

  /**
   * The cheap checks, on headers alone (before the body is read): every auth
   * header present once and well formed, the sender a member, the time
   * within the window.
   */
  checkClaim(headers: RequestHeaders, isMember: (id: string) => boolean): RequestClaim {
    const node = single(headers[AUTH_HEADER.node]);
    const timeText = single(headers[AUTH_HEADER.time]);
    const nonce = single(headers[AUTH_HEADER.nonce]);
    const macText = single(headers[AUTH_HEADER.mac]);
    if (node === undefined || timeText === undefined || nonce === undefined || macText === undefined) {
      throw new AuthRefusal('missing', 'Raft requests must carry the cluster authentication headers');
    }
    if (!NODE_RE.test(node) || !TIME_RE.test(timeText) || !NONCE_RE.test(nonce) || !MAC_RE.test(macText)) {
      throw new AuthRefusal('malformed', 'malformed cluster authentication headers');
    }
    if (node === this.nodeId || !isMember(node)) throw new AuthRefusal('unknown_sender', 'the sender is not a member of this cluster');
    const time = Number(timeText);
    if (Math.abs(this.now() - time) > CLOCK_WINDOW_MS) throw new AuthRefusal('stale', 'request time is outside the clock window');
    return { node, time, timeText, nonce, mac: Buffer.from(macText, 'base64url') };
  }

  /**
   * The MAC over the whole request, then the nonce (remembered only once the
   * MAC holds, so nobody without the key can fill the cache). Returns the
   * key slot that verified it.
   */
  verifyRequest(claim: RequestClaim, method: string, path: string, covered: CoveredHeaders, body: string | Uint8Array): KeySlot {
    let slot = -1;
    for (let i = 0; i < this.keys.length && slot < 0; i++) {
      const expected = requestMac(this.keys[i]!, method, path, claim.node, claim.timeText, claim.nonce, covered, body);
      if (timingSafeEqual(expected, claim.mac)) slot = i;
    }
    if (slot < 0) throw new AuthRefusal('bad_mac', 'request fails its cluster MAC');
    this.checkReceiver(path);
    if (!this.nonces.admit(claim.nonce, claim.time, this.now())) throw new AuthRefusal('replay', 'request nonce was already used');
    return slot as KeySlot;
  }

  /** A signed path's query may only be `to=<this node>` (or absent: a sender from before addressing). */
  private checkReceiver(path: string): void {
    const q = path.indexOf('?');
    if (q < 0) return;
    const query = path.slice(q + 1);
    if (!query.startsWith('to=') || !NODE_RE.test(query.slice(3))) throw new AuthRefusal('malformed', 'a Raft request may only carry ?to=<receiver id>');
    if (query.slice(3) !== this.nodeId) throw new AuthRefusal('misdirected', 'request is addressed to another member');
  }

  /** Headers for the reply to a request verified with key `slot`. */
  signResponse(slot: KeySlot, nonce: string, status: number, body: string | Uint8Array): Record<string, string> {
    const key = this.keys[slot] ?? this.keys[0]!;
    return { [AUTH_HEADER.node]: this.nodeId, [AUTH_HEADER.mac]: responseMac(key, this.nodeId, nonce, status, body).toString('base64url') };
  }

  /** Zeroes this instance's key copies; it cannot sign or verify afterwards. */
  close(): void {
    for (const k of this.keys) k.fill(0);
    this.keys.length = 0;
    this.keys.push(Buffer.alloc(KEY_BYTES)); // signing after close fails verification everywhere rather than crashing
    this.nonces.clear();
  }

  private nextNonce(): string {
    if (this.poolAt >= this.pool.length) {
      randomFillSync(this.pool);
      this.poolAt = 0;
    }
    const s = this.pool.toString('base64url', this.poolAt, this.poolAt + NONCE_BYTES);
    this.poolAt += NONCE_BYTES;
    return s;
  }
}

function single(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

// Each field is on its own line; header values and the fixed fields cannot
// hold a newline, and the body comes last, so the framing is unambiguous.
function requestMac(
  key: Buffer,
  method: string,
  path: string,
  node: string,
  time: string,
  nonce: string,
  covered: CoveredHeaders,
  body: string | Uint8Array,
): Buffer {
  let head = `coffer-raft-request-v1\n${method}\n${path}\n${node}\n${time}\n${nonce}\n`;
  for (const h of COVERED_HEADERS) {
    const v = covered[h];
    if (v !== undefined) head += `${h}:${v}\n`;
  }
  const hmac = createHmac('sha256', key).update(head + '\n');
  if (body.length > 0) hmac.update(body);
  return hmac.digest();
}

function responseMac(key: Buffer, node: string, nonce: string, status: number, body: string | Uint8Array): Buffer {
  const hmac = createHmac('sha256', key).update(`coffer-raft-response-v1\n${node}\n${nonce}\n${status}\n`);
  if (body.length > 0) hmac.update(body);
  return hmac.digest();
}
