// VAULT_MEMBERS_FILE's format, and the replicated declared list and storage
// identities it leads to (cluster.declare, cluster.member) over real SQLite.
import { describe, expect, it } from 'vitest';
import { parseMembersFile } from '../../../server/config/members-file.js';
import { FileLineError } from '../../../server/config/watched-file.js';
import { ConfigError, loadConfig } from '../../../server/config/config.js';
import { decodeCommand, encodeCommand, InvalidCommandError } from '../../../server/store/commands.js';
import { StateReader } from '../../../server/store/queries.js';
import { stateMachines } from '../store/fixture.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function lineOf(text: string): number {
  try {
    parseMembersFile(text);
  } catch (err) {
    expect(err).toBeInstanceOf(FileLineError);
    return (err as FileLineError).line;
  }
  throw new Error('parsed');
}

describe('parseMembersFile', () => {
  it('takes one id=host:port a line, with comments and blank lines; an empty file declares nobody', () => {
    expect(parseMembersFile('')).toEqual([]);
    expect(parseMembersFile('# scaled to zero? no: nothing declared\n\n')).toEqual([]);
    expect(parseMembersFile('\uFEFFvault-0=vault-0.vault-headless.ns.svc:8201\r\n  vault-1=10.77.0.2:8201 # overlay\n')).toEqual([
      { id: 'vault-0', address: 'vault-0.vault-headless.ns.svc:8201' },
      { id: 'vault-1', address: '10.77.0.2:8201' },
    ]);
  });

  it('refuses the whole file at the first bad line rather than guess', () => {
    expect(lineOf('a=h:1\nb\n')).toBe(2);
    expect(lineOf('a=h:1,b=h:2')).toBe(1); // VAULT_PEERS syntax is one a line here
    expect(lineOf('a=h:99999')).toBe(1);
    expect(lineOf('a=h')).toBe(1);
    expect(lineOf('-a=h:1')).toBe(1);
    expect(lineOf('a=h:1\na=h:2')).toBe(2); // the same id twice
    expect(lineOf('a=h:1\nb=h:1')).toBe(2); // the same address twice
    expect(lineOf(Array.from({ length: 10 }, (_, i) => `n${i}=h${i}:1`).join('\n'))).toBe(10);
  });

  it('is read at start: a malformed file stops the start, a node outside VAULT_PEERS finds its address in it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-members-'));
    try {
      const file = path.join(dir, 'members');
      fs.writeFileSync(file, 'n1=127.0.0.1:7001\nn4=127.0.0.4:7004\n');
      const c = loadConfig({ VAULT_NODE_ID: 'n4', VAULT_PEERS: 'n1=127.0.0.1:7001', VAULT_MEMBERS_FILE: file, VAULT_CLUSTER_KEY: Buffer.alloc(32, 1).toString('base64') });
      expect(c.raftAdvertise).toEqual({ host: '127.0.0.4', port: 7004 });
      expect(c.membersFile?.initial.kind).toBe('ok');
      expect(c.autopilotStabilizationMs).toBe(10_000);
      fs.writeFileSync(file, 'n1=127.0.0.1:7001\nn1=127.0.0.2:7001\n');
      expect(() => loadConfig({ VAULT_NODE_ID: 'n1', VAULT_MEMBERS_FILE: file })).toThrow(ConfigError);
      expect(() => loadConfig({ VAULT_NODE_ID: 'n1', VAULT_AUTOPILOT_STABILIZATION_SECS: '-1' })).toThrow(ConfigError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cluster.declare and cluster.member', () => {
  const fresh = stateMachines();

  it('replace the declared list, record storage identities, and forget a removed member', () => {
    const sm = fresh();
    const reader = new StateReader(sm);
    const members = [{ id: 'n1', address: 'h1:1' }, { id: 'n2', address: 'h2:1' }];
    expect(sm.applyEntry(1, 1, encodeCommand({ t: 'cluster.declare', v: 1, members }))).toEqual({ ok: true });
    expect(reader.declaredMembers()).toEqual(members);
    sm.applyEntry(2, 1, encodeCommand({ t: 'cluster.member', v: 1, id: 'n2', data_id: 'a'.repeat(32) }));
    expect(reader.memberDataIds()).toEqual(new Map([['n2', 'a'.repeat(32)]]));
    sm.applyMembership(3, 1, { type: 'removeNode', nodeId: 'n2' });
    expect(reader.memberDataIds().size).toBe(0); // if it comes back, it joins afresh
    sm.applyEntry(4, 1, encodeCommand({ t: 'cluster.declare', v: 1, members: [] }));
    expect(reader.declaredMembers()).toEqual([]);
  });

  it('refuse a malformed list at decode, on every node alike', () => {
    const bad = (members: unknown) => () => decodeCommand(Buffer.from(JSON.stringify({ t: 'cluster.declare', v: 1, members })));
    expect(bad([{ id: 'n1', address: 'h:1' }, { id: 'n1', address: 'h:2' }])).toThrow(InvalidCommandError);
    expect(bad([{ id: 'n1', address: 'h:1', extra: 1 }])).toThrow(InvalidCommandError);
    expect(bad('n1=h:1')).toThrow(InvalidCommandError);
    expect(() => decodeCommand(Buffer.from(JSON.stringify({ t: 'cluster.member', v: 1, id: 'n1', data_id: 'x' })))).toThrow(InvalidCommandError);
  });
});
