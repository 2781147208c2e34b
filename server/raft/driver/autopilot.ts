// The autopilot's moving parts on a node: where the declared member list
// comes from (VAULT_MEMBERS_FILE, else the list declared through the admin
// API and replicated), probing declared and current members, and carrying out
// the one change the pure decision (raft/autopilot/decide.ts) asks for. It
// runs on every node but acts only while this node leads, one round at a
// time, so two changes never overlap.
import { clusterMember, type Command } from '../../store/commands.js';
import type { DeclaredMember } from '../../store/members.js';
import type { StateReader } from '../../store/queries.js';
import type { ApplyResult } from '../../store/results.js';
import { autopilotInputFrom, autopilotState, decideAutopilot, type AutopilotAction } from '../autopilot/index.js';
import type { ProbeReply } from '../probe.js';
import type { Transport } from '../transport.js';
import type { AutopilotState } from '../autopilot/index.js';
import { isLeader, type DriverContext } from './context.js';
import type { Membership } from './membership.js';

export const AUTOPILOT_INTERVAL_MS = 1_000;
/** A learner's match may trail the commit index by this many entries and still be caught up. */
const PROMOTION_LAG = 64;

export type AutopilotSource = 'file' | 'api' | 'none';

export interface AutopilotDecision {
  action: AutopilotAction['kind'];
  id: string | null;
  reason: string;
  at: string;
}

export interface AutopilotReport {
  source: AutopilotSource;
  declared: DeclaredMember[];
  state: AutopilotState;
  last_decision: AutopilotDecision | null;
  servers: Array<{ id: string; voter: boolean; healthy: boolean; stable_since: string | null; match: number }>;
}

export interface AutopilotDeps {
  ctx: DriverContext;
  membership: Membership;
  reader: Pick<StateReader, 'declaredMembers' | 'memberDataIds'>;
  transport: Pick<Transport, 'probe' | 'setPeer' | 'address'>;
  propose(cmd: Command): Promise<ApplyResult>;
  /** This node's own storage identity. */
  dataId: string;
  stabilizationMs: number;
  /** Counts each change it makes, by kind (coffer_autopilot_changes_total). */
  onChange?(kind: AutopilotAction['kind']): void;
  now?: () => number;
}

export class Autopilot {
  /** From VAULT_MEMBERS_FILE: null while there is no file (or no good read of it yet). */
  private fileMembers: DeclaredMember[] | null = null;
  /** When each member became stable (healthy and caught up), as of the last round; reset when leadership is lost. */
  private stableSince = new Map<string, number>();
  private servers: AutopilotReport['servers'] = [];
  private lastDecision: AutopilotDecision | null = null;
  private state: AutopilotState = 'idle';
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly now: () => number;

  constructor(private readonly d: AutopilotDeps) {
    this.now = d.now ?? Date.now;
  }

  /** The members file's list (null: no file). A file, even an empty one, wins over the API's list. */
  setFileMembers(members: DeclaredMember[] | null): void {
    this.fileMembers = members;
    this.knowDeclared();
  }

  /** Where the declared list comes from now, and what it is. */
  declared(): { source: AutopilotSource; members: DeclaredMember[] } {
    if (this.fileMembers !== null) return { source: this.fileMembers.length > 0 ? 'file' : 'none', members: this.fileMembers };
    const api = this.d.reader.declaredMembers();
    return { source: api.length > 0 ? 'api' : 'none', members: api };
  }

  report(): AutopilotReport {
    const { source, members } = this.declared();
    return { source, declared: members, state: source === 'none' ? 'idle' : this.state, last_decision: this.lastDecision, servers: this.servers };
  }

  start(intervalMs = AUTOPILOT_INTERVAL_MS): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.round(), intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One round (also what the timer runs); rounds never overlap. */
  round(): Promise<void> {
    this.running ??= this.step().finally(() => (this.running = null));
    return this.running;
  }

  /** Declared members must be reachable (and their requests accepted) before they are members. */
  private knowDeclared(): void {
    for (const m of this.declared().members) if (m.id !== this.d.ctx.nodeId) this.d.transport.setPeer(m.id, m.address);
  }

  private async step(): Promise<void> {
    const { ctx } = this.d;
    if (!isLeader(ctx)) {
      this.stableSince.clear(); // another leader judges stability from its own observations
      this.servers = [];
      return;
    }
    const { members: declared } = this.declared();
    this.knowDeclared();
    const st = ctx.node.status();
    const members = [...st.confState.voters, ...st.confState.learners];
    // Data ids are recorded even with nothing declared: a member that later comes back on an empty log is
    // then recognised (join-check.ts) and waits to be re-added instead of voting with what it lost. With
    // nothing declared that is all a probe is for, so only members without a recorded id are probed, and
    // once every member has one, a round probes no one.
    const recorded = this.d.reader.memberDataIds();
    const toProbe = (declared.length > 0 ? [...new Set([...members, ...declared.map((m) => m.id)])] : members.filter((id) => !recorded.has(id))).filter(
      (id) => id !== ctx.nodeId,
    );
    const replies = new Map<string, ProbeReply | null>(await Promise.all(toProbe.map(async (id) => [id, await this.d.transport.probe(id)] as const)));
    if (!isLeader(ctx)) return;

    await this.recordDataIds(members, replies, recorded);
    if (declared.length === 0) {
      this.state = 'idle';
      return;
    }

    // Healthy: answered the probe as itself, at no later term than ours. Lost data: not the storage it joined with.
    const { input, stableSince } = autopilotInputFrom(st, {
      self: ctx.nodeId,
      now: this.now(),
      declared: declared.map((m) => m.id),
      member: (id) => {
        const reply = replies.get(id) ?? null;
        const known = recorded.get(id);
        return { healthy: reply !== null && reply.term <= st.term, lostData: reply !== null && known !== undefined && known !== reply.data_id };
      },
      reachable: (id) => Boolean(replies.get(id)),
      stableSince: this.stableSince,
      stabilizationMs: this.d.stabilizationMs,
      promotionLag: PROMOTION_LAG,
    });
    this.stableSince = stableSince;
    this.servers = [...input.servers.values()].map((s) => ({
      id: s.id,
      voter: s.voter,
      healthy: s.healthy,
      stable_since: s.stableSince === null ? null : new Date(s.stableSince).toISOString(),
      match: s.match,
    }));
    const action = decideAutopilot(input);
    await this.act(action, declared, replies);
  }

  /** Members the cluster has no storage identity for yet (initial voters; joins by an older release) get theirs recorded. */
  private async recordDataIds(members: string[], replies: Map<string, ProbeReply | null>, recorded: Map<string, string>): Promise<void> {
    for (const id of members) {
      if (recorded.has(id)) continue;
      const dataId = id === this.d.ctx.nodeId ? this.d.dataId : replies.get(id)?.data_id;
      // A member still waiting to be (re)added has no identity worth recording yet.
      if (!dataId || (id !== this.d.ctx.nodeId && replies.get(id)?.awaiting_join)) continue;
      const r = await this.d.propose(clusterMember({ id, data_id: dataId })).catch(() => null);
      if (r?.ok) recorded.set(id, dataId);
    }
  }

  private async act(action: AutopilotAction, declared: DeclaredMember[], replies: Map<string, ProbeReply | null>): Promise<void> {
    const id = 'id' in action ? action.id : 'to' in action ? action.to : null;
    const decision: AutopilotDecision = { action: action.kind, id, reason: action.reason, at: new Date(this.now()).toISOString() };
    const changed = this.lastDecision?.action !== decision.action || this.lastDecision.id !== decision.id || this.lastDecision.reason !== decision.reason;
    this.lastDecision = decision;
    // A change in flight or a learner still stabilizing is progress ('changing'); only a real hold is 'blocked'.
    this.state = autopilotState(action, declared.map((m) => m.id));
    if (action.kind === 'none') return;
    if (action.kind === 'wait') {
      if (changed) (action.blocked ? this.d.ctx.logger.warn : this.d.ctx.logger.debug).call(this.d.ctx.logger, { reason: action.reason }, 'autopilot is waiting');
      return;
    }
    this.d.ctx.logger.info({ action: action.kind, node: id, reason: action.reason }, 'autopilot membership change');
    try {
      switch (action.kind) {
        case 'addLearner': {
          const member = declared.find((m) => m.id === action.id);
          const reply = replies.get(action.id);
          if (!member || !reply) return;
          await this.d.membership.addLearner(action.id, member.address, reply.data_id);
          break;
        }
        case 'promote':
          await this.d.membership.promote(action.id);
          break;
        case 'remove':
          this.stableSince.delete(action.id);
          await this.d.membership.remove(action.id);
          break;
        case 'transferLeadership':
          await this.d.membership.transferLeadership(action.to);
          break;
      }
      this.d.onChange?.(action.kind);
    } catch (err) {
      // Leadership moved or a change was already in flight: the next round decides again from what is true then.
      this.d.ctx.logger.warn({ action: action.kind, node: id, err: { name: (err as Error).name, message: (err as Error).message } }, 'autopilot change did not complete');
    }
  }
}
