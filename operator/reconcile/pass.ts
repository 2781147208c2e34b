// One reconcile pass over one VaultCluster: what it read at the start, and
// the problems and events its phases find on the way (reported together at
// the end). Loading the VaultCluster is the first phase.
import type { Condition } from '../api/types.js';
import type { ClusterClient } from './client.js';
import { parseConditions } from './conditions.js';
import type { EventRecorder, EventTarget, OperatorEvent } from './events.js';
import type { Logger } from './logger.js';

export class NotLeaderError extends Error {
  override readonly name = 'NotLeaderError';
  constructor() {
    super('not the leader any more; not acting');
  }
}

/** What the phases read and write through. */
export interface PassDeps {
  client: ClusterClient;
  /** Throws (NotLeaderError) when this replica must not write: called before every write, so a lost lease stops acting at the next one. */
  guard: () => void;
  events: EventRecorder;
  log: Logger;
}

/** Something wrong: the Degraded condition, a Warning event, and a retry later. */
export interface Problem {
  reason: string;
  message: string;
}

export interface Pass {
  key: string;
  namespace: string;
  name: string;
  target: EventTarget;
  generation: number;
  /** The VaultCluster without its status (the operator's own: a malformed one must not block the spec). */
  object: Record<string, unknown>;
  /** status as stored. */
  stored: Record<string, unknown>;
  storedConditions: Condition[];
  /** When this pass runs, for every timestamp it writes. */
  now: string;
  problems: Problem[];
  /** Steps taken, in order; recorded at the end of the pass. */
  events: OperatorEvent[];
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: 'default', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** The VaultCluster `key` names, or null when it is gone or being deleted. */
export async function loadPass(client: ClusterClient, key: string, nowMs: number): Promise<Pass | null> {
  const { namespace, name } = splitKey(key);
  const raw = await client.getVaultCluster(namespace, name);
  if (!raw) return null;
  const meta = (raw.metadata ?? {}) as { uid?: string; resourceVersion?: string; generation?: number; deletionTimestamp?: string };
  // Owned objects go with the garbage collector; PVCs per spec.storage.
  if (meta.deletionTimestamp) return null;
  const { status, ...object } = raw;
  const stored = (status ?? {}) as Record<string, unknown>;
  return {
    key,
    namespace,
    name,
    target: { namespace, name, ...(meta.uid ? { uid: meta.uid } : {}), ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}) },
    generation: meta.generation ?? 0,
    object,
    stored,
    storedConditions: parseConditions(stored.conditions),
    now: new Date(nowMs).toISOString(),
    problems: [],
    events: [],
  };
}

export async function recordEvents(deps: PassDeps, pass: Pass, events: readonly OperatorEvent[]): Promise<void> {
  for (const e of events) await deps.events.record(pass.target, e);
}
