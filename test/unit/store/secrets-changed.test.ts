// The state machine tells blocking queries which secrets changed, with their
// entry's index, only once the transaction committed; a replaced state is a reset.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeCommand } from '../../../server/store/commands.js';
import { putCommand, stateMachines } from './fixture.js';

const fresh = stateMachines('coffer-sm-watch-');

const T = '2026-01-01T00:00:00.000Z';
const put = (name: string, version: number, expected: number) => encodeCommand(putCommand(name, version, expected));
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
    const image = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-img-')), 'image.db');
    sm.writeImage(image);
    const seen: unknown[] = [];
    sm.onSecretsChanged = (c) => seen.push(c);
    sm.restoreImage(image);
    expect(seen).toEqual([{ reset: 7 }]);
  });
});
