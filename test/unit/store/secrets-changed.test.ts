// The state machine tells blocking queries which secrets changed, with their
// entry's index, only once the transaction committed; a replaced state is a reset.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCommand, type Command } from '../../../server/store/commands.js';
import { StateMachine } from '../../../server/store/state-machine.js';

const dirs: string[] = [];
const machines: StateMachine[] = [];
function fresh(): StateMachine {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-sm-watch-'));
  dirs.push(dir);
  const sm = new StateMachine(dir);
  machines.push(sm);
  return sm;
}
afterEach(() => {
  machines.splice(0).forEach((m) => m.close());
  dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
});

const bytes = (s: string) => new Uint8Array(Buffer.from(s));
const T = '2026-01-01T00:00:00.000Z';
function put(name: string, version: number, expected: number): Uint8Array {
  const c: Command = {
    t: 'secret.put', v: 1, name, version, expected_current: expected, cas: null,
    ciphertext: bytes(`ct-${name}-${version}`.padEnd(16, '.')), nonce: bytes('n'.repeat(24)), wrapped_dek: bytes('wd'),
    kms_key_id: 'local:test', created_at: T, created_by: 'tester',
  };
  return encodeCommand(c);
}
const del = (name: string) => encodeCommand({ t: 'secret.delete', v: 1, name, at: T });
const role = () => encodeCommand({ t: 'role.put', v: 1, name: 'r', rules: [] });

describe('StateMachine.onSecretsChanged', () => {
  it('reports applied puts and deletes after the batch commits, not refusals or other commands', () => {
    const sm = fresh();
    const seen: unknown[] = [];
    sm.onSecretsChanged = (c) => seen.push(structuredClone(c));
    sm.batch(() => {
      sm.applyEntry(1, 1, put('a', 1, 0));
      sm.applyEntry(2, 1, put('a', 1, 0)); // stale: refused
      sm.applyEntry(3, 1, role());
      sm.applyEntry(4, 1, del('a'));
      sm.applyEntry(5, 1, del('a')); // not found: refused
      expect(seen).toEqual([]); // nothing before the commit
    });
    expect(seen).toEqual([[{ name: 'a', index: 1 }, { name: 'a', index: 4 }]]);
    sm.applyEntry(6, 1, put('b', 1, 0)); // outside a batch: its own transaction
    expect(seen.at(-1)).toEqual([{ name: 'b', index: 6 }]);
  });

  it('says nothing of a batch that rolled back', () => {
    const sm = fresh();
    const seen: unknown[] = [];
    sm.onSecretsChanged = (c) => seen.push(c);
    expect(() =>
      sm.batch(() => {
        sm.applyEntry(1, 1, put('a', 1, 0));
        throw new Error('disk trouble');
      }),
    ).toThrow('disk trouble');
    expect(seen).toEqual([]);
    sm.batch(() => sm.applyEntry(1, 1, put('c', 1, 0)));
    expect(seen).toEqual([[{ name: 'c', index: 1 }]]);
  });

  it('reports a replaced state as a reset at its applied index', () => {
    const sm = fresh();
    sm.applyEntry(7, 1, put('a', 1, 0));
    const image = path.join(dirs[0]!, 'image.db');
    sm.writeImage(image);
    const seen: unknown[] = [];
    sm.onSecretsChanged = (c) => seen.push(c);
    sm.restoreImage(image);
    expect(seen).toEqual([{ reset: 7 }]);
  });
});
