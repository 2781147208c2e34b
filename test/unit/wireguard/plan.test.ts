import { describe, expect, it } from 'vitest';
import { parsePeersFile } from '../../../wg-agent/peers.js';
import { describePlan, desiredState, isEmptyPlan, planLink, planWg, wgSetArgs, type Desired } from '../../../wg-agent/plan.js';
import type { WgState } from '../../../wg-agent/wg-state.js';
import { KEYS, peersDoc } from './fixtures.js';

const file = parsePeersFile(JSON.stringify(peersDoc()));
const resolved: Record<string, string> = { 'n2.vault-headless.ns.svc:51820': '10.0.0.12:51820', '192.0.2.3:51820': '192.0.2.3:51820' };
const desired: Desired = desiredState(file, 'n1', KEYS.n1.pub, (e) => resolved[e] ?? null);

/** The state wg reports after `desired` was applied by this agent. */
function applied(): WgState {
  return {
    publicKey: KEYS.n1.pub,
    listenPort: 51820,
    peers: [
      { publicKey: KEYS.n2.pub, endpoint: '10.0.0.12:51820', allowedIps: ['10.77.0.2/32'], latestHandshake: 0, rxBytes: 0, txBytes: 0, keepalive: 25 },
      { publicKey: KEYS.n3.pub, endpoint: '192.0.2.3:51820', allowedIps: ['10.77.0.3/32'], latestHandshake: 0, rxBytes: 0, txBytes: 0, keepalive: 25 },
    ],
  };
}
const appliedEndpoints = new Map([[KEYS.n2.pub, '10.0.0.12:51820'], [KEYS.n3.pub, '192.0.2.3:51820']]);

describe('desired state', () => {
  it('is every other pod as a /32 peer, and this pod\'s address with the CIDR prefix', () => {
    expect(desired).toEqual({
      publicKey: KEYS.n1.pub,
      listenPort: 51820,
      address: '10.77.0.1/24',
      peers: [
        { name: 'n2', publicKey: KEYS.n2.pub, allowedIps: ['10.77.0.2/32'], endpointName: 'n2.vault-headless.ns.svc:51820', endpoint: '10.0.0.12:51820' },
        { name: 'n3', publicKey: KEYS.n3.pub, allowedIps: ['10.77.0.3/32'], endpointName: '192.0.2.3:51820', endpoint: '192.0.2.3:51820' },
      ],
    });
  });
});

describe('link plan', () => {
  it('adds the address, then sets MTU 1420 and up', () => {
    expect(planLink('wg0', '10.77.0.1/24', { up: false, mtu: 1420, addresses: [] })).toEqual([
      ['address', 'add', '10.77.0.1/24', 'dev', 'wg0'],
      ['link', 'set', 'dev', 'wg0', 'mtu', '1420', 'up'],
    ]);
  });

  it('replaces a stale address and fixes the MTU; does nothing when all is in place', () => {
    expect(planLink('wg0', '10.77.0.1/24', { up: true, mtu: 1500, addresses: ['10.77.0.9/24'] })).toEqual([
      ['address', 'del', '10.77.0.9/24', 'dev', 'wg0'],
      ['address', 'add', '10.77.0.1/24', 'dev', 'wg0'],
      ['link', 'set', 'dev', 'wg0', 'mtu', '1420', 'up'],
    ]);
    expect(planLink('wg0', '10.77.0.1/24', { up: true, mtu: 1420, addresses: ['10.77.0.1/24'] })).toEqual([]);
  });
});

describe('wg plan', () => {
  it('configures a fresh interface completely, the private key from /dev/stdin', () => {
    const plan = planWg(desired, { publicKey: null, listenPort: 0, peers: [] }, new Map());
    expect(wgSetArgs('wg0', plan)).toEqual([
      'set', 'wg0', 'private-key', '/dev/stdin', 'listen-port', '51820',
      'peer', KEYS.n2.pub, 'allowed-ips', '10.77.0.2/32', 'endpoint', '10.0.0.12:51820', 'persistent-keepalive', '25',
      'peer', KEYS.n3.pub, 'allowed-ips', '10.77.0.3/32', 'endpoint', '192.0.2.3:51820', 'persistent-keepalive', '25',
    ]);
    expect(wgSetArgs('wg0', plan).join(' ')).not.toContain(KEYS.n1.priv);
  });

  it('is empty once applied', () => {
    expect(isEmptyPlan(planWg(desired, applied(), appliedEndpoints))).toBe(true);
  });

  it('removes peers no longer listed, before anything else takes their addresses', () => {
    const actual = applied();
    actual.peers.push({ publicKey: KEYS.n1.pub.replace('8', '9'), endpoint: null, allowedIps: ['10.77.0.4/32'], latestHandshake: 0, rxBytes: 0, txBytes: 0, keepalive: 25 });
    const plan = planWg(desired, actual, appliedEndpoints);
    expect(wgSetArgs('wg0', plan)).toEqual(['set', 'wg0', 'peer', KEYS.n1.pub.replace('8', '9'), 'remove']);
  });

  it('updates only the endpoint that resolved differently', () => {
    const moved = desiredState(file, 'n1', KEYS.n1.pub, (e) => (e.startsWith('n2.') ? '10.0.0.22:51820' : resolved[e] ?? null));
    const plan = planWg(moved, applied(), appliedEndpoints);
    expect(wgSetArgs('wg0', plan)).toEqual(['set', 'wg0', 'peer', KEYS.n2.pub, 'endpoint', '10.0.0.22:51820']);
    expect(describePlan(plan, new Map([[KEYS.n2.pub, 'n2']]))).toEqual(['peer n2: endpoint 10.0.0.22:51820']);
  });

  it('leaves an endpoint WireGuard learned by roaming while DNS says the same as before', () => {
    const actual = applied();
    actual.peers[0]!.endpoint = '10.0.0.99:40000';
    expect(isEmptyPlan(planWg(desired, actual, appliedEndpoints))).toBe(true);
  });

  it('configures an unresolvable peer without an endpoint, and adds the endpoint once it resolves', () => {
    const unresolved = desiredState(file, 'n1', KEYS.n1.pub, (e) => (e.startsWith('n2.') ? null : resolved[e] ?? null));
    const fresh = planWg(unresolved, { publicKey: KEYS.n1.pub, listenPort: 51820, peers: [] }, new Map());
    const args = wgSetArgs('wg0', fresh);
    expect(args.slice(0, 7)).toEqual(['set', 'wg0', 'peer', KEYS.n2.pub, 'allowed-ips', '10.77.0.2/32', 'persistent-keepalive']);
    const actual = applied();
    actual.peers[0]!.endpoint = null;
    expect(wgSetArgs('wg0', planWg(desired, actual, new Map([[KEYS.n3.pub, '192.0.2.3:51820']])))).toEqual(['set', 'wg0', 'peer', KEYS.n2.pub, 'endpoint', '10.0.0.12:51820']);
  });

  it('fixes allowed-ips, keepalive, listen port and a foreign private key', () => {
    const actual = applied();
    actual.publicKey = KEYS.n3.pub;
    actual.listenPort = 51821;
    actual.peers[1]!.allowedIps = ['10.77.0.3/32', '0.0.0.0/0'];
    actual.peers[1]!.keepalive = 0;
    expect(wgSetArgs('wg0', planWg(desired, actual, appliedEndpoints))).toEqual([
      'set', 'wg0', 'private-key', '/dev/stdin', 'listen-port', '51820', 'peer', KEYS.n3.pub, 'allowed-ips', '10.77.0.3/32', 'persistent-keepalive', '25',
    ]);
  });
});
