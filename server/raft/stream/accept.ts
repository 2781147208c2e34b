// The receiving end of Raft streams, on the Raft listener's HTTP server: the
// upgrade handshake (handshake.ts) checked like any Raft request, then frames
// (frames.ts) decoded into message batches for the replicator.
//
// Every upgrade request on the listener lands here; only a signed
// GET /raft/v1/stream?to=<this node> asking for coffer-raft-v1 is accepted.
// One stream per sender: a new one from the same member replaces the old.
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { AuthRefusal, addressedPath, type ClusterAuth, type CoveredHeaders, type RefusalReason } from '../cluster-auth.js';
import { decodeBatch } from '../codec.js';
import type { Message } from '../core/index.js';
import { FrameError, FrameReader } from './frames.js';
import { STREAM_NONCE_HEADER, STREAM_PATH, STREAM_PROTOCOL, acceptBody } from './handshake.js';

export interface StreamAcceptOptions {
  auth: ClusterAuth;
  /** This node's capabilities, joined; sent in the 101. */
  capabilities: string;
  isMember(id: string): boolean;
  /** A batch from `from`, whose capabilities came with its handshake. */
  onBatch(msgs: Message[], from: string, caps: string[]): void;
  /** A refused handshake or frame: counted and logged by the listener. */
  onRefused(reason: RefusalReason, detail: { claimedNode: string | null; remote: string | null; path: string; message: string }): void;
}

/** Keep-alive probes find a sender that vanished without closing (its host gone). */
const KEEPALIVE_MS = 30_000;

export class StreamAcceptor {
  private readonly open = new Map<string, Duplex>();

  constructor(private readonly o: StreamAcceptOptions) {}

  /** Attaches to `server`'s upgrade event. */
  attach(server: http.Server): void {
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** Open streams, by sender. */
  get senders(): string[] {
    return [...this.open.keys()];
  }

  /** Closes every stream (the listener is closing: its server waits for every socket). */
  closeAll(): void {
    for (const s of this.open.values()) s.destroy();
    this.open.clear();
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // a reset by the peer is how streams end
    const url = req.url ?? '';
    const path = url.split('?')[0];
    if (path !== STREAM_PATH || req.method !== 'GET') return reject(socket, 404, 'not_found', 'no such Raft upgrade');
    if (String(req.headers.upgrade ?? '').toLowerCase() !== STREAM_PROTOCOL) return reject(socket, 400, 'bad_request', `upgrade to ${STREAM_PROTOCOL} only`);
    const { auth } = this.o;
    let from: string;
    let key: Buffer;
    let caps: string[];
    let reply: string;
    try {
      const claim = auth.checkClaim(req.headers, (id) => this.o.isMember(id));
      // Streams are newer than addressing: every sender that opens one names its receiver.
      if (!url.startsWith(addressedPath(STREAM_PATH, ''))) {
        throw new AuthRefusal('malformed', 'a stream must be addressed: ?to=<receiver id>');
      }
      const capsHeader = req.headers['x-coffer-capabilities'];
      if (Array.isArray(capsHeader)) throw new AuthRefusal('malformed', 'x-coffer-capabilities appears more than once');
      const covered: CoveredHeaders = capsHeader === undefined ? {} : { 'x-coffer-capabilities': capsHeader };
      // The MAC, then `?to=` is this node, then the nonce (remembered once the MAC holds).
      const slot = auth.verifyRequest(claim, 'GET', url, covered, '');
      from = claim.node;
      caps = (capsHeader ?? '').split(',').filter(Boolean);
      const receiverNonce = auth.freshNonce();
      key = auth.streamKey(slot, from, auth.nodeId, claim.nonce, receiverNonce);
      const signed = auth.signResponse(slot, claim.nonce, 101, acceptBody(receiverNonce, this.o.capabilities));
      reply =
        'HTTP/1.1 101 Switching Protocols\r\n' +
        `Upgrade: ${STREAM_PROTOCOL}\r\nConnection: Upgrade\r\n` +
        `${STREAM_NONCE_HEADER}: ${receiverNonce}\r\n` +
        `x-coffer-capabilities: ${this.o.capabilities}\r\n` +
        Object.entries(signed).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
        '\r\n';
    } catch (err) {
      if (!(err instanceof AuthRefusal)) return reject(socket, 500, 'internal', 'internal error');
      const claimed = req.headers['x-coffer-node'];
      this.o.onRefused(err.reason, { claimedNode: typeof claimed === 'string' ? claimed.slice(0, 64) : null, remote: req.socket.remoteAddress ?? null, path: url.slice(0, 128), message: err.message });
      return reject(socket, 401, 'unauthorized', err.message);
    }
    this.open.get(from)?.destroy();
    this.open.set(from, socket);
    const remote = req.socket.remoteAddress ?? null;
    const s = socket as Duplex & { setNoDelay?(b: boolean): void; setKeepAlive?(b: boolean, ms: number): void };
    s.setNoDelay?.(true);
    s.setKeepAlive?.(true, KEEPALIVE_MS);
    socket.on('close', () => {
      if (this.open.get(from) === socket) this.open.delete(from);
    });
    socket.write(reply);
    const reader = new FrameReader(key);
    const onData = (chunk: Buffer) => {
      try {
        for (const payload of reader.push(chunk)) {
          // Removed from the cluster while its stream was open: nothing more from it.
          if (!this.o.isMember(from)) throw new AuthRefusal('unknown_sender', `${from} is no longer a member`);
          this.o.onBatch(decodeBatch(payload), from, caps);
        }
      } catch (err) {
        // A bad tag or a non-member keeps its reason; a batch that does not decode (MalformedBatchError) is malformed.
        const reason: RefusalReason = err instanceof FrameError || err instanceof AuthRefusal ? err.reason : 'malformed';
        this.o.onRefused(reason, { claimedNode: from, remote, path: url.slice(0, 128), message: (err as Error).message });
        socket.destroy();
      }
    };
    socket.on('data', onData);
    if (head.length > 0) onData(head);
  }
}

function reject(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  const text = status === 401 ? 'Unauthorized' : status === 404 ? 'Not Found' : status === 400 ? 'Bad Request' : 'Internal Server Error';
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
