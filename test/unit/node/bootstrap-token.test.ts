// proposeBootstrapToken's retry rules, with a replicator that refuses on
// demand (a real cluster is in test/integration/bootstrap-late-voter.test.ts).
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { proposeBootstrapToken } from '../../../server/node/bootstrap-token.js';
import { FatalStorageError, NoLeaderError, type Replicator } from '../../../server/raft/replicator.js';
import type { StateReader } from '../../../server/store/queries.js';
import type { ApplyResult } from '../../../server/store/results.js';

const TOKEN = 'a'.repeat(43);

/** A replicator whose propose() throws each of `failures` in turn, then creates the token. */
function refusing(failures: Error[], leader: () => boolean = () => true) {
  const calls: unknown[] = [];
  const replicator = {
    propose: async (cmd: unknown): Promise<ApplyResult> => {
      calls.push(cmd);
      const err = failures.shift();
      if (err) throw err;
      return { ok: true, created: true };
    },
    isLeader: leader,
  } as unknown as Replicator;
  return { replicator, calls };
}

function logs() {
  const lines: Array<{ msg: string; err?: string }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const reader = { tokenByHash: () => null } as unknown as StateReader;
const now = () => new Date('2026-01-01T00:00:00Z');

describe('proposing the bootstrap token', () => {
  it('retries while this node leads and the cluster cannot commit yet, then creates it', async () => {
    const { replicator, calls } = refusing([new NoLeaderError('voter n3 does not advertise token.bootstrap@1'), new NoLeaderError('again')]);
    const { logger, lines } = logs();
    await proposeBootstrapToken(TOKEN, replicator, reader, logger, now, { signal: new AbortController().signal, retryMs: 1 });
    expect(calls).toHaveLength(3);
    expect(lines.map((l) => l.msg)).toEqual([
      'could not propose bootstrap-admin yet; retrying while this node leads',
      'created token bootstrap-admin (role admin); mint per-service tokens with it, then revoke it',
    ]);
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
  });

  it('stops when this node no longer leads: the next leader proposes it', async () => {
    const { replicator, calls } = refusing([new NoLeaderError('this node is not the leader')], () => false);
    const { logger, lines } = logs();
    await proposeBootstrapToken(TOKEN, replicator, reader, logger, now, { signal: new AbortController().signal, retryMs: 1 });
    expect(calls).toHaveLength(1);
    expect(lines.map((l) => l.msg)).toEqual(['could not propose bootstrap-admin; the next leader will']);
  });

  it('does not retry a storage fault', async () => {
    const { replicator, calls } = refusing([new FatalStorageError('node stopped after a storage fault')]);
    const { logger } = logs();
    await proposeBootstrapToken(TOKEN, replicator, reader, logger, now, { signal: new AbortController().signal, retryMs: 1 });
    expect(calls).toHaveLength(1);
  });

  it('ends its wait at once when the node closes', async () => {
    const { replicator, calls } = refusing(Array.from({ length: 100 }, () => new NoLeaderError('no')));
    const { logger } = logs();
    const stop = new AbortController();
    const started = Date.now();
    const done = proposeBootstrapToken(TOKEN, replicator, reader, logger, now, { signal: stop.signal, retryMs: 60_000 });
    await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    await done;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(calls).toHaveLength(1);
  });
});
