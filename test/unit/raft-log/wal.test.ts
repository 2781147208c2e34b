// The checksummed log file and the single-node commit seam over it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ENTRY_NORMAL, Wal, WalCorruptError } from '../../../server/raft/wal.js';

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-wal-'));
  dirs.push(d);
  return d;
}
afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const entry = (index: number, text: string) => ({ index, term: 1, kind: ENTRY_NORMAL, data: new Uint8Array(Buffer.from(text)) });

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
});
