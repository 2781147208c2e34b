// When the Ready loop applies committed entries relative to its own write:
// entries already on this node's disk are applied while the Ready's write
// runs (a commit-only hard state, or the next entries' fsync); entries that
// arrive in the same Ready are applied only after they are durable here.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Entry, HardState, Ready } from '../../../server/raft/core/index.js';
import { ReadyLoop, type ReadyHandlers } from '../../../server/raft/driver/ready-loop.js';

const entry = (index: number): Entry => ({ index, term: 2, type: 'normal', data: new Uint8Array([index]) });
const ready = (r: Partial<Ready>): Ready => ({ entries: [], messages: [], committedEntries: [], readStates: [], mustSync: false, ...r });

/** Runs one Ready through a loop whose disk holds entries 1..durableLast and finishes a write only when told. */
async function run(rd: Ready, durableLast: number) {
  const events: string[] = [];
  let finishWrite!: () => void;
  const hs: HardState = { term: 2, vote: 'n1', commit: 0 };
  const queue = [rd];
  const node = {
    hasReady: () => queue.length > 0,
    ready: () => queue.shift()!,
    advance: () => events.push('advance'),
    tick: () => {},
  };
  const disk = {
    storage: { lastIndex: () => durableLast, hardState: () => hs },
    persist: () =>
      new Promise<void>((resolve) => {
        events.push('write started');
        finishWrite = () => {
          events.push('write durable');
          resolve();
        };
      }),
  };
  const loop = new ReadyLoop({ nodeId: 'n1', node: node as never, disk: disk as never, transport: { send: () => true }, logger: pino({ level: 'silent' }), writeGuard: undefined, onFatal: undefined });
  const handlers = {
    snapshots: { install: () => {}, maybeCompact: () => {} },
    reads: { release: () => {}, leaderLost: () => {} },
    apply: (ents: readonly Entry[]) => events.push(`apply ${ents.map((e) => e.index).join(',')}`),
    failPending: () => {},
    onLeader: undefined,
  } as unknown as ReadyHandlers;
  loop.start(handlers, 60_000);
  await new Promise((r) => setTimeout(r, 20));
  const beforeDurable = [...events];
  finishWrite();
  await new Promise((r) => setTimeout(r, 20));
  await loop.close();
  return { beforeDurable, events };
}

describe('Ready loop: apply beside the write', () => {
  it('applies entries already durable here while a commit-only hard state is written', async () => {
    const { beforeDurable, events } = await run(ready({ hardState: { term: 2, vote: 'n1', commit: 3 }, committedEntries: [entry(2), entry(3)] }), 3);
    expect(beforeDurable).toEqual(['write started', 'apply 2,3']);
    expect(events).toEqual(['write started', 'apply 2,3', 'write durable', 'advance']);
  });

  it('applies earlier entries during the fsync of new ones', async () => {
    const { beforeDurable } = await run(ready({ entries: [entry(4), entry(5)], mustSync: true, committedEntries: [entry(3)] }), 3);
    expect(beforeDurable).toEqual(['write started', 'apply 3']);
  });

  it('waits for the write when a committed entry arrives in the same Ready (a follower appending and committing at once)', async () => {
    const { beforeDurable, events } = await run(ready({ entries: [entry(4)], mustSync: true, hardState: { term: 2, vote: 'n1', commit: 4 }, committedEntries: [entry(3), entry(4)] }), 3);
    expect(beforeDurable).toEqual(['write started']);
    expect(events).toEqual(['write started', 'write durable', 'apply 3,4', 'advance']);
  });
});
