// The capability gate as the leader and a follower apply it: which voter holds
// a command version back, and that a voter the leader has not heard holds back
// only what is beyond the baseline every release decodes.
import { describe, expect, it } from 'vitest';
import { CapabilityGate } from '../../../server/raft/driver/capabilities.js';
import type { DriverContext } from '../../../server/raft/driver/context.js';
import { capabilities } from '../../../server/store/commands.js';

function gateOn(nodeId: string, status: { role: string; lead: string; voters: string[] }, own = capabilities()): CapabilityGate {
  const node = { softState: () => ({ role: status.role, lead: status.lead }), voterIds: () => status.voters };
  return new CapabilityGate({ nodeId, node } as unknown as DriverContext, own);
}

describe('capability gate', () => {
  it('on the leader, holds a version back until every voter advertised it', () => {
    const gate = gateOn('a', { role: 'leader', lead: 'a', voters: ['a', 'b', 'c'] });
    expect(gate.holdout('secret.put@2')).toBe('b');
    gate.heard('b', capabilities());
    expect(gate.holdout('secret.put@2')).toBe('c');
    gate.heard('c', capabilities().filter((c) => c !== 'secret.put@2'));
    expect(gate.holdout('secret.put@2')).toBe('c');
    gate.heard('c', capabilities());
    expect(gate.holdout('secret.put@2')).toBeNull();
  });

  it('lets baseline versions through with a voter never heard (down since before this leader was elected)', () => {
    const gate = gateOn('b', { role: 'leader', lead: 'b', voters: ['a', 'b', 'c'] });
    gate.heard('a', capabilities());
    for (const cap of ['secret.put@1', 'secret.delete@1', 'token.create@1', 'token.bootstrap@1', 'token.revoke@1', 'role.put@1', 'role.delete@1']) {
      expect(gate.holdout(cap), cap).toBeNull();
    }
    // Anything later still waits for the voter to say it decodes it.
    for (const cap of ['secret.put@2', 'role.delete@2', 'state.restore@1', 'kms.state@1', 'cluster.member@1', 'raft.lease-votes@1']) {
      expect(gate.holdout(cap), cap).toBe('c');
    }
  });

  it('holds back even a baseline version this node itself lacks', () => {
    const gate = gateOn('a', { role: 'leader', lead: 'a', voters: ['a'] }, ['secret.put@1']);
    expect(gate.holdout('secret.put@1')).toBeNull();
    expect(gate.holdout('role.put@1')).toBe('a');
  });

  it('on a follower, counts voters other than itself and its leader as holdouts beyond the baseline', () => {
    const gate = gateOn('b', { role: 'follower', lead: 'a', voters: ['a', 'b', 'c'] });
    gate.heard('a', capabilities());
    gate.heard('c', capabilities()); // heard when c campaigned: possibly before c restarted as an older release
    expect(gate.holdout('secret.put@2')).toBe('c');
    expect(gate.holdout('secret.put@1')).toBeNull();
  });
});
