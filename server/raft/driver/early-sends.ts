// Which messages of a Ready may leave before the Ready is durable.
import type { HardState, Message, Ready } from '../core/index.js';

/**
 * The messages of `rd` that may leave before its entries and hard state are
 * durable: this node's own appends and heartbeats, as leader, in a term
 * (and vote) already on disk (`persisted`). Everything else (votes, vote
 * responses, append responses, and anything in a Ready that changes term or
 * vote or installs a snapshot) waits for the fdatasync.
 *
 * Why this is safe although the core counts the leader's own match at
 * append time (raft.ts appendEntries), i.e. before it is durable:
 * - An append only asks followers to store entries; by itself it commits
 *   nothing and acknowledges nothing. If the leader crashes before its
 *   fsync, the entries live on some followers only, like any uncommitted
 *   entry, and the next leader keeps or overwrites them.
 * - The commit index may count the leader's not-yet-durable entries, but it
 *   only changes while this Ready's fsync is awaited (acks stepped in by
 *   receive()), and everything that makes a commit visible — applying
 *   entries (and so answering clients), read states, and the commit index
 *   carried in later appends and heartbeats — comes in a LATER Ready. The
 *   loop creates the next Ready only after this one's persist resolved, so
 *   by then every entry counted for the leader is on its disk as well as on
 *   the acknowledging followers': a real quorum of durable copies.
 * - The commit index carried by the early messages themselves was computed
 *   before this Ready, from acks of entries sent in earlier Readies, which
 *   were durable here before this Ready existed.
 * - A failed fsync stops the node (FatalStorageError) before any later
 *   Ready, so nothing counted on the lost write is ever applied or announced.
 * - The term and vote the appends carry were persisted by the Ready that
 *   made this node a candidate (checked against `persisted`), so a crash
 *   cannot let this node vote again in a term it has led.
 */
export function sendsBeforePersist(rd: Ready, self: string, persisted: Pick<HardState, 'term' | 'vote'>): readonly Message[] {
  if (rd.messages.length === 0 || rd.snapshot) return [];
  const term = persisted.term;
  if (rd.hardState && (rd.hardState.term !== term || rd.hardState.vote !== persisted.vote)) return [];
  const early = (m: Message) => (m.type === 'app' || m.type === 'heartbeat') && m.from === self && m.term === term;
  return rd.messages.every(early) ? rd.messages : rd.messages.filter(early);
}
