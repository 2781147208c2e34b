// The checksummed log file and the single-node commit seam over it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SingleNodeReplicator } from '../../../server/raft/single-node.js';
import { ENTRY_NORMAL, Wal, WalCorruptError } from '../../../server/raft/wal.js';
import { StateReader } from '../../../server/store/queries.js';
import { StateMachine } from '../../../server/store/state-machine.js';

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

describe('SingleNodeReplicator', () => {
  const cmd = (name: string, version: number) => ({
    t: 'secret.put' as const, v: 1 as const, name, version, expected_current: version - 1, cas: null,
    ciphertext: new Uint8Array([1]), nonce: new Uint8Array(24), wrapped_dek: new Uint8Array([2]),
    kms_key_id: 'k', created_at: 't', created_by: 'u',
  });

  it('group-commits concurrent proposals and applies them in order', async () => {
    const dir = tmp();
    const sm = new StateMachine(dir);
    const rep = new SingleNodeReplicator({ nodeId: 'n', address: 'x:1', dataDir: dir, sm });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => rep.propose(cmd(`s${i}`, 1))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(rep.status()).toMatchObject({ commit_index: 50, applied_index: 50, ready: true, leader_id: 'n' });
    await rep.close();
    sm.close();
  });

  it('replays committed entries that state.db never saw', async () => {
    const dir = tmp();
    const sm = new StateMachine(dir);
    const rep = new SingleNodeReplicator({ nodeId: 'n', address: 'x:1', dataDir: dir, sm });
    await rep.propose(cmd('kept', 1));
    await rep.propose(cmd('kept', 2));
    await rep.close();
    sm.close();
    // Simulate losing state.db entirely (e.g. its unsynced WAL): the log alone rebuilds it.
    for (const f of fs.readdirSync(dir)) if (f.startsWith('state.db')) fs.rmSync(path.join(dir, f));
    const sm2 = new StateMachine(dir);
    const rep2 = new SingleNodeReplicator({ nodeId: 'n', address: 'x:1', dataDir: dir, sm: sm2 });
    expect(new StateReader(sm2.db).currentVersion('kept')).toBe(2);
    expect((await rep2.propose(cmd('kept', 3))).ok).toBe(true);
    expect(rep2.status().commit_index).toBe(3);
    await rep2.close();
    sm2.close();
  });

  it('stops and reports not ready at an entry it cannot decode', async () => {
    const dir = tmp();
    fs.mkdirSync(path.join(dir, 'raft'));
    const { wal } = Wal.open(path.join(dir, 'raft', 'log'));
    await wal.append([entry(1, JSON.stringify({ t: 'secret.teleport', v: 9 }))]);
    wal.close();
    const sm = new StateMachine(dir);
    let fatal: Error | null = null;
    const rep = new SingleNodeReplicator({ nodeId: 'n', address: 'x:1', dataDir: dir, sm, onFatal: (e) => (fatal = e) });
    expect(fatal).not.toBeNull();
    expect(rep.status()).toMatchObject({ ready: false, leader_id: null, applied_index: 0 });
    await expect(rep.propose(cmd('a', 1))).rejects.toThrow();
    await rep.close();
    sm.close();
  });
});
