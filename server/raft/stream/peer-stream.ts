// The sending end of a Raft stream to one peer: opens it (handshake.ts), then
// writes one frame per batch without waiting for a reply, so batches
// pipeline and nothing per message is parsed, routed or signed twice.
import http from 'node:http';
import type { Socket } from 'node:net';
import { splitAddress } from '../address.js';
import { addressedPath, type ClusterAuth, type CoveredHeaders } from '../cluster-auth.js';
import { FrameWriter } from './frames.js';
import { STREAM_PATH, STREAM_PROTOCOL, acceptedStream } from './handshake.js';

const HANDSHAKE_TIMEOUT_MS = 5_000;
const KEEPALIVE_MS = 30_000;
/** Bytes queued in the socket beyond this: the peer is not reading; messages are dropped (Raft re-sends). */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** Queued bytes that have not moved for this long: the peer is gone without a reset; the stream is closed. */
const STALL_MS = 5_000;
const STALL_CHECK_MS = 1_000;

export type OpenResult = 'open' | 'unsupported';

export interface PeerStreamDeps {
  peer: string;
  address(): string;
  auth(): ClusterAuth;
  /** x-coffer-capabilities, joined. */
  capabilities: string;
  /** The peer's capabilities, from its accept. */
  onCapabilities(caps: string[]): void;
  /** The open stream ended (reset, closed, stalled): what was in it may be lost. */
  onClosed(): void;
}

export class PeerStream {
  private socket: Socket | null = null;
  private writer: FrameWriter | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  /** Bumped by close(): a handshake that started before it must not adopt its socket after it. */
  private generation = 0;

  constructor(private readonly d: PeerStreamDeps) {}

  get isOpen(): boolean {
    return this.socket !== null;
  }

  /**
   * Opens the stream. 'unsupported' when the peer answered the upgrade as a
   * member from before streams (a signed 404); rejects when it could not be
   * reached or did not answer as a member.
   */
  open(): Promise<OpenResult> {
    const auth = this.d.auth();
    const { host, port } = splitAddress(this.d.address());
    const path = addressedPath(STREAM_PATH, this.d.peer);
    const covered: CoveredHeaders = { 'x-coffer-capabilities': this.d.capabilities };
    const signed = auth.signRequest('GET', path, covered, '');
    const generation = this.generation;
    return new Promise<OpenResult>((resolve, reject) => {
      const req = http.request({
        host,
        port,
        path,
        method: 'GET',
        agent: false,
        timeout: HANDSHAKE_TIMEOUT_MS,
        headers: { connection: 'Upgrade', upgrade: STREAM_PROTOCOL, ...covered, ...signed },
      });
      req.on('upgrade', (res: http.IncomingMessage, socket: Socket) => {
        socket.on('error', () => {});
        try {
          // Closed meanwhile (the peer was removed or moved): this socket goes to a place we no longer send to.
          if (generation !== this.generation) throw new Error(`stream to ${this.d.peer} was closed while it opened`);
          const accepted = acceptedStream(auth, this.d.peer, signed['x-coffer-nonce'], res.headers);
          this.d.onCapabilities(accepted.capabilities);
          this.adopt(socket, new FrameWriter(accepted.key));
          resolve('open');
        } catch (err) {
          socket.destroy();
          reject(err);
        }
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          try {
            // Only a member may tell us it does not speak streams; anything else is a failure like any unreachable peer.
            auth.verifyResponse(this.d.peer, signed['x-coffer-nonce'], status, res.headers, Buffer.concat(chunks));
          } catch (err) {
            reject(new Error(`stream to ${this.d.peer} refused (${status}) without a valid cluster MAC: ${(err as Error).message}`));
            return;
          }
          if (status === 404) resolve('unsupported');
          else reject(new Error(`stream to ${this.d.peer} refused: ${status}`));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`stream handshake with ${this.d.peer} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  /** Writes one frame; false when the stream is not open or the peer is not keeping up (the payload is dropped). */
  write(payload: Uint8Array): boolean {
    const socket = this.socket;
    if (!socket || !this.writer) return false;
    if (socket.writableLength > MAX_UNSENT_BYTES) return false;
    socket.cork();
    socket.write(this.writer.header(payload));
    socket.write(payload);
    socket.uncork();
    return true;
  }

  /** Closes the stream without reporting it (the caller is removing the peer or shutting down). */
  close(): void {
    this.generation++;
    const s = this.socket;
    this.release();
    s?.destroy();
  }

  private adopt(socket: Socket, writer: FrameWriter): void {
    this.socket?.destroy();
    this.release();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    this.socket = socket;
    this.writer = writer;
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.release();
      this.d.onClosed();
    });
    // The receiver never writes after its 101; reading keeps the socket flowing so a close is noticed.
    socket.on('data', () => socket.destroy());
    // bytesWritten counts what is still queued in the socket too; what reached the kernel is the difference.
    const handedOver = () => socket.bytesWritten - socket.writableLength;
    let last = handedOver();
    let stalledFor = 0;
    this.stallTimer = setInterval(() => {
      const moved = handedOver() !== last;
      last = handedOver();
      stalledFor = socket.writableLength > 0 && !moved ? stalledFor + STALL_CHECK_MS : 0;
      if (stalledFor >= STALL_MS) socket.destroy(new Error('stream stalled'));
    }, STALL_CHECK_MS);
    this.stallTimer.unref();
  }

  private release(): void {
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    this.socket = null;
    this.writer = null;
  }
}
