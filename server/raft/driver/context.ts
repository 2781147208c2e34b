// What every part of the driver shares: the pure core (through its public
// API only), the loop's doorbell and the node's lifecycle. Each part takes
// this plus the few collaborators it needs, as etcd's server hands its
// raftNode to the pieces around it.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { RaftNode } from '../core/index.js';
import type { WriteGuard } from '../../storage/write-guard.js';
import { NoLeaderError } from '../replicator.js';

/** How long a request waits for a leader, a capability or a membership slot before it is refused. */
export const LEADER_WAIT_MS = 3_000;

/** The write guard as the driver uses it: refusing writes, and hearing of its own storage stalls. */
export type DriverWriteGuard = Pick<WriteGuard, 'check' | 'waitForSpace' | 'resumed' | 'problem'>;

export interface DriverContext {
  readonly nodeId: string;
  readonly node: RaftNode;
  readonly logger: Logger;
  readonly writeGuard: DriverWriteGuard | undefined;
  /** Runs the Ready loop soon: after a proposal, a message or anything else the core must act on. */
  schedule(): void;
  /** Throws if the node stopped on a storage fault or is shutting down. */
  throwIfStopped(): void;
}

/** The leader's id, giving an election a moment; throws NoLeaderError when none comes. */
export async function waitForLeader(ctx: DriverContext): Promise<string> {
  const deadline = Date.now() + LEADER_WAIT_MS;
  for (;;) {
    ctx.throwIfStopped();
    const lead = ctx.node.basicStatus().lead;
    if (lead) return lead;
    if (Date.now() > deadline) throw new NoLeaderError('no leader elected');
    await sleep(25);
  }
}

export function isLeader(ctx: DriverContext): boolean {
  return ctx.node.basicStatus().role === 'leader';
}
