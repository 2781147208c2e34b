// Wire form of Raft messages between nodes and of conf-change entry payloads.
// JSON with base64 payloads: easy to inspect, and a batch of appends costs one
// parse. Snapshot images never travel here; they stream separately.
import type { ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType, Snapshot } from './core/index.js';
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

/** A membership change as logged: the core's ConfChange plus the member's Raft address. */
export interface ConfChangeEntry extends ConfChange {
  address: string | null;
}

export function encodeConfChange(cc: ConfChangeEntry): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify({ type: cc.type, nodeId: cc.nodeId, address: cc.address })));
}

export function decodeConfChange(data: Uint8Array): ConfChangeEntry {
  const raw = JSON.parse(Buffer.from(data).toString('utf8')) as { type: ConfChangeType; nodeId: string; address: string | null };
  return { type: raw.type, nodeId: raw.nodeId, address: raw.address ?? null };
}

/** JSON schema of a message batch, for the Raft listener's edge validation. */
export const messageBatchSchema = {
  type: 'array',
  maxItems: 10_000,
  items: {
    type: 'object',
    required: ['type', 'to', 'from', 'term', 'logTerm', 'index', 'commit', 'reject', 'rejectHint', 'entries'],
    properties: {
      type: { type: 'string', maxLength: 32 },
      to: { type: 'string', maxLength: 64 },
      from: { type: 'string', maxLength: 64 },
      term: { type: 'integer', minimum: 0 },
      logTerm: { type: 'integer', minimum: 0 },
      index: { type: 'integer', minimum: 0 },
      commit: { type: 'integer', minimum: 0 },
      reject: { type: 'boolean' },
      rejectHint: { type: 'integer', minimum: 0 },
      context: { type: 'string', maxLength: 256 },
      entries: {
        type: 'array',
        items: {
          type: 'object',
          required: ['t', 'i', 'y', 'd'],
          properties: {
            t: { type: 'integer', minimum: 0 },
            i: { type: 'integer', minimum: 0 },
            y: { type: 'string', enum: ['normal', 'noop', 'confChange'] },
            d: { type: 'string' },
          },
        },
      },
      snapshot: { type: 'object' },
    },
  },
} as const;
