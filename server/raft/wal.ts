// Append-only, checksummed log file of committed entries.
//
// Record: u32 payload length | u32 crc32(length) | u32 crc32(body) | body
// body = u64 index | u64 term | u8 kind | payload
// The length has its own checksum so a flipped length cannot pass for a torn
// tail. A record cut short at the end of the file (a crash mid-write), or a
// zero-filled tail, is cut off on open; any other bad record is corruption and
// refuses to open.
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncFolder } from '../storage/durable-files.js';

export const ENTRY_NORMAL = 0;
export const ENTRY_NOOP = 1;
export const ENTRY_CONF_CHANGE = 2;
/** Raft hard state (JSON); the last one in the file wins. */
export const RECORD_HARD_STATE = 3;
/** Snapshot metadata (JSON); entries before it in the file are superseded. */
export const RECORD_SNAPSHOT = 4;

export interface WalEntry {
  index: number;
  term: number;
  kind: number;
  data: Uint8Array;
}

const PREFIX = 4 + 4 + 4;
const HEADER = PREFIX + 8 + 8 + 1;

const lengthCrc = (len: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(len, 0);
  return crc32(b);
};

export class WalCorruptError extends Error {
  override readonly name = 'WalCorruptError';
}

/** The log's fdatasync failed (or a failed write could not be undone): what is on disk is unknown. */
export class WalSyncError extends Error {
  override readonly name = 'WalSyncError';
}

/**
 * A write without an fdatasync after it (a Ready that only moves the commit
 * index) is a copy into the page cache: up to this size it is done on the
 * event loop, which saves a hand-off to the thread pool and back per commit.
 */
const INLINE_WRITE_MAX_BYTES = 4096;

/**
 * One request at a time, a node's synced append is one small entry, and the
 * thread pool round trips (write, then fdatasync: four hand-offs, each
 * waiting for a core on a busy machine) cost more than the disk wait itself.
 * Such an append, when the ones before it were lone too, is written and
 * fdatasynced on the event loop. Under load appends carry batches and go to
 * the pool, where a loop blocked on the disk would stall every other request
 * (the audit fast path's rule, server/audit/fast-path.ts).
 */
const LONE_SYNC_MAX_BYTES = 2048;
const LONE_IN_A_ROW = 3;

function codeOf(err: unknown): string {
  return String((err as NodeJS.ErrnoException).code ?? (err as Error).message);
}

const syncFailed = (err: unknown) => new WalSyncError(`${codeOf(err)} on fdatasync`);

/** writeAll on the event loop: for a small write with no fdatasync after it (a page-cache copy, no disk wait). */
function writeAllNow(fd: number, buf: Buffer, position: number): void {
  for (let off = 0; off < buf.length; ) {
    const n = fs.writeSync(fd, buf, off, buf.length - off, position + off);
    if (n === 0) throw Object.assign(new Error('ENOSPC: log write made no progress'), { code: 'ENOSPC' });
    off += n;
  }
}

/** fs.write may write less than asked (a volume filling up): keep writing until done or an error. */
async function writeAll(fd: number, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await new Promise<number>((resolve, reject) => {
      fs.write(fd, buf, off, buf.length - off, position + off, (err, written) => (err ? reject(err) : resolve(written)));
    });
    if (n === 0) throw Object.assign(new Error('ENOSPC: log write made no progress'), { code: 'ENOSPC' });
    off += n;
  }
}

export function encodeRecord(e: WalEntry): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + e.data.byteLength);
  buf.writeUInt32LE(e.data.byteLength, 0);
  buf.writeUInt32LE(lengthCrc(e.data.byteLength), 4);
  buf.writeBigUInt64LE(BigInt(e.index), PREFIX);
  buf.writeBigUInt64LE(BigInt(e.term), PREFIX + 8);
  buf.writeUInt8(e.kind, PREFIX + 16);
  buf.set(e.data, HEADER);
  buf.writeUInt32LE(crc32(buf.subarray(PREFIX)), 8);
  return buf;
}

/** Reads every intact record; returns them and the byte length of the intact prefix. */
export function readRecords(buf: Buffer): { entries: WalEntry[]; goodLength: number } {
  const entries: WalEntry[] = [];
  let off = 0;
  const zeroTail = (from: number) => buf.subarray(from).every((b) => b === 0);
  while (off < buf.length) {
    if (buf.length - off < HEADER) break; // torn header
    const len = buf.readUInt32LE(off);
    if (lengthCrc(len) !== buf.readUInt32LE(off + 4)) {
      if (zeroTail(off)) break;
      throw new WalCorruptError(`log record at byte ${off} has a corrupt length`);
    }
    const end = off + HEADER + len;
    if (end > buf.length) break; // torn payload
    if (crc32(buf.subarray(off + PREFIX, end)) !== buf.readUInt32LE(off + 8)) {
      if (end === buf.length) break; // last record half-written
      throw new WalCorruptError(`log record at byte ${off} fails its checksum`);
    }
    entries.push({
      index: Number(buf.readBigUInt64LE(off + PREFIX)),
      term: Number(buf.readBigUInt64LE(off + PREFIX + 8)),
      kind: buf.readUInt8(off + PREFIX + 16),
      data: new Uint8Array(buf.subarray(off + HEADER, end)),
    });
    off = end;
  }
  return { entries, goodLength: off };
}

export class Wal {
  private fd: number;
  private size: number;
  /** Synced appends of at most LONE_SYNC_MAX_BYTES in a row, this one excluded. */
  private loneRow = 0;

  private constructor(readonly file: string, fd: number, size: number) {
    this.fd = fd;
    this.size = size;
  }

  /** Opens (creating) the log, cutting a torn tail, and returns the intact entries. */
  static open(file: string): { wal: Wal; entries: WalEntry[] } {
    const buf = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
    const { entries, goodLength } = readRecords(buf);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    if (goodLength < buf.length) {
      fs.ftruncateSync(fd, goodLength);
      fs.fsyncSync(fd);
    }
    return { wal: new Wal(file, fd, goodLength), entries };
  }

  get bytes(): number {
    return this.size;
  }

  /**
   * Appends records and, when `sync`, makes them durable with one fdatasync
   * (group commit). A write that fails (ENOSPC, or cut short by it) is undone:
   * the file is truncated back to where it was, so the caller may retry the
   * same records once there is room. A failed fdatasync is a WalSyncError and
   * must not be retried: the kernel may have dropped the pages it could not
   * write, and a later fsync would report success for them.
   */
  async append(entries: readonly WalEntry[], sync = true): Promise<void> {
    const buf = Buffer.concat(entries.map(encodeRecord));
    const onLoop = sync ? this.loneSyncedAppend(buf.length) : buf.length <= INLINE_WRITE_MAX_BYTES;
    // Let sends queued for this Ready (a microtask in the transport) leave before the loop blocks on the disk.
    if (onLoop && sync) await null;
    try {
      if (onLoop) writeAllNow(this.fd, buf, this.size);
      else await writeAll(this.fd, buf, this.size);
    } catch (err) {
      try {
        fs.ftruncateSync(this.fd, this.size);
      } catch (undo) {
        throw new WalSyncError(`${codeOf(err)} on write, then ${codeOf(undo)} undoing it`);
      }
      throw err;
    }
    this.size += buf.length;
    if (!sync) return;
    if (onLoop) {
      try {
        fs.fdatasyncSync(this.fd);
      } catch (err) {
        throw syncFailed(err);
      }
    } else {
      await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(syncFailed(err)) : resolve())));
    }
  }

  /** Counts a synced append of `bytes` into the row of lone ones; true when it is to be synced on the loop. */
  private loneSyncedAppend(bytes: number): boolean {
    const lone = bytes <= LONE_SYNC_MAX_BYTES;
    const onLoop = lone && this.loneRow >= LONE_IN_A_ROW;
    this.loneRow = lone ? this.loneRow + 1 : 0;
    return onLoop;
  }

  /**
   * Replaces the whole file with `entries`, atomically (write, fsync, rename,
   * fsync the folder). A failure before the rename leaves the log as it was
   * (and no temporary copy behind); one after it is a WalSyncError.
   */
  rewrite(entries: readonly WalEntry[]): void {
    const tmp = `${this.file}.tmp`;
    const buf = Buffer.concat(entries.map(encodeRecord));
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      for (let off = 0; off < buf.length; ) {
        const n = fs.writeSync(fd, buf, off, buf.length - off);
        if (n === 0) throw Object.assign(new Error('ENOSPC: log write made no progress'), { code: 'ENOSPC' });
        off += n;
      }
      fs.fsyncSync(fd);
    } catch (err) {
      // The log itself is untouched until the rename; a half-written copy must not fill the volume.
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, this.file);
    // Either file is a valid log, but from here on a failure leaves this handle unusable.
    try {
      fsyncFolder(path.dirname(this.file));
      fs.closeSync(this.fd);
      this.fd = fs.openSync(this.file, fs.constants.O_RDWR);
    } catch (err) {
      throw new WalSyncError(`${codeOf(err)} after the rewrite's rename`);
    }
    this.size = buf.length;
  }

  /** Drops every record; the caller has made their effects durable elsewhere first. */
  reset(): void {
    fs.ftruncateSync(this.fd, 0);
    fs.fsyncSync(this.fd);
    this.size = 0;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
