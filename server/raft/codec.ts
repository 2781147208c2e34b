// Wire form of Raft messages between nodes and of conf-change entry payloads.
// Two forms of a message batch:
// - binary (encodeBatch/decodeBatch, the hot path): fixed-layout fields and
//   entry payloads as raw bytes, no JSON and no base64; the decoder checks
//   every length and field and refuses anything malformed or left over;
// - JSON with base64 payloads (encodeMessages/decodeMessages): the snapshot
//   header, and batches from (or to) members that predate the binary form.
// Snapshot images never travel here; they stream separately.
import type { Entry, EntryType, Message, MessageType, Snapshot } from './core/index.js';
import { message } from './core/index.js';

interface WireEntry {
  t: number;
  i: number;
  y: EntryType;
  d: string;
}

interface WireMessage {
  type: MessageType;
  to: string;
  from: string;
  term: number;
  logTerm: number;
  index: number;
  commit: number;
  reject: boolean;
  rejectHint: number;
  context?: string;
  entries: WireEntry[];
  snapshot?: { meta: Snapshot['meta']; data: string };
}

const b64 = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

export function encodeMessages(msgs: readonly Message[]): string {
  const wire: WireMessage[] = msgs.map((m) => ({
    type: m.type,
    to: m.to,
    from: m.from,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    ...(m.context !== undefined ? { context: m.context } : {}),
    entries: m.entries.map((e) => ({ t: e.term, i: e.index, y: e.type, d: b64(e.data) })),
    ...(m.snapshot ? { snapshot: { meta: m.snapshot.meta, data: b64(m.snapshot.data) } } : {}),
  }));
  return JSON.stringify(wire);
}

export function decodeMessages(body: unknown): Message[] {
  if (!Array.isArray(body)) throw new Error('expected an array of messages');
  return (body as WireMessage[]).map((w) =>
    message({
      type: w.type,
      to: w.to,
      from: w.from,
      term: w.term,
      logTerm: w.logTerm,
      index: w.index,
      commit: w.commit,
      reject: w.reject,
      rejectHint: w.rejectHint,
      ...(w.context !== undefined ? { context: w.context } : {}),
      entries: w.entries.map((e): Entry => ({ term: e.t, index: e.i, type: e.y, data: unb64(e.d) })),
      ...(w.snapshot ? { snapshot: { meta: w.snapshot.meta, data: unb64(w.snapshot.data) } } : {}),
    }),
  );
}

// ---- binary batch ---------------------------------------------------------------
//
// batch   = u8 version (1) | u32 count | message*
// message = u8 type | u8 flags (1 reject, 2 context) | str8 to | str8 from
//           | u48 term | u48 logTerm | u48 index | u48 commit | u48 rejectHint
//           | [u16 len | context utf8] | u32 entryCount | entry*
// entry   = u48 term | u48 index | u8 type | u32 len | data
// All integers little-endian. Snapshot messages never go in a batch.

export const BATCH_CONTENT_TYPE = 'application/x-coffer-raft-batch';
const BATCH_VERSION = 1;
const MAX_BATCH_MESSAGES = 10_000;
const MAX_ID_BYTES = 64;
const MAX_CONTEXT_BYTES = 256;
const U48_MAX = 2 ** 48 - 1;

const WIRE_TYPES: readonly MessageType[] = [
  'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp',
  'transferLeader', 'timeoutNow', 'readIndex', 'readIndexResp',
];
const WIRE_TYPE_CODE = new Map<MessageType, number>(WIRE_TYPES.map((t, i) => [t, i]));
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'noop', 'confChange'];
const ENTRY_TYPE_CODE = new Map<EntryType, number>(ENTRY_TYPES.map((t, i) => [t, i]));

export class MalformedBatchError extends Error {
  override readonly name = 'MalformedBatchError';
  readonly statusCode = 400;
}

function checkU48(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > U48_MAX) throw new RangeError(`${what} ${v} does not fit the wire form`);
  return v;
}

/** Encodes a batch of (non-snapshot) messages in the binary form. */
export function encodeBatch(msgs: readonly Message[]): Buffer {
  let size = 5;
  const ids: Buffer[] = [];
  for (const m of msgs) {
    if (m.snapshot || m.type === 'snap') throw new RangeError('snapshot messages do not travel in a batch');
    const to = Buffer.from(m.to, 'utf8');
    const from = Buffer.from(m.from, 'utf8');
    if (to.length > MAX_ID_BYTES || from.length > MAX_ID_BYTES) throw new RangeError('node id too long for the wire form');
    ids.push(to, from);
    size += 2 + 1 + to.length + 1 + from.length + 30 + 4;
    if (m.context !== undefined) size += 2 + Buffer.byteLength(m.context, 'utf8');
    for (const e of m.entries) size += 17 + e.data.byteLength;
  }
  const buf = Buffer.allocUnsafe(size);
  let o = buf.writeUInt8(BATCH_VERSION, 0);
  o = buf.writeUInt32LE(msgs.length, o);
  let k = 0;
  for (const m of msgs) {
    const code = WIRE_TYPE_CODE.get(m.type);
    if (code === undefined) throw new RangeError(`message type ${m.type} does not travel`);
    o = buf.writeUInt8(code, o);
    o = buf.writeUInt8((m.reject ? 1 : 0) | (m.context !== undefined ? 2 : 0), o);
    for (const id of [ids[k++]!, ids[k++]!]) {
      o = buf.writeUInt8(id.length, o);
      o += id.copy(buf, o);
    }
    o = buf.writeUIntLE(checkU48(m.term, 'term'), o, 6);
    o = buf.writeUIntLE(checkU48(m.logTerm, 'logTerm'), o, 6);
    o = buf.writeUIntLE(checkU48(m.index, 'index'), o, 6);
    o = buf.writeUIntLE(checkU48(m.commit, 'commit'), o, 6);
    o = buf.writeUIntLE(checkU48(m.rejectHint, 'rejectHint'), o, 6);
    if (m.context !== undefined) {
      const n = buf.write(m.context, o + 2, 'utf8');
      if (n > MAX_CONTEXT_BYTES) throw new RangeError('context too long for the wire form');
      buf.writeUInt16LE(n, o);
      o += 2 + n;
    }
    o = buf.writeUInt32LE(m.entries.length, o);
    for (const e of m.entries) {
      o = buf.writeUIntLE(checkU48(e.term, 'entry term'), o, 6);
      o = buf.writeUIntLE(checkU48(e.index, 'entry index'), o, 6);
      o = buf.writeUInt8(ENTRY_TYPE_CODE.get(e.type)!, o);
      o = buf.writeUInt32LE(e.data.byteLength, o);
      buf.set(e.data, o);
      o += e.data.byteLength;
    }
  }
  return buf;
}

/** Decodes a binary batch; throws MalformedBatchError on anything out of shape. */
export function decodeBatch(buf: Buffer): Message[] {
  let o = 0;
  const need = (n: number) => {
    if (n < 0 || o + n > buf.length) throw new MalformedBatchError('message batch is truncated');
  };
  const u8 = () => {
    need(1);
    return buf[o++]!;
  };
  const u32 = () => {
    need(4);
    const v = buf.readUInt32LE(o);
    o += 4;
    return v;
  };
  const u48 = () => {
    need(6);
    const v = buf.readUIntLE(o, 6);
    o += 6;
    return v;
  };
  const str = (n: number, max: number, what: string) => {
    if (n > max) throw new MalformedBatchError(`${what} is too long`);
    need(n);
    const v = buf.toString('utf8', o, o + n);
    o += n;
    return v;
  };
  if (u8() !== BATCH_VERSION) throw new MalformedBatchError('unknown message batch version');
  const count = u32();
  if (count > MAX_BATCH_MESSAGES) throw new MalformedBatchError('too many messages in one batch');
  const out: Message[] = [];
  for (let i = 0; i < count; i++) {
    const type = WIRE_TYPES[u8()];
    if (type === undefined) throw new MalformedBatchError('unknown message type');
    const flags = u8();
    if (flags & ~3) throw new MalformedBatchError('unknown message flags');
    const to = str(u8(), MAX_ID_BYTES, 'to');
    const from = str(u8(), MAX_ID_BYTES, 'from');
    const term = u48();
    const logTerm = u48();
    const index = u48();
    const commit = u48();
    const rejectHint = u48();
    let context: string | undefined;
    if (flags & 2) {
      need(2);
      const len = buf.readUInt16LE(o);
      o += 2;
      context = str(len, MAX_CONTEXT_BYTES, 'context');
    }
    const n = u32();
    // Each entry takes at least 17 bytes: refuse a count the body cannot hold before allocating for it.
    if (n > (buf.length - o) / 17) throw new MalformedBatchError('message batch is truncated');
    const entries: Entry[] = new Array<Entry>(n);
    for (let j = 0; j < n; j++) {
      const eTerm = u48();
      const eIndex = u48();
      const eType = ENTRY_TYPES[u8()];
      if (eType === undefined) throw new MalformedBatchError('unknown entry type');
      const len = u32();
      need(len);
      entries[j] = { term: eTerm, index: eIndex, type: eType, data: new Uint8Array(buf.subarray(o, o + len)) };
      o += len;
    }
    out.push(
      message({
        type, to, from, term, logTerm, index, commit, reject: (flags & 1) !== 0, rejectHint,
        ...(context !== undefined ? { context } : {}),
        entries,
      }),
    );
  }
  if (o !== buf.length) throw new MalformedBatchError('trailing bytes after the message batch');
  return out;
}
