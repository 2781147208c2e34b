// The frames of a Raft stream: after the handshake (handshake.ts) a sender
// writes one frame per batch of messages on its own connection to a peer.
//
// Frame: u32 payload length | 16-byte tag | payload (a codec.ts batch).
// tag = HMAC-SHA256(stream key, u64 sequence number | payload), cut to 16
// bytes. The sequence number is not sent: both ends count frames from 0, so a
// frame dropped, repeated, reordered or spliced in from another stream fails
// its tag, and the receiver closes the stream. Raft tolerates the loss.
import { createHmac, timingSafeEqual } from 'node:crypto';

const LENGTH_BYTES = 4;
export const TAG_BYTES = 16;
export const FRAME_HEADER_BYTES = LENGTH_BYTES + TAG_BYTES;
/** The Raft listener's body limit for a batch, kept for a frame. */
export const MAX_FRAME_PAYLOAD = 256 * 1024 * 1024;

export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(readonly reason: 'bad_mac' | 'malformed', message: string) {
    super(message);
  }
}

function tag(key: Buffer, seq: bigint, payload: Uint8Array): Buffer {
  const n = Buffer.allocUnsafe(8);
  n.writeBigUInt64BE(seq);
  return createHmac('sha256', key).update(n).update(payload).digest().subarray(0, TAG_BYTES);
}

/** Seals payloads into frames, numbering them. */
export class FrameWriter {
  private seq = 0n;

  constructor(private readonly key: Buffer) {}

  /** The frame's header; write it, then the payload. */
  header(payload: Uint8Array): Buffer {
    if (payload.byteLength > MAX_FRAME_PAYLOAD) throw new FrameError('malformed', `a frame holds at most ${MAX_FRAME_PAYLOAD} bytes`);
    const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    h.writeUInt32BE(payload.byteLength, 0);
    tag(this.key, this.seq++, payload).copy(h, LENGTH_BYTES);
    return h;
  }
}

/**
 * Reassembles frames from the bytes of a connection and checks each one's
 * tag before handing out its payload. After one error it stays failed.
 */
export class FrameReader {
  private seq = 0n;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed: FrameError | null = null;

  constructor(private readonly key: Buffer) {}

  /** Adds received bytes; returns every payload now complete, in order. Throws FrameError on the first bad frame. */
  push(chunk: Buffer): Buffer[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Buffer[] = [];
    try {
      for (;;) {
        if (this.buffered < FRAME_HEADER_BYTES) break;
        const head = this.peek(FRAME_HEADER_BYTES);
        const len = head.readUInt32BE(0);
        // Refused before it is buffered: a length is read only from a stream that passed the handshake, but still bounded.
        if (len > MAX_FRAME_PAYLOAD) throw new FrameError('malformed', `frame of ${len} bytes is over the limit`);
        if (this.buffered < FRAME_HEADER_BYTES + len) break;
        const frame = this.take(FRAME_HEADER_BYTES + len);
        const payload = frame.subarray(FRAME_HEADER_BYTES);
        if (!timingSafeEqual(tag(this.key, this.seq, payload), frame.subarray(LENGTH_BYTES, FRAME_HEADER_BYTES))) {
          throw new FrameError('bad_mac', `frame ${this.seq} fails its tag`);
        }
        this.seq++;
        out.push(payload);
      }
    } catch (err) {
      this.failed = err as FrameError;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
    return out;
  }

  /** Bytes held for a frame not yet complete. */
  get pending(): number {
    return this.buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}
