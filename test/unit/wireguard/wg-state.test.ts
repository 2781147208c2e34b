import { describe, expect, it } from 'vitest';
import { parseDump, parseIpAddrJson, redactDump } from '../../../wg-agent/wg-state.js';
import { KEYS } from './fixtures.js';

const dump = [
  [KEYS.n1.priv, KEYS.n1.pub, '51820', 'off'].join('\t'),
  [KEYS.n2.pub, KEYS.n3.priv, '10.0.0.12:51820', '10.77.0.2/32', '1700000000', '1234', '5678', '25'].join('\t'),
  [KEYS.n3.pub, '(none)', '(none)', '(none)', '0', '0', '0', 'off'].join('\t'),
].join('\n') + '\n';

describe('wg show dump', () => {
  it('parses interface and peers', () => {
    expect(parseDump(Buffer.from(dump))).toEqual({
      publicKey: KEYS.n1.pub,
      listenPort: 51820,
      peers: [
        { publicKey: KEYS.n2.pub, endpoint: '10.0.0.12:51820', allowedIps: ['10.77.0.2/32'], latestHandshake: 1700000000, rxBytes: 1234, txBytes: 5678, keepalive: 25 },
        { publicKey: KEYS.n3.pub, endpoint: null, allowedIps: [], latestHandshake: 0, rxBytes: 0, txBytes: 0, keepalive: 0 },
      ],
    });
  });

  it('wipes the private key and preshared keys in the raw bytes before parsing', () => {
    const raw = Buffer.from(dump);
    redactDump(raw);
    const text = raw.toString();
    expect(text).not.toContain(KEYS.n1.priv);
    expect(text).not.toContain(KEYS.n3.priv);
    expect(text).toContain(KEYS.n1.pub);
    expect(text.split('\n')[0]!.startsWith('*'.repeat(44) + '\t')).toBe(true);
    const again = Buffer.from(dump);
    parseDump(again);
    expect(again.toString()).not.toContain(KEYS.n1.priv);
  });

  it('handles an interface with no key yet and rejects garbage', () => {
    expect(parseDump(Buffer.from('(none)\t(none)\t0\toff\n'))).toEqual({ publicKey: null, listenPort: 0, peers: [] });
    expect(() => parseDump(Buffer.from(''))).toThrow(/empty/);
    expect(() => parseDump(Buffer.from('a\tb\n'))).toThrow(/fields/);
  });
});

describe('ip -j addr show', () => {
  it('reads UP, MTU and IPv4 addresses', () => {
    const text = JSON.stringify([{ ifname: 'wg0', flags: ['POINTOPOINT', 'NOARP', 'UP', 'LOWER_UP'], mtu: 1420, addr_info: [
      { family: 'inet', local: '10.77.0.1', prefixlen: 24 },
      { family: 'inet6', local: 'fe80::1', prefixlen: 64 },
    ] }]);
    expect(parseIpAddrJson(text)).toEqual({ up: true, mtu: 1420, addresses: ['10.77.0.1/24'] });
    expect(parseIpAddrJson(JSON.stringify([{ ifname: 'wg0', flags: ['POINTOPOINT'], mtu: 1500 }]))).toEqual({ up: false, mtu: 1500, addresses: [] });
    expect(parseIpAddrJson('[]')).toBeNull();
  });
});
