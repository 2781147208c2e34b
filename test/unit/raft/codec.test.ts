// The binary message batch: round trip, and refusal of malformed input.
import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch, MalformedBatchError } from '../../../server/raft/codec.js';
import { message, type Message } from '../../../server/raft/core/index.js';

const batch: Message[] = [
  message({
    type: 'app', to: 'n2', from: 'n1', term: 7, logTerm: 6, index: 41, commit: 40,
    entries: [
      { term: 7, index: 42, type: 'normal', data: new Uint8Array(Buffer.from('{"t":"secret.put"}')) },
      { term: 7, index: 43, type: 'noop', data: new Uint8Array(0) },
      { term: 7, index: 44, type: 'confChange', data: new Uint8Array([0, 255, 1]) },
    ],
  }),
  message({ type: 'appResp', to: 'n1', from: 'n2', term: 7, index: 44, reject: true, rejectHint: 2 ** 40 }),
  message({ type: 'heartbeat', to: 'n3', from: 'n1', term: 7, commit: 44, context: 'read-ctx-é' }),
  message({ type: 'voteResp', to: 'n1', from: 'n3', term: 8 }),
];

describe('binary message batch', () => {
  it('round-trips every field', () => {
    expect(decodeBatch(encodeBatch(batch))).toEqual(batch);
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  it('refuses truncated, padded or out-of-shape batches', () => {
    const good = encodeBatch(batch);
    for (let cut = 0; cut < good.length; cut += 7) expect(() => decodeBatch(good.subarray(0, cut))).toThrow(MalformedBatchError);
    expect(() => decodeBatch(Buffer.concat([good, Buffer.from([0])]))).toThrow(MalformedBatchError);
    const badVersion = Buffer.from(good);
    badVersion[0] = 9;
    expect(() => decodeBatch(badVersion)).toThrow(MalformedBatchError);
    const badType = Buffer.from(good);
    badType[5] = 200;
    expect(() => decodeBatch(badType)).toThrow(MalformedBatchError);
    const huge = Buffer.alloc(5);
    huge.writeUInt32LE(0xffffffff, 1);
    huge[0] = 1;
    expect(() => decodeBatch(huge)).toThrow(MalformedBatchError);
  });

  it('does not put snapshots or local messages on the wire', () => {
    expect(() => encodeBatch([message({ type: 'hup', to: 'n1', from: 'n1' })])).toThrow(RangeError);
    expect(() => encodeBatch([message({ type: 'snap', to: 'n2', from: 'n1' })])).toThrow(RangeError);
  });
});
