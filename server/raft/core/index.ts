/**
 * Coffer's Raft consensus core — pure and deterministic, in the shape of
 * etcd-io/raft. No timers, sockets, disk, clocks or Math.random inside: the
 * driver (server/raft/) injects ticks, messages, randomness and storage.
 *
 * ## Creating a node
 *
 *   const storage = MemoryStorage.bootstrap(['a', 'b', 'c']); // or your own Storage
 *   const node = new RaftNode({ id: 'a', storage, rng: new SeededRng(seed) });
 *
 * A brand-new member of the initial configuration starts from
 * `bootstrapSnapshot(voters)` (index 1, term 1, empty state machine) and hard
 * state {term: 1, vote: '', commit: 1}. A node joining later starts with an
 * empty Storage and receives a snapshot from the leader. A restarted node
 * passes the Storage it persisted; its configuration is the snapshot's, and
 * conf changes after it come back through committedEntries (replayed from
 * `applied`, default the snapshot index; pass `Config.applied` if the state
 * machine is durable and already applied further).
 *
 * A node that starts with an EMPTY raft dir in an already formed cluster (a
 * new server, or one whose disk was wiped) passes `awaitingJoin: true`: it
 * then neither campaigns nor grants (pre-)votes, and ignores heartbeat commit
 * indexes (the leader's match for it may predate the wipe), until it applies
 * a configuration listing itself as a learner (its own addLearner, or a
 * snapshot). basicStatus().awaitingJoin reports it; persist the flag until it
 * clears, or a restart after a snapshot install would forget it.
 *
 * ## The driver loop (one thread, in this order)
 *
 *   every tick interval:  node.tick()
 *   on a message:         node.step(msg)
 *   on client requests:   node.propose(data) / node.readIndex(ctx) /
 *                         node.proposeConfChange(cc) / node.transferLeadership(id)
 *   then, while node.hasReady():
 *     const rd = node.ready();
 *     1. if rd.snapshot: persist it, restore the state machine from rd.snapshot.data
 *        (and record it in Storage, e.g. MemoryStorage.applySnapshot)
 *     2. append rd.entries to the log (a suffix from entries[0].index replaces
 *        what is stored there); persist rd.hardState; fsync if rd.mustSync
 *        (MemoryStorage.append / setHardState)
 *     3. send rd.messages (only now: votes and acks must be durable first).
 *        A MsgSnap ('snap') carries snapshot meta + data; stream it and call
 *        node.reportSnapshot(to, ok) when done/failed. Call
 *        node.reportUnreachable(to) when a send fails.
 *     4. apply rd.committedEntries in order: 'normal' → state machine;
 *        'noop' → nothing; 'confChange' → node.applyConfChange(decodeConfChange(e.data)).
 *        A proposal returned {index, term} is committed iff the entry applied at
 *        that index has that term (otherwise it was lost: tell the client to retry).
 *     5. serve rd.readStates: each read may answer once applied index >= rs.index.
 *     6. rd.softState (if set) reports leader / role changes.
 *     7. node.advance(rd)
 *
 * ## Reading state
 *
 * node.basicStatus() (term, vote, commit, applied, lead, role, membership) is
 * cheap enough for every request; node.status() adds the log bounds and, on
 * the leader, each member's progress. A driver reads nothing else: node.raft
 * is there for tests.
 *
 * ## Compaction
 *
 * After the state machine has a durable image at applied index i (term t,
 * membership cs), call node.compact(i, t, cs, data). Storage.compact drops the
 * log up to i; `data` is opaque (a blob or a reference the transport streams).
 * The leader sends it in a 'snap' message to followers that need entries <= i.
 *
 * ## Guarantees built in
 *
 * Randomized election timeouts, pre-vote, check-quorum + leader lease, a no-op
 * per new term, commit by quorum of current-term entries only, batched and
 * pipelined replication with fast conflict backoff, ReadIndex (quorum
 * heartbeat round after the leader committed in its term; followers forward),
 * leadership transfer (TimeoutNow once the target is caught up), one-at-a-time
 * membership changes with learners that must catch up before promotion,
 * snapshot install for followers behind the compaction point.
 */

export * from './types.js';
export * from './errors.js';
export * from './rand.js';
export * from './storage.js';
export * from './log.js';
export * from './progress.js';
export * from './tracker.js';
export * from './readonly.js';
export * from './confchange.js';
export { Raft, CAMPAIGN_TRANSFER } from './raft.js';
export type { Config, ProposeResult, ProposeError } from './raft.js';
export { RaftNode } from './node.js';
export type { Ready, BasicStatus, Status, ProgressStatus } from './node.js';
