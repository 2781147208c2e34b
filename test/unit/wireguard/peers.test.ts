import { describe, expect, it } from 'vitest';
import { parseEndpoint, parsePeersFile, PeersFileError, selfEntry } from '../../../wg-agent/peers.js';
import { KEYS, peersDoc } from './fixtures.js';

const parse = (doc: unknown) => parsePeersFile(JSON.stringify(doc));

/** The field a PeersFileError names; a string is taken as the file's raw text. */
function fieldOf(doc: unknown): string {
  try {
    if (typeof doc === 'string') parsePeersFile(doc);
    else parse(doc);
  } catch (err) {
    expect(err).toBeInstanceOf(PeersFileError);
    return (err as PeersFileError).field;
  }
  throw new Error('expected a PeersFileError');
}

function withPeer(i: number, patch: Record<string, unknown>): Record<string, unknown> {
  const doc = peersDoc();
  const peers = (doc.peers as Record<string, unknown>[]).map((p, j) => (j === i ? { ...p, ...patch } : p));
  return { ...doc, peers };
}

describe('peers.json', () => {
  it('parses the operator contract', () => {
    const f = parse(peersDoc());
    expect(f).toMatchObject({ version: 1, listenPort: 51820, cidr: '10.77.0.0/24', prefix: 24 });
    expect(f.peers.map((p) => p.name)).toEqual(['n1', 'n2', 'n3']);
    expect(selfEntry(f, 'n2')).toEqual({ name: 'n2', publicKey: KEYS.n2.pub, address: '10.77.0.2', endpoint: 'n2.vault-headless.ns.svc:51820' });
  });

  it('accepts a trailing-dot DNS name and IPv4 literal endpoints', () => {
    expect(parse(withPeer(1, { endpoint: 'vault-1.vault-headless.secrets.svc.cluster.local.:51820' })).peers[1]!.endpoint).toMatch(/local\.:51820$/);
    expect(parseEndpoint('10.0.0.1:1')).toEqual({ host: '10.0.0.1', port: 1 });
  });

  it.each<[string, unknown, string]>([
    ['not JSON', '{', 'peers.json'],
    ['an array', [], 'peers.json'],
    ['unknown top-level field', { ...peersDoc(), extra: 1 }, 'extra'],
    ['missing cidr', (() => { const d = peersDoc(); delete d.cidr; return d; })(), 'cidr'],
    ['version 2', peersDoc({ version: 2 }), 'version'],
    ['version as text', peersDoc({ version: '1' }), 'version'],
    ['port 0', peersDoc({ listenPort: 0 }), 'listenPort'],
    ['port 65536', peersDoc({ listenPort: 65536 }), 'listenPort'],
    ['fractional port', peersDoc({ listenPort: 5.5 }), 'listenPort'],
    ['cidr without prefix', peersDoc({ cidr: '10.77.0.0' }), 'cidr'],
    ['cidr with host bits', peersDoc({ cidr: '10.77.0.1/24' }), 'cidr'],
    ['cidr /31', peersDoc({ cidr: '10.77.0.0/31' }), 'cidr'],
    ['cidr octet 256', peersDoc({ cidr: '10.77.256.0/24' }), 'cidr'],
    ['IPv6 cidr', peersDoc({ cidr: 'fd00::/64' }), 'cidr'],
    ['peers not an array', peersDoc({ peers: {} }), 'peers'],
    ['no peers', peersDoc({ peers: [] }), 'peers'],
    ['peer not an object', peersDoc({}, ['n1']), 'peers[0]'],
    ['unknown peer field', withPeer(1, { port: 1 }), 'peers[1].port'],
    ['bad name', withPeer(1, { name: 'bad name' }), 'peers[1].name'],
    ['duplicate name', withPeer(1, { name: 'n1' }), 'peers[1].name'],
    ['short key', withPeer(2, { publicKey: KEYS.n3.pub.slice(1) }), 'peers[2].publicKey'],
    ['key not base64', withPeer(2, { publicKey: '!' + KEYS.n3.pub.slice(1) }), 'peers[2].publicKey'],
    ['key with non-canonical padding', withPeer(2, { publicKey: KEYS.n3.pub.slice(0, 42) + 'B=' }), 'peers[2].publicKey'],
    ['duplicate key', withPeer(2, { publicKey: KEYS.n1.pub }), 'peers[2].publicKey'],
    ['address outside the cidr', withPeer(1, { address: '10.78.0.2' }), 'peers[1].address'],
    ['network address', withPeer(1, { address: '10.77.0.0' }), 'peers[1].address'],
    ['broadcast address', withPeer(1, { address: '10.77.0.255' }), 'peers[1].address'],
    ['duplicate address', withPeer(1, { address: '10.77.0.1' }), 'peers[1].address'],
    ['address not IPv4', withPeer(1, { address: 'n2' }), 'peers[1].address'],
    ['endpoint without port', withPeer(1, { endpoint: 'n2.svc' }), 'peers[1].endpoint'],
    ['endpoint port 0', withPeer(1, { endpoint: 'n2.svc:0' }), 'peers[1].endpoint'],
    ['endpoint with scheme', withPeer(1, { endpoint: 'udp://n2.svc:51820' }), 'peers[1].endpoint'],
    ['endpoint with bad IPv4', withPeer(1, { endpoint: '10.0.0.300:51820' }), 'peers[1].endpoint'],
    ['endpoint label with underscore', withPeer(1, { endpoint: 'n_2.svc:51820' }), 'peers[1].endpoint'],
    ['endpoint as a number', withPeer(1, { endpoint: 51820 }), 'peers[1].endpoint'],
  ])('rejects %s, naming the field', (_what, doc, field) => {
    expect(fieldOf(doc)).toBe(field);
  });

  it('says which pods are listed when this pod is not', () => {
    expect(() => selfEntry(parse(peersDoc()), 'n9')).toThrow(/no entry named "n9".*n1, n2, n3/);
  });

  it('puts the field first in the message', () => {
    expect(() => parse(withPeer(1, { address: '10.78.0.2' }))).toThrow(/^peers\[1\]\.address: 10\.78\.0\.2 is outside 10\.77\.0\.0\/24$/);
  });
});
