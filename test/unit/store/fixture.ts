// Shared by the state-machine tests: state machines in temp folders closed and
// removed after each test, and a secret.put command with placeholder bytes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import type { Command } from '../../../server/store/commands.js';
import { StateMachine } from '../../../server/store/state-machine.js';

/** Returns a factory of fresh state machines; call once at the top of a test file. */
export function stateMachines(prefix = 'coffer-sm-'): () => StateMachine {
  const dirs: string[] = [];
  const machines: StateMachine[] = [];
  afterEach(() => {
    machines.splice(0).forEach((m) => m.close());
    dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  });
  return () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(dir);
    const sm = new StateMachine(dir);
    machines.push(sm);
    return sm;
  };
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s));

/** secret.put of `name` at `version` over `expected` (placeholder ciphertext: the state machine never opens it). */
export function putCommand(name: string, version: number, expected: number, cas: number | null = null): Command {
  return {
    t: 'secret.put', v: 1, name, version, expected_current: expected, cas,
    ciphertext: bytes(`ct-${name}-${version}`.padEnd(16, '.')), nonce: bytes('n'.repeat(24)), wrapped_dek: bytes('wd'),
    kms_key_id: 'local:test', created_at: '2026-01-01T00:00:00.000Z', created_by: 'tester',
  };
}
