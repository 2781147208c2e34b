// Applying is total: every command type, fed malformed variants the way an
// attacker with Raft access (or a buggy proposer) would send them, applies as
// a rejection on a real state.db: no exception, `bad_request`, the applied
// index advanced, no row changed. The leader's admission check refuses the
// same variants, and takes from a follower only what a follower builds.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BASELINE_COMMANDS,
  admitForwardedCommand,
  capabilities,
  decodeCommand,
  encodeCommand,
  InvalidCommandError,
  UnknownCommandError,
  type Command,
} from '../../../server/store/commands.js';
import { StateMachine } from '../../../server/store/state-machine.js';

const dirs: string[] = [];
function fresh(): StateMachine {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-cmd-'));
  dirs.push(dir);
  return new StateMachine(dir);
}
afterAll(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const T = '2026-01-01T00:00:00.000Z';
const b64 = (n: number, fill = 7) => Buffer.alloc(n, fill).toString('base64');
const raw = (o: Record<string, unknown>) => new Uint8Array(Buffer.from(JSON.stringify(o)));

/** A state with one secret (2 versions), a role, a token and KMS bookkeeping for commands to act on. */
function seeded(): StateMachine {
  const sm = fresh();
  const cmds: Command[] = [
    { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['app/*'], actions: ['list'] }] },
    { t: 'token.create', v: 1, name: 't1', token_sha256: new Uint8Array(32).fill(1), role: 'reader', created_at: T, expires_at: null },
    ...[1, 2].map((version): Command => ({
      t: 'secret.put', v: 1, name: 'app/a', version, expected_current: version - 1, cas: null,
      ciphertext: new Uint8Array(20).fill(version), nonce: new Uint8Array(24), wrapped_dek: new Uint8Array(73).fill(9),
      kms_key_id: 'local:test', created_at: T, created_by: 't1',
    })),
    { t: 'kms.state', v: 1, values: { 'rewrap.watermark': 'none' } },
  ];
  cmds.forEach((c, i) => expect(sm.applyEntry(i + 1, 1, encodeCommand(c)).ok).toBe(true));
  return sm;
}

let image: string;
beforeAll(() => {
  const sm = seeded();
  const file = path.join(dirs[0]!, 'image.db');
  sm.writeImage(file);
  image = fs.readFileSync(file).toString('base64');
  sm.close();
});

/** Valid commands in wire form (binary fields as base64), one per type and version. */
function valid(): Record<string, Record<string, unknown>> {
  const put = {
    t: 'secret.put', v: 1, name: 'app/a', version: 3, expected_current: 2, cas: null,
    ciphertext: b64(40), nonce: b64(24), wrapped_dek: b64(73), kms_key_id: 'local:test', created_at: T, created_by: 't1',
  };
  return {
    'secret.put@1': put,
    'secret.put@2': { ...put, v: 2, mode: 'update' },
    'secret.delete@1': { t: 'secret.delete', v: 1, name: 'app/a', at: T },
    'token.create@1': { t: 'token.create', v: 1, name: 't2', token_sha256: b64(32, 2), role: 'reader', created_at: T, expires_at: null },
    'token.bootstrap@1': { t: 'token.bootstrap', v: 1, token_sha256: b64(32, 3), created_at: T },
    'token.revoke@1': { t: 'token.revoke', v: 1, name: 't1', revoked_at: T },
    'role.put@1': { t: 'role.put', v: 1, name: 'reader', rules: [{ paths: ['b/*', 'teams/+/db', '*'], actions: ['create', 'list'] }] },
    'role.delete@1': { t: 'role.delete', v: 1, name: 'reader' },
    'role.delete@2': { t: 'role.delete', v: 2, name: 'reader', at: T },
    'cluster.peer@1': { t: 'cluster.peer', v: 1, id: 'n9', address: '127.0.0.9:8201' },
    'state.restore@1': { t: 'state.restore', v: 1, image },
    'state.restore@2': { t: 'state.restore', v: 2, image, at: T },
    'secret.rewrap@1': {
      t: 'secret.rewrap', v: 1, name: 'app/a', version: 1, expected_wrapped_dek: b64(73, 9), wrapped_dek: b64(73, 8),
      kms_key_id: 'local:other', wrapped_rotation_at: T,
    },
    'kms.state@1': { t: 'kms.state', v: 1, values: { 'rewrap.watermark': T, 'rewrap.last_pass': '{"outcome":"complete"}' } },
  };
}

// Invalid values by kind of field, written out here rather than taken from the validator.
const badName = [null, 5, '', '/a', 'a/', 'a//b', '../x', 'a/./b', 'a b', 'ä', 'x'.repeat(257), {}, ['a']];
const badIdent = [null, 5, '', '.x', '-x', 'a/b', 'a b', 'x'.repeat(129), {}];
const badTime = [null, 5, '', 'yesterday', '2026-13-45T00:00:00.000Z', '2026-01-01 00:00:00', '2026-01-01T00:00:00.000', {}];
const badUint = [null, -1, 1.5, 1e300, 2 ** 53, '1', {}];
const badPosInt = [...badUint, 0];
const badText = [null, 5, '', 'x'.repeat(2049), 'a\u0000b', 'é'];
const badRules = [
  null, 'x', {}, [null], [{ paths: ['../x'], actions: ['list'] }], [{ paths: ['a'], actions: [] }],
  [{ paths: ['a'], actions: ['fly'] }], [{ paths: ['a'], actions: ['list', 'list'] }], [{ paths: ['a'], actions: ['list'], extra: 1 }],
  [{ paths: [''], actions: ['list'] }], [{ actions: ['list'] }], Array.from({ length: 101 }, () => ({ paths: ['a'], actions: ['list'] })),
];
const bytesOf = (min: number, max: number) => [null, 5, {}, ...(min > 0 ? [b64(min - 1)] : []), b64(max + 1)];

const BAD: Record<string, unknown[]> = {
  name: badName,
  version: badPosInt,
  expected_current: badUint,
  cas: badUint.filter((v) => v !== null),
  ciphertext: bytesOf(16, 1_048_576 + 16),
  nonce: bytesOf(24, 24),
  wrapped_dek: bytesOf(1, 6144),
  expected_wrapped_dek: bytesOf(1, 6144),
  token_sha256: bytesOf(32, 32),
  kms_key_id: badText,
  created_at: badTime,
  at: badTime,
  revoked_at: badTime,
  wrapped_rotation_at: badTime,
  expires_at: badTime.filter((v) => v !== null),
  created_by: badIdent,
  role: badIdent,
  mode: [null, 'delete', 'ANY', 1],
  rules: badRules,
  id: [null, '', 'a b', 'x'.repeat(64), 5],
  address: [null, '', 'nohost', 'h:99999', 'h:', 'a b:1', 5],
  image: [null, 5, '', b64(200), Buffer.from('SQLite format 3\u0000' + 'x'.repeat(200)).toString('base64')],
  values: [null, 'x', [], {}, { 'BAD KEY': 'v' }, { 'rewrap.watermark': 5 }, { k: 'x'.repeat(65_537) }, { k: null }],
};
const IDENT_FIELDS = new Set(['name']);

/** Every malformed variant of every valid command: each field replaced by each bad value, removed, plus an extra field. */
function variants(): [string, Record<string, unknown>][] {
  const out: [string, Record<string, unknown>][] = [];
  for (const [key, cmd] of Object.entries(valid())) {
    for (const field of Object.keys(cmd)) {
      if (field === 't' || field === 'v') continue;
      const identName = IDENT_FIELDS.has(field) && (cmd.t as string).match(/^(token|role)\./);
      for (const bad of identName ? badIdent : BAD[field]!) out.push([`${key} ${field}=${JSON.stringify(bad)?.slice(0, 40)}`, { ...cmd, [field]: bad }]);
      const { [field]: _gone, ...without } = cmd;
      out.push([`${key} without ${field}`, without]);
    }
    out.push([`${key} with an extra field`, { ...cmd, extra: 1 }]);
  }
  const put = valid()['secret.put@1']!;
  out.push(['secret.put version not expected_current + 1', { ...put, version: 5 }]);
  out.push(['secret.put@2 version not expected_current + 1', { ...valid()['secret.put@2']!, version: 2 }]);
  // Finding 2 of issue 11, as sent: it stopped every node for good.
  out.push(['kms.state values null', { t: 'kms.state', v: 1, values: null }]);
  return out;
}

function dump(sm: StateMachine): unknown {
  return ['secrets', 'secret_versions', 'roles', 'tokens', 'kms_state', 'raft_peers'].map((t) => sm.db.prepare(`SELECT * FROM ${t} ORDER BY 1, 2`).all());
}

describe('applying malformed commands', () => {
  it('applies every valid command of the table (the variants below start from these)', () => {
    for (const [key, cmd] of Object.entries(valid())) {
      const sm = seeded();
      const r = sm.applyEntry(100, 2, raw(cmd));
      expect({ key, r }).toEqual({ key, r: expect.objectContaining({ ok: true }) });
      sm.close();
    }
  });

  it('rejects each malformed variant on the state it was sent to: no throw, bad_request, index advanced, nothing changed', () => {
    const sm = seeded();
    const before = dump(sm);
    let index = sm.appliedIndex().index;
    const cases = variants();
    expect(cases.length).toBeGreaterThan(400);
    for (const [what, cmd] of cases) {
      index++;
      let r;
      try {
        r = sm.applyEntry(index, 3, raw(cmd));
      } catch (err) {
        throw new Error(`${what}: threw ${(err as Error).message}`);
      }
      expect({ what, ok: r.ok, code: r.ok ? null : r.code }).toEqual({ what, ok: false, code: 'bad_request' });
      expect(sm.appliedIndex(), what).toEqual({ index, term: 3 });
    }
    expect(dump(sm)).toEqual(before);
    // And the machine goes on applying valid commands after all of them.
    expect(sm.applyEntry(index + 1, 3, raw(valid()['secret.put@1']!))).toEqual({ ok: true, version: 3, created: false });
    sm.close();
  });

  it('gives the same verdicts on every node', () => {
    const [a, b] = [seeded(), seeded()];
    const results = [a, b].map((sm) => variants().map(([, cmd], i) => sm.applyEntry(100 + i, 3, raw(cmd))));
    expect(results[0]).toEqual(results[1]);
    expect(dump(a)).toEqual(dump(b));
    a.close();
    b.close();
  });

  it('rejects a valid command whose execution fails on this state, rolling back its partial changes', () => {
    const sm = seeded();
    // A version row nobody accounted for (only possible behind the log's back): inserting version 1 of
    // `ghost` violates the primary key after the secrets row was already written.
    sm.db.prepare(
      "INSERT INTO secret_versions (name, version, ciphertext, nonce, wrapped_dek, kms_key_id, created_at, created_by) VALUES ('ghost', 1, x'00', x'00', x'00', 'k', 't', 'c')",
    ).run();
    const before = dump(sm);
    const put = { ...valid()['secret.put@1']!, name: 'ghost', version: 1, expected_current: 0 };
    const r = sm.applyEntry(50, 2, raw(put));
    expect(r).toEqual({ ok: false, code: 'bad_request', message: expect.stringContaining('could not be applied') });
    expect(sm.appliedIndex()).toEqual({ index: 50, term: 2 });
    expect(dump(sm)).toEqual(before);
    expect(sm.faults).toBe(1);
    // Inside a batch (how the Raft driver applies), the rest of the batch still commits.
    sm.batch(() => {
      expect(sm.applyEntry(51, 2, raw(put)).ok).toBe(false);
      expect(sm.applyEntry(52, 2, raw(valid()['secret.delete@1']!)).ok).toBe(true);
    });
    expect(sm.appliedIndex()).toEqual({ index: 52, term: 2 });
    expect(sm.db.prepare("SELECT count(*) FROM secrets WHERE name = 'app/a'").pluck().get()).toBe(0);
    sm.close();
  });
});

describe('decoding', () => {
  it('stops (UnknownCommandError) only for what this build cannot decode, and tells content errors apart', () => {
    for (const data of ['{not json', 'null', '[]', '"x"', '{"t":"secret.teleport","v":1}', '{"t":"secret.put","v":99}', '{"t":"secret.put","v":"1"}', '{"v":1}', '{"t":"toString","v":1}']) {
      expect(() => decodeCommand(Buffer.from(data)), data).toThrow(UnknownCommandError);
    }
    expect(() => decodeCommand(raw({ t: 'kms.state', v: 1, values: null }))).toThrow(InvalidCommandError);
    expect(() => decodeCommand(raw({ t: 'secret.put', v: 1 }))).toThrow(InvalidCommandError);
  });

  it('advertises every version it decodes', () => {
    expect(capabilities()).toEqual(expect.arrayContaining(['secret.put@1', 'secret.put@2', 'role.delete@1', 'role.delete@2', 'state.restore@1', 'state.restore@2', 'kms.state@1']));
  });

  it('decodes every baseline version, the ones a leader proposes to voters it has not heard', () => {
    // A build that dropped one would meet entries it cannot decode from leaders that assume it.
    expect(capabilities()).toEqual(expect.arrayContaining([...BASELINE_COMMANDS]));
    expect([...BASELINE_COMMANDS].every((c) => c.endsWith('@1'))).toBe(true);
  });
});

describe('admission of forwarded commands (what the leader takes from a follower)', () => {
  it('accepts what API routes build on any node', () => {
    for (const key of ['secret.put@1', 'secret.put@2', 'secret.delete@1', 'token.create@1', 'token.revoke@1', 'role.put@1', 'role.delete@1', 'role.delete@2', 'state.restore@1', 'state.restore@2']) {
      expect(admitForwardedCommand(raw(valid()[key]!)).t, key).toBe(key.split('@')[0]);
    }
  });

  it('refuses, valid or not, what only the leader builds for itself', () => {
    // token.bootstrap would mint an admin token on a cluster that never had one; kms.state and
    // secret.rewrap come from the leader's re-wrap worker; cluster.peer from its membership route.
    for (const key of ['token.bootstrap@1', 'kms.state@1', 'secret.rewrap@1', 'cluster.peer@1']) {
      expect(() => admitForwardedCommand(raw(valid()[key]!)), key).toThrow(UnknownCommandError);
    }
  });

  it('refuses every malformed variant the same way (400 at the listener)', () => {
    for (const [what, cmd] of variants()) expect(() => admitForwardedCommand(raw(cmd)), what).toThrow(UnknownCommandError);
  });
});
