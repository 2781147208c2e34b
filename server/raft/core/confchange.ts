// Encoding of ConfChange entries (entry.type === 'confChange').

import { RaftInvariantError } from './errors.js';
import type { ConfChange, ConfChangeType } from './types.js';

const TYPES: readonly ConfChangeType[] = ['addLearner', 'addVoter', 'removeNode'];
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify({ type: cc.type, nodeId: cc.nodeId }));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(data));
  } catch {
    throw new RaftInvariantError('undecodable conf change');
  }
  if (typeof v !== 'object' || v === null) throw new RaftInvariantError('undecodable conf change');
  const { type, nodeId } = v as { type?: unknown; nodeId?: unknown };
  if (typeof type !== 'string' || !TYPES.includes(type as ConfChangeType) || typeof nodeId !== 'string' || nodeId === '') {
    throw new RaftInvariantError('undecodable conf change');
  }
  return { type: type as ConfChangeType, nodeId };
}
