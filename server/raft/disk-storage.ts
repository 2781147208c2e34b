// Durable Raft storage: an in-memory log (the core's MemoryStorage) backed by
// the checksummed log file. Each Ready's snapshot, entries and hard state go
// to the file in one write and, when the core says so, one fdatasync.
// Compaction rewrites the file atomically from the snapshot point on.
import fs from 'node:fs';
import path from 'node:path';
import {
  MemoryStorage,
  bootstrapSnapshot,
  type Entry,
  type EntryType,
  type HardState,
  type Ready,
  type Snapshot,
} from './core/index.js';
import {
  ENTRY_CONF_CHANGE,
  ENTRY_NOOP,
  ENTRY_NORMAL,
  RECORD_HARD_STATE,
  RECORD_SNAPSHOT,
  Wal,
  type WalEntry,
} from './wal.js';

const KIND_OF: Record<EntryType, number> = { normal: ENTRY_NORMAL, noop: ENTRY_NOOP, confChange: ENTRY_CONF_CHANGE };
const TYPE_OF: Record<number, EntryType> = { [ENTRY_NORMAL]: 'normal', [ENTRY_NOOP]: 'noop', [ENTRY_CONF_CHANGE]: 'confChange' };

const json = (v: unknown) => new Uint8Array(Buffer.from(JSON.stringify(v)));
const parse = <T>(d: Uint8Array): T => JSON.parse(Buffer.from(d).toString('utf8')) as T;

function entryRecord(e: Entry): WalEntry {
  return { index: e.index, term: e.term, kind: KIND_OF[e.type], data: e.data };
}

function hardStateRecord(h: HardState): WalEntry {
  return { index: 0, term: h.term, kind: RECORD_HARD_STATE, data: json(h) };
}

/** Snapshot data is a reference the transport resolves; only the meta is logged. */
function snapshotRecord(s: Snapshot): WalEntry {
  return { index: s.meta.index, term: s.meta.term, kind: RECORD_SNAPSHOT, data: json(s.meta) };
}

export class DiskStorage {
  private constructor(
    readonly storage: MemoryStorage,
    private readonly wal: Wal,
  ) {}

  /**
   * Opens the log under `dir`. A node with no log that is one of the initial
   * voters starts from the bootstrap snapshot; one that is not (a joiner)
   * starts empty and waits for a snapshot from the leader.
   */
  static open(dir: string, initialVoters: readonly string[] | null): DiskStorage {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { wal, entries } = Wal.open(path.join(dir, 'log'));
    const storage = new MemoryStorage();
    let hard: HardState | null = null;
    for (const r of entries) {
      if (r.kind === RECORD_SNAPSHOT) storage.applySnapshot({ meta: parse(r.data), data: new Uint8Array(0) });
      else if (r.kind === RECORD_HARD_STATE) hard = parse<HardState>(r.data);
      else {
        const type = TYPE_OF[r.kind];
        if (type === undefined) throw new Error(`unknown log record kind ${r.kind}`);
        storage.append([{ index: r.index, term: r.term, type, data: r.data }]);
      }
    }
    const disk = new DiskStorage(storage, wal);
    if (entries.length === 0 && initialVoters) {
      const snap = bootstrapSnapshot(initialVoters);
      const h: HardState = { term: 1, vote: '', commit: 1 };
      storage.applySnapshot(snap);
      storage.setHardState(h);
      wal.rewrite([snapshotRecord(snap), hardStateRecord(h)]);
    } else if (hard) {
      storage.setHardState(hard);
    }
    return disk;
  }

  /**
   * Persists what a Ready asks to persist; resolves when it is durable (if it
   * had to be). The in-memory log takes the records only once the file did,
   * so a write that failed for lack of space (and was undone, see
   * Wal.append) can simply be called again with the same Ready.
   */
  async persist(rd: Ready): Promise<void> {
    const records: WalEntry[] = [];
    if (rd.snapshot) records.push(snapshotRecord(rd.snapshot));
    if (rd.entries.length > 0) records.push(...rd.entries.map(entryRecord));
    if (rd.hardState) records.push(hardStateRecord(rd.hardState));
    if (records.length > 0) await this.wal.append(records, rd.mustSync);
    if (rd.snapshot) this.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
  }

  /** After the core compacted its storage to `snap`: rewrite the file from that point. */
  rewriteFromSnapshot(): void {
    const st = this.storage;
    const snap = st.snapshot();
    const rest = st.lastIndex() > snap.meta.index ? st.entries(snap.meta.index + 1, st.lastIndex() + 1, Number.MAX_SAFE_INTEGER) : [];
    this.wal.rewrite([snapshotRecord(snap), ...rest.map(entryRecord), hardStateRecord(st.hardState())]);
  }

  get bytes(): number {
    return this.wal.bytes;
  }

  close(): void {
    this.wal.close();
  }
}
