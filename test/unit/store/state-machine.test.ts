// The state machine applied over real SQLite files: determinism, refusals, and
// that an undecodable command changes nothing.
import { describe, expect, it } from 'vitest';
import { capabilities, decodeCommand, encodeCommand, UnknownCommandError, type Command } from '../../../server/store/commands.js';
import { StateReader } from '../../../server/store/queries.js';
import { StateMachine } from '../../../server/store/state-machine.js';
import { putCommand, stateMachines } from './fixture.js';

const fresh = stateMachines();
const put = putCommand;
const bytes = (s: string) => new Uint8Array(Buffer.from(s));

const T = '2026-01-01T00:00:00.000Z';
const R1 = '2026-01-02T00:00:00.000Z';
const R2 = '2026-01-03T00:00:00.000Z';
const script: Command[] = [
  put('a', 1, 0),
  put('a', 2, 1),
  put('a', 2, 1), // stale: loses the race
  put('b', 1, 0, 0),
  put('b', 2, 1, 5), // cas mismatch
  { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['a'], actions: ['read_metadata'] }] },
  { t: 'token.create', v: 1, name: 't1', token_sha256: bytes('h'.repeat(32)), role: 'reader', created_at: T, expires_at: null },
  { t: 'token.create', v: 1, name: 't1', token_sha256: bytes('i'.repeat(32)), role: 'reader', created_at: T, expires_at: null },
  { t: 'token.create', v: 1, name: 't2', token_sha256: bytes('j'.repeat(32)), role: 'nope', created_at: T, expires_at: null },
  { t: 'token.revoke', v: 1, name: 't1', revoked_at: R1 },
  { t: 'token.revoke', v: 1, name: 't1', revoked_at: R2 },
  { t: 'secret.delete', v: 1, name: 'b', at: T },
  { t: 'secret.delete', v: 1, name: 'b', at: T },
  { t: 'role.put', v: 1, name: 'admin', rules: [] },
  { t: 'role.delete', v: 2, name: 'admin', at: T },
  { t: 'token.bootstrap', v: 1, token_sha256: bytes('k'.repeat(32)), created_at: T },
  { t: 'token.bootstrap', v: 1, token_sha256: bytes('l'.repeat(32)), created_at: T },
];

function dump(sm: StateMachine): unknown {
  return ['secrets', 'secret_versions', 'roles', 'tokens', 'applied'].map((t) => sm.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all());
}

describe('StateMachine', () => {
  it('applies the same log to the same state on every node, with deterministic results', () => {
    const a = fresh();
    const b = fresh();
    const ra = script.map((c, i) => a.applyEntry(i + 1, 1, encodeCommand(c)));
    const rb = script.map((c, i) => b.applyEntry(i + 1, 1, encodeCommand(c)));
    expect(ra).toEqual(rb);
    expect(dump(a)).toEqual(dump(b));
    expect(ra.map((r) => (r.ok ? 'ok' : r.code))).toEqual([
      'ok', 'ok', 'stale', 'ok', 'cas_mismatch', 'ok', 'ok', 'conflict', 'bad_request', 'ok', 'ok', 'ok', 'not_found',
      'conflict', 'conflict', 'ok', 'ok',
    ]);
    expect(ra.at(-1)).toEqual({ ok: true, created: false, note: 'exists' });
    expect(a.appliedIndex()).toEqual({ index: script.length, term: 1 });
    const reader = new StateReader(a.db);
    expect(reader.currentVersion('a')).toBe(2);
    expect(reader.currentVersion('b')).toBe(0);
    expect(reader.listTokens().find((t) => t.name === 't1')?.revoked_at).toBe(R1);
    expect(reader.role('admin')?.builtin).toBe(true);
  });

  it('refuses a secret.put v2 whose write mode the state it lands on does not allow', () => {
    const sm = fresh();
    const v2 = (name: string, version: number, expected: number, mode: 'create' | 'update' | 'any'): Command => ({ ...(put(name, version, expected) as Extract<Command, { t: 'secret.put'; v: 1 }>), v: 2, mode });
    expect(sm.applyEntry(1, 1, encodeCommand(v2('a', 1, 0, 'create')))).toEqual({ ok: true, version: 1, created: true });
    const before = dump(sm);
    // The create-only writer lost the race: the name exists now. Refused even though its version would be next.
    expect(sm.applyEntry(2, 1, encodeCommand(v2('a', 2, 1, 'create')))).toMatchObject({ ok: false, code: 'forbidden' });
    expect(sm.applyEntry(3, 1, encodeCommand(v2('b', 1, 0, 'update')))).toMatchObject({ ok: false, code: 'forbidden' });
    expect((dump(sm) as unknown[]).slice(0, -1)).toEqual((before as unknown[]).slice(0, -1));
    expect(sm.applyEntry(4, 1, encodeCommand(v2('a', 2, 1, 'update')))).toEqual({ ok: true, version: 2, created: false });
    expect(sm.applyEntry(5, 1, encodeCommand(v2('c', 1, 0, 'any')))).toEqual({ ok: true, version: 1, created: true });
  });

  it('keeps a revoked bootstrap token revoked', () => {
    const sm = fresh();
    sm.applyEntry(1, 1, encodeCommand({ t: 'token.bootstrap', v: 1, token_sha256: bytes('k'.repeat(32)), created_at: T }));
    sm.applyEntry(2, 1, encodeCommand({ t: 'token.revoke', v: 1, name: 'bootstrap-admin', revoked_at: R1 }));
    const r = sm.applyEntry(3, 1, encodeCommand({ t: 'token.bootstrap', v: 1, token_sha256: bytes('k'.repeat(32)), created_at: R2 }));
    expect(r).toEqual({ ok: true, created: false, note: 'revoked' });
    expect(new StateReader(sm.db).listTokens()[0]?.revoked_at).toBe(R1);
  });

  it('refuses an unknown command type or a newer version without changing anything', () => {
    const sm = fresh();
    sm.applyEntry(1, 1, encodeCommand(put('a', 1, 0)));
    const before = dump(sm);
    const future = Buffer.from(JSON.stringify({ t: 'secret.put', v: 99, name: 'a' }));
    const alien = Buffer.from(JSON.stringify({ t: 'secret.teleport', v: 1 }));
    expect(() => sm.applyEntry(2, 1, future)).toThrow(UnknownCommandError);
    expect(() => sm.applyEntry(2, 1, alien)).toThrow(UnknownCommandError);
    expect(() => sm.applyEntry(2, 1, Buffer.from('{not json'))).toThrow(UnknownCommandError);
    expect(() => sm.applyEntry(2, 1, Buffer.from('null'))).toThrow(UnknownCommandError);
    expect(() => sm.applyEntry(2, 1, Buffer.from('[1]'))).toThrow(UnknownCommandError);
    expect(dump(sm)).toEqual(before);
  });

  it('round-trips binary fields and advertises every command type', () => {
    const cmd = put('x/y', 3, 2);
    expect(decodeCommand(encodeCommand(cmd))).toEqual(cmd);
    expect(capabilities()).toEqual(expect.arrayContaining(['secret.put@1', 'secret.put@2', 'token.bootstrap@1', 'role.delete@1', 'role.delete@2']));
  });
});

describe('StateReader auth cache (token and role rows kept between requests)', () => {
  const hash = (c: string) => bytes(c.repeat(32));
  const apply = (sm: StateMachine, index: number, cmd: Command) => sm.applyEntry(index, 1, encodeCommand(cmd));

  it('serves repeated lookups from memory, and sees every token and role change at once', () => {
    const sm = fresh();
    const reader = new StateReader(sm);
    apply(sm, 1, { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['a'], actions: ['read_metadata'] }] });
    apply(sm, 2, { t: 'token.create', v: 1, name: 't1', token_sha256: hash('h'), role: 'reader', created_at: T, expires_at: null });
    const first = reader.tokenByHash(hash('h'));
    expect(first).toMatchObject({ name: 't1', revoked_at: null });
    expect(reader.tokenByHash(hash('h'))).toBe(first); // the same cached row
    expect(reader.role('reader')?.rules).toEqual([{ paths: ['a'], actions: ['read_metadata'] }]);

    apply(sm, 3, { t: 'token.revoke', v: 1, name: 't1', revoked_at: R1 });
    expect(reader.tokenByHash(hash('h'))?.revoked_at).toBe(R1);
    apply(sm, 4, { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['b/*'], actions: ['read_metadata'] }] });
    expect(reader.role('reader')?.rules).toEqual([{ paths: ['b/*'], actions: ['read_metadata'] }]);
    apply(sm, 5, { t: 'role.delete', v: 1, name: 'reader' });
    expect(reader.role('reader')).toBeUndefined();
    // A secret write is not an auth change, and a token created afterwards is found.
    apply(sm, 6, put('a', 1, 0));
    apply(sm, 7, { t: 'token.create', v: 1, name: 't2', token_sha256: hash('j'), role: 'admin', created_at: T, expires_at: null });
    expect(reader.tokenByHash(hash('j'))?.name).toBe('t2');
  });

  it('does not remember tokens or roles that do not exist, and its rows cannot be changed by a caller', () => {
    const sm = fresh();
    const reader = new StateReader(sm);
    expect(reader.tokenByHash(hash('z'))).toBeUndefined();
    expect(reader.role('late-role')).toBeUndefined();
    // Inserted behind the reader's back (no command): a miss was not cached, so it is found.
    sm.db.prepare("INSERT INTO tokens (name, token_sha256, role, created_at) VALUES ('late', ?, 'admin', 'x')").run(hash('z'));
    sm.db.prepare("INSERT INTO roles (name, rules, builtin) VALUES ('late-role', '[]', 0)").run();
    expect(reader.tokenByHash(hash('z'))?.name).toBe('late');
    expect(reader.role('late-role')?.rules).toEqual([]);
    const row = reader.tokenByHash(hash('z'))!;
    expect(() => { (row as { revoked_at: string | null }).revoked_at = null; }).toThrow(TypeError);
    expect(() => { (reader.role('admin')!.rules as unknown[]).push({}); }).toThrow(TypeError);
  });
});
