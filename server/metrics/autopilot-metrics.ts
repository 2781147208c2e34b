// The autopilot (membership reconciliation) and its members file: how many
// members are declared, voters and learners now, whether the configuration
// equals the declared list, each change made, and members-file re-reads.
import type { Registry } from '../../common/prometheus.js';
import { RELOAD_OUTCOMES, type ReloadOutcome } from '../config/watched-file.js';
import type { ReplicationStatus } from '../raft/replicator.js';

const STATES = ['idle', 'converged', 'changing', 'blocked'] as const;
const CHANGE_KINDS = ['addLearner', 'promote', 'remove', 'transferLeadership'] as const;

export function registerAutopilotMetrics(registry: Registry, status: () => ReplicationStatus) {
  registry.gauge({
    name: 'coffer_autopilot_declared_members',
    help: 'Members declared (VAULT_MEMBERS_FILE or PUT /v1/admin/cluster/members); 0 = nothing declared, the autopilot is idle.',
    collect: () => status().autopilot.declared.length,
  });
  registry.gauge({
    name: 'coffer_raft_voters',
    help: 'Voters in the Raft configuration this node applied.',
    collect: () => status().peers.filter((p) => p.voter).length,
  });
  registry.gauge({
    name: 'coffer_raft_learners',
    help: 'Learners (members catching up before they vote) in the Raft configuration this node applied.',
    collect: () => status().peers.filter((p) => !p.voter).length,
  });
  registry.gauge({
    name: 'coffer_autopilot_state',
    help: "1 for the autopilot's state on this node (idle, converged, changing, blocked: a change waits, e.g. removing a voter would cost the quorum); meaningful on the leader.",
    labelNames: ['state'],
    collect: () => {
      const now = status().autopilot.state;
      return STATES.map((s) => ({ labels: { state: s }, value: s === now ? 1 : 0 }));
    },
  });
  const changes = registry.counter({
    name: 'coffer_autopilot_changes_total',
    help: 'Membership changes the autopilot made on this node while it led, by kind.',
    labelNames: ['kind'],
  });
  for (const kind of CHANGE_KINDS) changes.inc({ kind }, 0);
  return { changes };
}

export function registerMembersFileMetrics(registry: Registry, source: { valid: boolean }): (outcome: ReloadOutcome) => void {
  registry.gauge({
    name: 'coffer_members_file_valid',
    help: '1 when VAULT_MEMBERS_FILE was last read well-formed; 0 while it is malformed, unreadable or missing (the last good list stays declared).',
    collect: () => (source.valid ? 1 : 0),
  });
  const reloads = registry.counter({
    name: 'coffer_members_file_reloads_total',
    help: 'Re-reads of VAULT_MEMBERS_FILE after a change, by outcome (ok, invalid, missing, unreadable).',
    labelNames: ['outcome'],
  });
  for (const outcome of RELOAD_OUTCOMES) reloads.inc({ outcome }, 0);
  return (outcome) => reloads.inc({ outcome });
}
