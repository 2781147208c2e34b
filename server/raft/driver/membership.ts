// Membership: a member joins as a learner, is promoted to voter once it has
// caught up, and leaves by one conf change; leadership moves by transfer.
// Changes run on the leader; a follower forwards them there.
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterMember, clusterPeer } from '../../store/commands.js';
import type { ConfChange } from '../core/index.js';
import type { Transport } from '../transport.js';
import { ConflictError, NotFoundError } from '../../domain-errors.js';
import { NoLeaderError } from '../replicator.js';
import { isLeader, LEADER_WAIT_MS, waitForLeader, type DriverContext } from './context.js';
import type { PendingProposals } from './pending-proposals.js';
import type { Proposer } from './proposals.js';
import type { ReadBarrier } from './reads.js';

type ForwardedChange = { op: 'add'; id: string; address: string } | { op: 'remove'; id: string };

export class Membership {
  constructor(
    private readonly ctx: DriverContext,
    private readonly proposer: Proposer,
    private readonly pending: PendingProposals,
    private readonly reads: ReadBarrier,
    private readonly transport: Pick<Transport, 'forwardMembership'>,
  ) {}

  /**
   * Adds a member: records its address, adds it as a learner, waits for it to
   * catch up, then promotes it to voter. On a follower the request goes to the leader.
   */
  async addPeer(id: string, address: string, timeoutMs = 60_000): Promise<void> {
    if (!isLeader(this.ctx)) return this.forward({ op: 'add', id, address });
    const cs = this.ctx.node.basicStatus().confState;
    if (cs.voters.includes(id)) throw new ConflictError(`${id} is already a voter`);
    const r = await this.proposer.propose(clusterPeer({ id, address }));
    if (!r.ok) throw new ConflictError(r.message);
    if (!cs.learners.includes(id)) await this.confChange({ type: 'addLearner', nodeId: id });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = this.ctx.node.proposeConfChange({ type: 'addVoter', nodeId: id });
      if (res.ok) {
        this.ctx.schedule();
        await this.pending.wait(res.index, res.term);
        return;
      }
      if (res.reason === 'not_leader') throw new NoLeaderError('leadership moved during the change; retry');
      if (Date.now() > deadline) throw new NoLeaderError(`${id} did not catch up in time (${res.reason}); it stays a learner`);
      await sleep(100);
    }
  }

  /**
   * One autopilot step on the leader: records the address and storage
   * identity of a declared node, then adds it as a learner (promotion is a
   * later step, once it is caught up and stable).
   */
  async addLearner(id: string, address: string, dataId: string): Promise<void> {
    for (const cmd of [clusterPeer({ id, address }), clusterMember({ id, data_id: dataId })]) {
      const r = await this.proposer.propose(cmd);
      if (!r.ok) throw new ConflictError(r.message);
    }
    await this.confChange({ type: 'addLearner', nodeId: id });
  }

  /** One autopilot step: a caught-up learner becomes a voter. */
  promote(id: string): Promise<void> {
    return this.confChange({ type: 'addVoter', nodeId: id });
  }

  /** One autopilot step: a member leaves (never the leader itself: it hands leadership away first). */
  remove(id: string): Promise<void> {
    return this.confChange({ type: 'removeNode', nodeId: id });
  }

  async removePeer(id: string): Promise<void> {
    if (!isLeader(this.ctx)) return this.forward({ op: 'remove', id });
    const cs = this.ctx.node.basicStatus().confState;
    if (!cs.voters.includes(id) && !cs.learners.includes(id)) throw new NotFoundError(`${id} is not a member`);
    await this.confChange({ type: 'removeNode', nodeId: id });
  }

  /** Hands leadership to `to`, or to the most caught-up voter; resolves with the leader afterwards. */
  async transferLeadership(to?: string, timeoutMs = 3_000): Promise<string | null> {
    const oldLead = this.ctx.node.basicStatus().lead;
    const target = to || this.successor();
    if (!target || target === oldLead) return oldLead || null;
    this.ctx.node.transferLeadership(target); // the core forwards it to the leader when we are a follower
    this.ctx.schedule();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await sleep(20);
      const lead = this.ctx.node.basicStatus().lead;
      if (lead && lead !== oldLead) return lead;
    }
    return this.ctx.node.basicStatus().lead || null;
  }

  /** The leader picks the voter whose log matches furthest; a follower cannot see progress, so any voter but the leader will do. */
  private successor(): string | undefined {
    const st = this.ctx.node.status();
    if (st.role !== 'leader') return st.confState.voters.find((v) => v !== st.lead);
    let target: string | undefined;
    let best = -1;
    for (const [id, pr] of st.progress) {
      if (id === this.ctx.nodeId || pr.isLearner) continue;
      if (pr.match > best) {
        best = pr.match;
        target = id;
      }
    }
    return target;
  }

  private async confChange(cc: ConfChange): Promise<void> {
    this.ctx.writeGuard?.check();
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const res = this.ctx.node.proposeConfChange(cc);
      if (res.ok) {
        this.ctx.schedule();
        await this.pending.wait(res.index, res.term);
        return;
      }
      if (res.reason === 'invalid_conf_change') throw new ConflictError(`membership change ${cc.type} ${cc.nodeId} is not valid now`);
      if (res.reason === 'not_leader' || Date.now() > deadline) throw new NoLeaderError(`cannot change membership now (${res.reason})`);
      await sleep(50); // another change is still being applied
    }
  }

  private async forward(req: ForwardedChange): Promise<void> {
    const leader = this.ctx.node.basicStatus().lead || (await waitForLeader(this.ctx));
    try {
      await this.transport.forwardMembership(leader, req);
      await this.reads.wait(); // answer with membership as the leader now has it
    } catch (err) {
      const body = (err as { body?: { error?: { code?: string; message?: string } } }).body?.error;
      if (body?.code === 'conflict') throw new ConflictError(body.message ?? 'conflict');
      if (body?.code === 'not_found') throw new NotFoundError(body.message ?? 'not found');
      throw new NoLeaderError(body?.message ?? 'the leader could not be reached');
    }
  }
}
