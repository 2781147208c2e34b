// Proposals: a command proposed on the leader waits for its entry to apply;
// on a follower it is forwarded to the leader, which proposes it as its own.
// Either way the write guard refuses it first when the volume is short of
// space, and the leader proposes a command version only once every voter
// advertises it (capabilities.ts).
import { capability, encodeCommand, type Command } from '../../store/commands.js';
import type { ApplyResult } from '../../store/results.js';
import { InsufficientStorageError } from '../../storage/write-guard.js';
import type { Transport } from '../transport.js';
import { NoLeaderError } from '../replicator.js';
import type { AppliedIndex } from './applied.js';
import type { CapabilityGate } from './capabilities.js';
import { waitForLeader, type DriverContext } from './context.js';
import type { PendingProposals } from './pending-proposals.js';

/** A committed proposal's result and the log index it applied at. */
export interface Committed {
  result: ApplyResult;
  index: number;
}

export class Proposer {
  constructor(
    private readonly ctx: DriverContext,
    private readonly gate: CapabilityGate,
    private readonly pending: PendingProposals,
    private readonly applied: AppliedIndex,
    private readonly transport: Pick<Transport, 'forwardProposal'>,
  ) {}

  async propose(cmd: Command): Promise<ApplyResult> {
    this.ctx.throwIfStopped();
    // Refused before anything is proposed (507): this node stores and applies every entry too.
    this.ctx.writeGuard?.check();
    const data = encodeCommand(cmd);
    const cap = `${cmd.t}@${cmd.v}`;
    for (;;) {
      const st = this.ctx.node.basicStatus();
      if (st.role === 'leader') {
        await this.gate.waitFor(cap);
        return (await this.proposeLocal(data)).result;
      }
      const leader = st.lead || (await waitForLeader(this.ctx));
      if (leader === this.ctx.nodeId) continue;
      const reply = await this.forward(leader, data);
      await this.applied.wait(reply.index); // read-your-writes on this node
      return reply.result;
    }
  }

  /**
   * A proposal a follower forwarded (this node should be the leader): `data`
   * as it arrived, `cmd` what the listener decoded and admitted from it, so
   * the bytes are not decoded again before they reach the log.
   */
  async proposeForwarded(cmd: Command, data: Uint8Array): Promise<Committed> {
    this.ctx.throwIfStopped();
    this.ctx.writeGuard?.check(); // the leader's own volume takes every entry first
    await this.gate.waitFor(capability(cmd));
    return this.proposeLocal(data);
  }

  private proposeLocal(data: Uint8Array): Promise<Committed> {
    const r = this.ctx.node.propose(data);
    if (!r.ok) {
      return Promise.reject(new NoLeaderError(r.reason === 'not_leader' ? 'this node is not the leader' : `cannot propose now (${r.reason})`));
    }
    this.ctx.schedule();
    return this.pending.wait(r.index, r.term).then((result) => ({ result, index: r.index }));
  }

  private async forward(leader: string, data: Uint8Array): Promise<Committed> {
    let reply: Partial<Committed>;
    try {
      reply = (await this.transport.forwardProposal(leader, data)) as Partial<Committed>;
    } catch (err) {
      // The leader refused it before proposing (its own volume is short of space): nothing was committed.
      const body = (err as { body?: { error?: { code?: unknown; message?: unknown } } }).body?.error;
      if (body?.code === 'insufficient_storage') throw new InsufficientStorageError(`the leader refused the write: ${String(body.message ?? 'insufficient storage')}`);
      throw new NoLeaderError('the leader could not be reached');
    }
    if (!reply.result || typeof reply.index !== 'number') throw new NoLeaderError('the leader did not commit the write');
    return { result: reply.result, index: reply.index };
  }
}
