// StateReader.listNames (GET /v1/metadata?prefix=) against a plain model: the
// names after a cursor that start with a prefix, in order, at most a limit.
// Names chosen around the prefix's bounds ('app' next to 'app-x', 'app/a',
// 'app0', 'apq'), where a range scan bounded by the prefix would go wrong first.
import { describe, expect, it } from 'vitest';
import { encodeCommand } from '../../../server/store/commands.js';
import { StateReader } from '../../../server/store/queries.js';
import { putCommand, stateMachines } from './fixture.js';

const fresh = stateMachines();
const NAMES = ['ap', 'app', 'app-x', 'app.x', 'app/a', 'app/a/b', 'app/b', 'app/z', 'app0', 'app0/a', 'appz', 'apq', 'b', 'zz/app'];

function model(prefix: string, after: string, limit: number): string[] {
  return [...NAMES].sort().filter((n) => n.startsWith(prefix) && n > after).slice(0, limit);
}

describe('listing names by prefix', () => {
  it('matches the model for every prefix, cursor and page size', () => {
    const sm = fresh();
    NAMES.forEach((n, i) => sm.applyEntry(i + 1, 1, encodeCommand(putCommand(n, 1, 0))));
    const reader = new StateReader(sm.db);
    const prefixes = ['', 'a', 'ap', 'app', 'app/', 'app/a', 'app/a/', 'app0', 'apq', 'b', 'c', 'z', 'zz/'];
    const cursors = ['', 'a', 'ap', 'app', 'app/', 'app/a', 'app/b', 'app/zz', 'app0', 'apq', 'zzz'];
    let compared = 0;
    for (const prefix of prefixes) {
      for (const after of cursors) {
        for (const limit of [1, 2, 3, 100]) {
          expect(reader.listNames(prefix, after, limit), JSON.stringify({ prefix, after, limit })).toEqual(model(prefix, after, limit));
          compared++;
        }
      }
    }
    expect(compared).toBe(prefixes.length * cursors.length * 4);
    expect(reader.listNames('app/', '', 100)).toEqual(['app/a', 'app/a/b', 'app/b', 'app/z']);
  });
});
