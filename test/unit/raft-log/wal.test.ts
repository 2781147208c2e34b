// The checksummed log file and the single-node commit seam over it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ENTRY_NORMAL, Wal, WalCorruptError, WalSyncError } from '../../../server/raft/wal.js';
import { isNoSpace } from '../../../server/storage/write-guard.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-wal-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  vi.restoreAllMocks();
  dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

const entry = (index: number, text: string) => ({ index, term: 1, kind: ENTRY_NORMAL, data: new Uint8Array(Buffer.from(text)) });

/** fs.writeSync writes half of the first call, then finds the volume full; `calls()` counts the calls. */
function halfThenFull(): { calls: () => number; restore: () => void } {
  const real = fs.writeSync;
  let calls = 0;
  const spy = vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, buf: Buffer, off: number, len: number, pos: number) => {
    calls++;
    if (calls === 1) return real(fd, buf, off, Math.floor(len / 2), pos);
    throw enospc();
  }) as unknown as typeof fs.writeSync);
  return { calls: () => calls, restore: () => spy.mockRestore() };
}

describe('Wal', () => {
  it('reads back what it appended', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one'), entry(2, 'two')]);
    await wal.append([entry(3, 'three')]);
    wal.close();
    const { wal: again, entries } = Wal.open(file);
    again.close();
    expect(entries.map((e) => [e.index, Buffer.from(e.data).toString()])).toEqual([[1, 'one'], [2, 'two'], [3, 'three']]);
  });

  it('cuts a torn tail left by a crash mid-write', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one'), entry(2, 'two')]);
    wal.close();
    const full = fs.statSync(file).size;
    fs.truncateSync(file, full - 2);
    const { wal: w2, entries } = Wal.open(file);
    expect(entries.map((e) => e.index)).toEqual([1]);
    await w2.append([entry(2, 'two again')]);
    w2.close();
    expect(Wal.open(file).entries.map((e) => Buffer.from(e.data).toString())).toEqual(['one', 'two again']);
  });

  it.each([
    ['payload', 30],
    ['length', 0],
    ['index', 14],
  ])('refuses to open when record 1 has a flipped %s byte', async (_what, offset) => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one'), entry(2, 'two')]);
    wal.close();
    const buf = fs.readFileSync(file);
    buf[offset] = buf[offset]! ^ 0x40;
    fs.writeFileSync(file, buf);
    expect(() => Wal.open(file)).toThrow(WalCorruptError);
  });

  it('treats a zero-filled tail as torn, not corrupt', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one')]);
    wal.close();
    fs.appendFileSync(file, Buffer.alloc(100));
    const { wal: w2, entries } = Wal.open(file);
    w2.close();
    expect(entries.map((e) => e.index)).toEqual([1]);
    expect(fs.statSync(file).size).toBe(32);
  });

  it('undoes a write that a full volume cut short, so the same records can be appended again', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one')]);
    const before = fs.statSync(file).size;

    // The volume takes part of the buffer, then nothing more (what a filling disk does).
    const real = fs.write;
    let calls = 0;
    vi.spyOn(fs, 'write').mockImplementation(((fd: number, buf: Buffer, off: number, len: number, pos: number, cb: (err: Error | null, n?: number) => void) => {
      calls++;
      if (calls === 1) return real(fd, buf, off, Math.floor(len / 2), pos, cb as never);
      process.nextTick(cb, enospc());
    }) as unknown as typeof fs.write);
    const failed = wal.append([entry(2, 'two'), entry(3, 'three'.repeat(100))]);
    await expect(failed).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(isNoSpace(await failed.catch((e: unknown) => e))).toBe(true);
    expect(calls).toBe(2);
    expect(fs.statSync(file).size).toBe(before); // the half-written records are gone
    expect(wal.bytes).toBe(before);

    vi.mocked(fs.write).mockRestore(); // space again: the same records go in once, intact
    await wal.append([entry(2, 'two'), entry(3, 'three'.repeat(100))]);
    wal.close();
    const { wal: again, entries } = Wal.open(file);
    again.close();
    expect(entries.map((e) => e.index)).toEqual([1, 2, 3]);
  });

  it('an unsynced small append (a commit index moving) is written on the event loop, and undone alike when the volume is full', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one')]);
    const before = fs.statSync(file).size;
    const pooled = vi.spyOn(fs, 'write');
    const onLoop = halfThenFull();
    const failed = wal.append([entry(2, 'two')], false);
    await expect(failed).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(onLoop.calls()).toBe(2);
    expect(fs.statSync(file).size).toBe(before); // the half-written record is gone
    onLoop.restore();

    await wal.append([entry(2, 'two')], false);
    expect(fs.statSync(file).size).toBeGreaterThan(before); // in the file as soon as append resolves
    expect(pooled).not.toHaveBeenCalled(); // no hand-off to the thread pool
    await wal.append([entry(3, 'x'.repeat(8192))], false); // larger: through the pool as before
    expect(pooled).toHaveBeenCalled();
    wal.close();
    const { wal: again, entries } = Wal.open(file);
    again.close();
    expect(entries.map((e) => e.index)).toEqual([1, 2, 3]);
  });

  it('a lone synced append after lone ones is written and fdatasynced on the event loop, after the sends queued before it', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    for (let i = 1; i <= 3; i++) await wal.append([entry(i, `lone ${i}`)]);
    const pooledWrite = vi.spyOn(fs, 'write');
    const pooledSync = vi.spyOn(fs, 'fdatasync');
    const order: string[] = [];
    const realWrite = fs.writeSync;
    vi.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      order.push('write');
      return (realWrite as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    const syncOnLoop = vi.spyOn(fs, 'fdatasyncSync');
    queueMicrotask(() => order.push('send')); // what the transport does for this Ready's early sends
    await wal.append([entry(4, 'lone 4')]);
    expect(order).toEqual(['send', 'write']);
    expect(syncOnLoop).toHaveBeenCalledTimes(1);
    expect(pooledWrite).not.toHaveBeenCalled();
    expect(pooledSync).not.toHaveBeenCalled();

    // A batch (as under load) goes to the pool, and the row starts again.
    await wal.append([entry(5, 'x'.repeat(4096))]);
    await wal.append([entry(6, 'lone 6')]);
    expect(pooledSync).toHaveBeenCalledTimes(2);
    expect(syncOnLoop).toHaveBeenCalledTimes(1);
    wal.close();
    const { wal: again, entries } = Wal.open(file);
    again.close();
    expect(entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('on the event loop too, a full volume undoes the write and a failed fdatasync is a WalSyncError', async () => {
    const file = path.join(tmp(), 'log');
    const { wal } = Wal.open(file);
    for (let i = 1; i <= 3; i++) await wal.append([entry(i, `lone ${i}`)]);
    const before = fs.statSync(file).size;
    const short = halfThenFull();
    await expect(wal.append([entry(4, 'lone 4')])).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(short.calls()).toBe(2);
    expect(fs.statSync(file).size).toBe(before);
    short.restore();

    vi.spyOn(fs, 'fdatasyncSync').mockImplementation(() => {
      throw Object.assign(new Error('EIO: fdatasync'), { code: 'EIO' });
    });
    const err = await wal.append([entry(4, 'lone 4')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WalSyncError);
    expect((err as Error).message).toBe('EIO on fdatasync');
    expect(isNoSpace(err)).toBe(false);
    wal.close();
  });

  it('reports a failed fdatasync as a WalSyncError, never as a full volume to retry', async () => {
    const { wal } = Wal.open(path.join(tmp(), 'log'));
    for (const code of ['EIO', 'ENOSPC']) {
      vi.spyOn(fs, 'fdatasync').mockImplementation(((_fd: number, cb: (err: Error) => void) => {
        process.nextTick(cb, Object.assign(new Error(`${code}: fdatasync`), { code }));
      }) as unknown as typeof fs.fdatasync);
      const err = await wal.append([entry(1, 'one')]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WalSyncError);
      expect((err as Error).message).toBe(`${code} on fdatasync`);
      expect(isNoSpace(err)).toBe(false);
      vi.restoreAllMocks();
    }
    wal.close();
  });

  it('leaves the log as it was, and no temporary copy, when a rewrite finds no room', async () => {
    const dir = tmp();
    const file = path.join(dir, 'log');
    const { wal } = Wal.open(file);
    await wal.append([entry(1, 'one'), entry(2, 'two')]);
    const before = fs.readFileSync(file);
    vi.spyOn(fs, 'writeSync').mockImplementation(() => {
      throw enospc();
    });
    expect(() => wal.rewrite([entry(2, 'two')])).toThrow(/ENOSPC/);
    vi.restoreAllMocks();
    expect(fs.readdirSync(dir)).toEqual(['log']);
    expect(fs.readFileSync(file)).toEqual(before);
    await wal.append([entry(3, 'three')]); // still usable
    wal.close();
    const reopened = Wal.open(file);
    reopened.wal.close();
    expect(reopened.entries.map((e) => e.index)).toEqual([1, 2, 3]);
  });
});
