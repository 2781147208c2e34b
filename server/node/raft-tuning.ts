// Test and benchmark knobs for Raft timing (COFFER_RAFT_*): not part of the VAULT_* contract.
export function raftTuning(): { tickMs?: number; electionTicks?: number; snapshotEntries?: number; leaseReads?: boolean } {
  const num = (name: string) => {
    const v = process.env[name];
    return v && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const out: { tickMs?: number; electionTicks?: number; snapshotEntries?: number; leaseReads?: boolean } = {};
  const tick = num('COFFER_RAFT_TICK_MS');
  const election = num('COFFER_RAFT_ELECTION_TICKS');
  const snap = num('COFFER_RAFT_SNAPSHOT_ENTRIES');
  if (tick) out.tickMs = tick;
  if (election) out.electionTicks = election;
  if (snap) out.snapshotEntries = snap;
  // COFFER_RAFT_LEASE_READS=0: every linearizable read on the leader runs a heartbeat round (no lease).
  if (process.env.COFFER_RAFT_LEASE_READS === '0') out.leaseReads = false;
  return out;
}
