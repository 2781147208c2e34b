// Raft stream frames and the stream key, each as the tampering it refuses:
// a flipped byte, a dropped, repeated or reordered frame, a frame from
// another stream, an oversized length; and frames split at every byte.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ClusterAuth, isNonceText } from '../../../server/raft/cluster-auth.js';
import { FRAME_HEADER_BYTES, FrameError, FrameReader, FrameWriter, MAX_FRAME_PAYLOAD } from '../../../server/raft/stream/frames.js';
import { acceptBody, acceptedStream, STREAM_NONCE_HEADER } from '../../../server/raft/stream/handshake.js';

const KEY = randomBytes(32);

function frame(w: FrameWriter, payload: Buffer): Buffer {
  return Buffer.concat([w.header(payload), payload]);
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FrameError);
    return (err as FrameError).reason;
  }
  throw new Error('expected a FrameError');
}

describe('stream frames', () => {
  it('hands out payloads in order, whole, however the bytes are split', () => {
    const w = new FrameWriter(KEY);
    const payloads = [Buffer.from('one'), Buffer.alloc(0), randomBytes(70_000), Buffer.from('last')];
    const wire = Buffer.concat(payloads.map((p) => frame(w, p)));
    for (const step of [1, 3, FRAME_HEADER_BYTES, 4096, wire.length]) {
      const r = new FrameReader(KEY);
      const got: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step) got.push(...r.push(wire.subarray(i, i + step)));
      expect(got.map((b) => b.toString('hex'))).toEqual(payloads.map((b) => b.toString('hex')));
      expect(r.pending).toBe(0);
    }
  });

  it('refuses a flipped byte anywhere in a frame, and stays refused', () => {
    const w = new FrameWriter(KEY);
    const f = frame(w, Buffer.from('append entries'));
    for (let i = 4; i < f.length; i++) {
      const bad = Buffer.from(f);
      bad[i]! ^= 0x01;
      const r = new FrameReader(KEY);
      expect(refusal(() => r.push(bad))).toBe('bad_mac');
      expect(refusal(() => r.push(frame(new FrameWriter(KEY), Buffer.from('x'))))).toBe('bad_mac');
    }
  });

  it('refuses a repeated, dropped or reordered frame (the tag covers the position)', () => {
    const w = new FrameWriter(KEY);
    const [a, b, c] = ['a', 'b', 'c'].map((s) => frame(w, Buffer.from(s)));
    const repeated = new FrameReader(KEY);
    expect(repeated.push(a!)).toHaveLength(1);
    expect(refusal(() => repeated.push(a!))).toBe('bad_mac');
    const dropped = new FrameReader(KEY);
    expect(dropped.push(a!)).toHaveLength(1);
    expect(refusal(() => dropped.push(c!))).toBe('bad_mac');
    const reordered = new FrameReader(KEY);
    expect(refusal(() => reordered.push(b!))).toBe('bad_mac');
  });

  it('refuses a frame sealed under another stream key', () => {
    const r = new FrameReader(KEY);
    expect(refusal(() => r.push(frame(new FrameWriter(randomBytes(32)), Buffer.from('spliced'))))).toBe('bad_mac');
  });

  it('refuses a length over the limit from its header alone, before buffering it', () => {
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    head.writeUInt32BE(MAX_FRAME_PAYLOAD + 1, 0);
    const r = new FrameReader(KEY);
    expect(refusal(() => r.push(head))).toBe('malformed');
    // Nor does a writer seal one (only the length is read before refusing).
    expect(() => new FrameWriter(KEY).header({ byteLength: MAX_FRAME_PAYLOAD + 1 } as Uint8Array)).toThrow(FrameError);
  });
});

describe('stream key and accept', () => {
  const sender = new ClusterAuth({ nodeId: 'n1', key: KEY });
  const receiver = new ClusterAuth({ nodeId: 'n2', key: KEY });

  /** The receiver's accept headers for a handshake signed with `senderNonce`. */
  function accept(senderNonce: string, by = receiver, caps = 'secret.put@1') {
    const receiverNonce = by.freshNonce();
    return { receiverNonce, headers: { [STREAM_NONCE_HEADER]: receiverNonce, 'x-coffer-capabilities': caps, ...by.signResponse(0, senderNonce, 101, acceptBody(receiverNonce, caps)) } };
  }

  it('both ends derive the same key, fresh for every receiver nonce', () => {
    const senderNonce = sender.freshNonce();
    expect(isNonceText(senderNonce)).toBe(true);
    const a = accept(senderNonce);
    const got = acceptedStream(sender, 'n2', senderNonce, a.headers);
    expect(got.capabilities).toEqual(['secret.put@1']);
    expect(got.key.equals(receiver.streamKey(0, 'n1', 'n2', senderNonce, a.receiverNonce))).toBe(true);
    const b = accept(senderNonce);
    expect(acceptedStream(sender, 'n2', senderNonce, b.headers).key.equals(got.key)).toBe(false);
    // Direction and ids are part of the key.
    expect(receiver.streamKey(0, 'n2', 'n1', senderNonce, a.receiverNonce).equals(got.key)).toBe(false);
  });

  it('refuses an accept that is not a member\'s answer to this very handshake', () => {
    const senderNonce = sender.freshNonce();
    const a = accept(senderNonce);
    // Another handshake's accept.
    expect(() => acceptedStream(sender, 'n2', sender.freshNonce(), a.headers)).toThrow(/MAC/);
    // A swapped stream nonce or capabilities (both under the MAC).
    expect(() => acceptedStream(sender, 'n2', senderNonce, { ...a.headers, [STREAM_NONCE_HEADER]: sender.freshNonce() })).toThrow(/MAC/);
    expect(() => acceptedStream(sender, 'n2', senderNonce, { ...a.headers, 'x-coffer-capabilities': 'everything@9' })).toThrow(/MAC/);
    // From a node without the cluster key, or claiming to be another member.
    const outsider = new ClusterAuth({ nodeId: 'n2', key: randomBytes(32) });
    expect(() => acceptedStream(sender, 'n2', senderNonce, accept(senderNonce, outsider).headers)).toThrow(/MAC/);
    expect(() => acceptedStream(sender, 'n3', senderNonce, a.headers)).toThrow(/another sender/);
    // No or a malformed stream nonce.
    expect(() => acceptedStream(sender, 'n2', senderNonce, { ...a.headers, [STREAM_NONCE_HEADER]: 'short' })).toThrow(/stream nonce/);
  });
});
