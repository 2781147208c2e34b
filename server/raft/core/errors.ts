// Errors a Storage implementation throws to tell the core why it cannot
// answer. The core recovers from all three; anything else is a bug.

/** The requested index is at or below the last snapshot (compacted away). */
export class CompactedError extends Error {
  constructor(index: number) {
    super(`raft: index ${index} is compacted`);
    this.name = 'CompactedError';
  }
}

/** The requested index is beyond the last stored entry. */
export class UnavailableError extends Error {
  constructor(index: number) {
    super(`raft: index ${index} is unavailable`);
    this.name = 'UnavailableError';
  }
}

/** The snapshot is being produced; the leader retries later. */
export class SnapshotTemporarilyUnavailableError extends Error {
  constructor() {
    super('raft: snapshot temporarily unavailable');
    this.name = 'SnapshotTemporarilyUnavailableError';
  }
}

/** Programming error / violated contract inside the core or by the driver. */
export class RaftInvariantError extends Error {
  constructor(message: string) {
    super(`raft: ${message}`);
    this.name = 'RaftInvariantError';
  }
}
