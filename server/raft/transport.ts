// Outbound side of the Raft transport. Messages to a peer go over a stream
// (stream/: one signed upgrade, then one authenticated frame per batch, no
// reply per batch), in order. To a member from before streams they go as one
// keep-alive HTTP request per batch (Nagle off), at most one in flight so
// they stay in order; whatever queues meanwhile is the next batch. Batches
// are in the binary form (codec.ts).
// Snapshot images stream as the request body of their own request.
// Every request is signed with the cluster key and every reply must carry a
// member's MAC over it (cluster-auth.ts); an unauthenticated reply is an error.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { splitAddress } from './address.js';
import { AuthRefusal, addressedPath, type ClusterAuth, type CoveredHeaders } from './cluster-auth.js';
import type { Message } from './core/index.js';
import { BATCH_CONTENT_TYPE, encodeBatch, encodeMessages } from './codec.js';
import { parseProbeReply, type ProbeReply } from './probe.js';
import { STREAM_PATH } from './stream/handshake.js';
import { PeerStream } from './stream/peer-stream.js';

export const RAFT_PATHS = {
  /** Binary message batches, one request each (members from before streams). */
  batch: '/raft/v1/batch',
  /** The upgrade that opens a stream of batches. */
  stream: STREAM_PATH,
  snapshot: '/raft/v1/snapshot',
  propose: '/raft/v1/propose',
  membership: '/raft/v1/membership',
  rewrap: '/raft/v1/rewrap',
  probe: '/raft/v1/probe',
} as const;

/** A probe is answered from memory; a node that takes longer than this is not healthy. */
const PROBE_TIMEOUT_MS = 1_000;

export interface TransportHooks {
  /** This node's id and capabilities, sent with every batch. */
  nodeId: string;
  capabilities: string[];
  /** A peer could not be reached (the core backs off to probing it). */
  onUnreachable(peer: string): void;
  /** The peer's advertised capabilities, from its reply. */
  onPeerCapabilities(peer: string, caps: string[]): void;
}

const MAX_QUEUE = 4096;
const REQUEST_TIMEOUT_MS = 5_000;
/** After a failed attempt to reach a peer, the next one waits this long, so a dead peer is not hammered. */
const RETRY_PAUSE_MS = 50;
/** A peer that answered it has no streams is sent HTTP batches for this long before a stream is tried again (it may have been upgraded). */
const HTTP_FALLBACK_MS = 60_000;

class PeerSender {
  private queue: Message[] = [];
  private flushScheduled = false;
  /** An HTTP batch is in flight. */
  private busy = false;
  private opening = false;
  private closed = false;
  private retryAt = 0;
  private httpUntil = 0;
  private readonly stream: PeerStream;

  constructor(
    readonly id: string,
    private addr: string,
    private readonly agent: http.Agent,
    private readonly hooks: TransportHooks,
    private readonly signer: () => Signer,
  ) {
    this.stream = new PeerStream({
      peer: id,
      address: () => this.addr,
      auth: () => this.signer().auth,
      capabilities: hooks.capabilities.join(','),
      onCapabilities: (caps) => hooks.onPeerCapabilities(id, caps),
      onClosed: () => hooks.onUnreachable(id),
    });
  }

  get address(): string {
    return this.addr;
  }

  /** A new address: the stream to the old one is closed; the next batch opens one to the new. */
  set address(a: string) {
    if (a === this.addr) return;
    this.addr = a;
    this.stream.close();
  }

  send(m: Message): void {
    if (this.queue.length >= MAX_QUEUE) this.queue.shift(); // a stalled peer must not grow memory without bound
    this.queue.push(m);
    // Everything sent in this turn (one Ready's messages) goes as one batch.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  close(): void {
    this.closed = true;
    this.queue = [];
    this.stream.close();
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.queue.length === 0) return;
    if (this.stream.isOpen) {
      const batch = this.queue;
      this.queue = [];
      if (!this.stream.write(encodeBatch(batch))) this.hooks.onUnreachable(this.id); // dropped: the peer is not keeping up
      return;
    }
    if (Date.now() < this.httpUntil) {
      if (!this.busy) void this.drain();
      return;
    }
    if (!this.opening && Date.now() >= this.retryAt) void this.open();
  }

  private async open(): Promise<void> {
    this.opening = true;
    try {
      if ((await this.stream.open()) === 'unsupported') this.httpUntil = Date.now() + HTTP_FALLBACK_MS;
    } catch {
      // Dropped, as a failed HTTP batch is: Raft re-sends what matters.
      this.queue = [];
      if (this.closed) return;
      this.hooks.onUnreachable(this.id);
      this.retryAt = Date.now() + RETRY_PAUSE_MS;
      setTimeout(() => this.flush(), RETRY_PAUSE_MS).unref();
    } finally {
      this.opening = false;
    }
    this.flush();
  }

  private async drain(): Promise<void> {
    this.busy = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        try {
          const res = await postJson(this.agent, this.id, this.addr, RAFT_PATHS.batch, encodeBatch(batch), this.signer(), REQUEST_TIMEOUT_MS, BATCH_CONTENT_TYPE);
          const caps = (res as { capabilities?: unknown }).capabilities;
          if (Array.isArray(caps)) this.hooks.onPeerCapabilities(this.id, caps.map(String));
        } catch {
          this.hooks.onUnreachable(this.id);
          // Dropped: Raft re-sends what matters. Pause briefly so a dead peer is not hammered.
          await new Promise((r) => setTimeout(r, RETRY_PAUSE_MS));
        }
      }
    } finally {
      this.busy = false;
    }
  }
}

/** Snapshot images are checksummed end to end; the receiver refuses one that does not match. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest('hex');
}

/** What a request needs to go out signed: the cluster key and this node's capabilities. */
export interface Signer {
  auth: ClusterAuth;
  /** x-coffer-capabilities, joined once. */
  capabilities: string;
}

/** POSTs one signed request to `peer` at `address`; resolves with its parsed JSON reply once the reply's MAC holds. */
export function postJson(
  agent: http.Agent,
  peer: string,
  address: string,
  path: string,
  body: string | Buffer,
  signer: Signer,
  timeoutMs = REQUEST_TIMEOUT_MS,
  contentType = 'application/json',
): Promise<unknown> {
  const { host, port } = splitAddress(address);
  const covered: CoveredHeaders = { 'x-coffer-capabilities': signer.capabilities };
  const url = addressedPath(path, peer);
  const auth = signer.auth.signRequest('POST', url, covered, body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port,
        path: url,
        method: 'POST',
        agent,
        timeout: timeoutMs,
        headers: {
          'content-type': contentType,
          'content-length': Buffer.byteLength(body),
          ...covered,
          ...auth,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          try {
            signer.auth.verifyResponse(peer, auth['x-coffer-nonce'], status, res.headers, raw);
          } catch (err) {
            // Our request was refused (401, unsigned) or the reply is not a member's: trust nothing in it.
            const reason = err instanceof AuthRefusal ? err.reason : 'error';
            reject(Object.assign(new Error(`raft peer ${peer} answered ${status} without a valid cluster MAC (${reason})`), { statusCode: status, unauthenticated: true }));
            return;
          }
          let parsed: unknown = null;
          try {
            parsed = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : null;
          } catch {
            // fall through: not JSON
          }
          if (status >= 300) reject(Object.assign(new Error(`raft peer answered ${status}`), { body: parsed, statusCode: status }));
          else resolve(parsed);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('raft request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

export class Transport {
  // Raft messages keep their own connections: a forwarded write waits for a
  // commit, and if it shared sockets with appends, heartbeats and votes it
  // could hold back the very traffic that commit needs.
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 2, noDelay: true });
  /** Forwarded proposals and admin requests: many may wait at once. */
  private readonly forwardAgent = new http.Agent({ keepAlive: true, noDelay: true });
  /** Snapshot streams can take a while; they must not hold up either of the above. */
  private readonly snapshotAgent = new http.Agent({ keepAlive: false });
  private readonly peers = new Map<string, PeerSender>();
  private signing: Signer | null = null;
  private readonly signer = (): Signer => {
    if (!this.signing) throw new Error('raft transport has no cluster key yet; nothing is sent unsigned');
    return this.signing;
  };

  constructor(private readonly hooks: TransportHooks) {}

  /** Signs every request from now on with `auth`. Until this is called, every send fails (nothing goes out unsigned). */
  authenticate(auth: ClusterAuth): void {
    this.signing = { auth, capabilities: this.hooks.capabilities.join(',') };
  }

  setPeer(id: string, address: string): void {
    if (id === this.hooks.nodeId) return;
    const p = this.peers.get(id);
    if (p) p.address = address;
    else this.peers.set(id, new PeerSender(id, address, this.agent, this.hooks, this.signer));
  }

  removePeer(id: string): void {
    this.peers.get(id)?.close();
    this.peers.delete(id);
  }

  address(id: string): string | undefined {
    return this.peers.get(id)?.address;
  }

  send(m: Message): boolean {
    const p = this.peers.get(m.to);
    if (!p) return false;
    p.send(m);
    return true;
  }

  /** Streams a snapshot image file with its message (without data) in a header. */
  async sendSnapshot(m: Message, imageFile: string): Promise<void> {
    const p = this.peers.get(m.to);
    if (!p) throw new Error(`unknown peer ${m.to}`);
    const signer = this.signer();
    const { host, port } = splitAddress(p.address);
    const header = Buffer.from(encodeMessages([{ ...m, snapshot: { meta: m.snapshot!.meta, data: new Uint8Array(0) } }])).toString('base64url');
    const digest = await sha256File(imageFile);
    // The image is not in memory: the MAC covers its digest and the message header; the receiver checks the digest.
    const covered: CoveredHeaders = { 'x-coffer-message': header, 'x-coffer-sha256': digest };
    const url = addressedPath(RAFT_PATHS.snapshot, m.to);
    const auth = signer.auth.signRequest('POST', url, covered, '');
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host,
          port,
          path: url,
          method: 'POST',
          agent: this.snapshotAgent,
          headers: {
            'content-type': 'application/octet-stream',
            'content-length': fs.statSync(imageFile).size,
            ...covered,
            ...auth,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            try {
              signer.auth.verifyResponse(m.to, auth['x-coffer-nonce'], status, res.headers, Buffer.concat(chunks));
            } catch (err) {
              reject(new Error(`snapshot reply from ${m.to} (${status}) is not authenticated: ${(err as Error).message}`));
              return;
            }
            if (status < 300) resolve();
            else reject(new Error(`snapshot refused: ${status}`));
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      pipeline(fs.createReadStream(imageFile), req).catch(reject);
    });
  }

  /** Forwards an encoded command to the leader; resolves with its apply result and log index. */
  forwardProposal(leader: string, command: Uint8Array): Promise<unknown> {
    const p = this.peers.get(leader);
    if (!p) return Promise.reject(new Error(`leader ${leader} has no known address`));
    const body = JSON.stringify({ command: Buffer.from(command).toString('base64') });
    return postJson(this.forwardAgent, leader, p.address, RAFT_PATHS.propose, body, this.signer(), 15_000);
  }

  /** Forwards an add/remove member request to the leader. */
  forwardMembership(leader: string, req: { op: 'add' | 'remove'; id: string; address?: string }): Promise<unknown> {
    return this.forward(leader, RAFT_PATHS.membership, req, 70_000);
  }

  /** Asks `peer` who it is (probe.ts); null when it does not answer, or not as itself. */
  async probe(peer: string): Promise<ProbeReply | null> {
    try {
      return parseProbeReply(await this.forward(peer, RAFT_PATHS.probe, {}, PROBE_TIMEOUT_MS), peer);
    } catch {
      return null;
    }
  }

  /** Posts a JSON request to another member's Raft listener. */
  forward(peer: string, path: string, body: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<unknown> {
    const p = this.peers.get(peer);
    if (!p) return Promise.reject(new Error(`member ${peer} has no known address`));
    return postJson(this.forwardAgent, peer, p.address, path, JSON.stringify(body), this.signer(), timeoutMs);
  }

  close(): void {
    for (const p of this.peers.values()) p.close();
    this.agent.destroy();
    this.forwardAgent.destroy();
    this.snapshotAgent.destroy();
  }
}
