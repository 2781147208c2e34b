// The storage identity of a node's Raft directory: a random id written when
// the directory first holds a log. A member that answers with another id than
// the one it joined with has lost its data (a new volume under an old name),
// so it must not count as the voter it was; the autopilot re-adds it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncFolder, writeFileDurably } from '../storage/durable-files.js';

const FILE = 'data-id';
const DATA_ID_RE = /^[0-9a-f]{32}$/;

const AWAITING_JOIN = 'awaiting-join';

/**
 * Whether this node must still wait to be (re-)added as a learner before it
 * votes. Kept on disk until the core says the wait is over: a node that
 * installed the leader's snapshot, crashed and restarted would otherwise
 * look like a member with a log and vote without the entries it lost.
 */
export function awaitingJoinMarked(raftDir: string): boolean {
  return fs.existsSync(path.join(raftDir, AWAITING_JOIN));
}

export function setAwaitingJoinMark(raftDir: string, on: boolean): void {
  const file = path.join(raftDir, AWAITING_JOIN);
  if (on) {
    const fd = fs.openSync(file, 'w', 0o600);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } else {
    fs.rmSync(file, { force: true });
  }
  fsyncFolder(raftDir);
}

/** Reads this Raft directory's id, creating it (durably) when there is none yet. */
export function openDataId(raftDir: string): string {
  const file = path.join(raftDir, FILE);
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (DATA_ID_RE.test(text)) return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Absent (a new directory, or one from a release without ids) or unreadable garbage: a new identity.
  const id = randomBytes(16).toString('hex');
  writeFileDurably(file, `${id}\n`);
  return id;
}

/** Whether this Raft directory has never held a log (checked before it is opened). */
export function raftLogIsNew(raftDir: string): boolean {
  try {
    return fs.statSync(path.join(raftDir, 'log')).size === 0;
  } catch {
    return true;
  }
}
