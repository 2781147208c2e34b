// state.db's checkpoint thread (server/store/wal-checkpointer.ts) over real
// SQLite files: it copies the log back while applies go on, and steps aside
// whenever the owner needs the files to itself (a TRUNCATE checkpoint, a
// snapshot replacing state.db, shutdown), after which everything applied is
// in state.db and nothing is lost or left open.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCommand } from '../../../server/store/commands.js';
import { StateMachine } from '../../../server/store/state-machine.js';
import { until } from '../../helpers/wait.js';
import { putCommand } from './fixture.js';

const dirs: string[] = [];
const open: StateMachine[] = [];
afterEach(() => {
  open.splice(0).forEach((m) => m.close());
  dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});

function machine(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-ckpt-')), restartDelayMs?: number): { sm: StateMachine; dir: string } {
  if (!dirs.includes(dir)) dirs.push(dir);
  const sm = new StateMachine(dir, { checkpointThread: true, ...(restartDelayMs !== undefined ? { checkpointRestartDelayMs: restartDelayMs } : {}) });
  open.push(sm);
  return { sm, dir };
}

/** Applies `count` versions of `name`, each in its own transaction (as at one client), yielding between them. */
async function applyVersions(sm: StateMachine, name: string, from: number, count: number): Promise<void> {
  let index = sm.appliedIndex().index;
  for (let v = from; v < from + count; v++) {
    sm.batch(() => sm.applyEntry(++index, 1, encodeCommand(putCommand(name, v, v - 1))));
    await new Promise((r) => setImmediate(r));
  }
}

const currentVersion = (file: string, name: string): unknown => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT current_version FROM secrets WHERE name = ?').pluck().get(name);
  } finally {
    db.close();
  }
};

describe('state.db checkpoint thread', () => {
  it('copies the log back into state.db while applies go on', async () => {
    const { sm } = machine();
    await applyVersions(sm, 'a', 1, 200);
    await until('a checkpoint by the thread', async () => (sm.checkpointer!.completed > 0 ? true : null));
    expect(sm.checkpointer!.running).toBe(true);
  });

  it('steps aside for the TRUNCATE checkpoint before compaction: state.db alone holds everything, the log is empty', async () => {
    const { sm, dir } = machine();
    await applyVersions(sm, 'a', 1, 100);
    sm.checkpoint();
    expect(fs.statSync(path.join(dir, 'state.db-wal')).size).toBe(0);
    // What a crash right now would leave: state.db without its log.
    const copy = path.join(dir, 'copy.db');
    fs.copyFileSync(path.join(dir, 'state.db'), copy);
    expect(currentVersion(copy, 'a')).toBe(100);
    // And it goes on after.
    await applyVersions(sm, 'a', 101, 50);
    await until('another checkpoint by the thread', async () => (sm.checkpointer!.completed > 0 ? true : null));
  });

  it('steps aside while a snapshot replaces state.db, then checkpoints the new one', async () => {
    const source = machine().sm;
    await applyVersions(source, 'from-image', 1, 3);
    const { sm, dir } = machine();
    await applyVersions(sm, 'before', 1, 80);
    const image = path.join(dir, 'image.db');
    source.writeImage(image);
    sm.restoreImage(image);
    expect(sm.db.prepare('SELECT name FROM secrets ORDER BY name').pluck().all()).toEqual(['from-image']);
    const done = sm.checkpointer!.completed;
    await applyVersions(sm, 'from-image', 4, 100);
    await until('a checkpoint of the new state.db', async () => (sm.checkpointer!.completed > done ? true : null));
    sm.close();
    open.splice(open.indexOf(sm), 1);
    expect(currentVersion(path.join(dir, 'state.db'), 'from-image')).toBe(103);
    expect(currentVersion(path.join(dir, 'state.db'), 'before')).toBeUndefined();
  });

  it('a thread that fails is reported, and a new one takes over after a pause', async () => {
    const { sm } = machine(undefined, 50);
    const failures: string[] = [];
    sm.onCheckpointThreadFailed = (err) => failures.push(err.message);
    const thread = () => (sm.checkpointer as unknown as { worker: { terminate(): Promise<number> } | null }).worker;
    await thread()!.terminate();
    await until('the failure reported', async () => (failures.length === 1 ? true : null));
    expect(failures[0]).toMatch(/checkpoint thread exited/);
    expect(sm.checkpointer!.running).toBe(false);
    await until('a new thread', async () => (sm.checkpointer!.running ? true : null));
    expect(sm.checkpointer!.restarts).toBe(1);
    const before = sm.checkpointer!.completed;
    await applyVersions(sm, 'a', 1, 100);
    await until('a checkpoint by the new thread', async () => (sm.checkpointer!.completed > before ? true : null));
  });

  it('no new thread starts once the state machine is closed', async () => {
    const { sm } = machine(undefined, 50);
    const thread = () => (sm.checkpointer as unknown as { worker: { terminate(): Promise<number> } | null }).worker;
    await thread()!.terminate();
    await until('the thread gone', async () => (sm.checkpointer!.running ? null : true));
    sm.close();
    open.splice(open.indexOf(sm), 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(sm.checkpointer!.running).toBe(false);
    expect(sm.checkpointer!.restarts).toBe(0);
  });

  it('ends with close(): the thread stops and a reopened state.db has every applied version', async () => {
    const { sm, dir } = machine();
    await applyVersions(sm, 'a', 1, 120);
    const applied = sm.appliedIndex().index;
    sm.close();
    open.splice(open.indexOf(sm), 1);
    expect(sm.checkpointer!.running).toBe(false);
    const again = machine(dir).sm;
    expect(again.db.prepare('SELECT current_version FROM secrets WHERE name = ?').pluck().get('a')).toBe(120);
    expect(again.appliedIndex().index).toBe(applied);
  });
});
