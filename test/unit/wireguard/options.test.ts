import { describe, expect, it } from 'vitest';
import { OptionsError, parseAgentOptions } from '../../../wg-agent/options.js';

describe('coffer wg-agent options', () => {
  it('has the documented defaults', () => {
    expect(parseAgentOptions([], {}, 'vault-0')).toEqual({
      name: 'vault-0',
      iface: 'wg0',
      keysDir: '/etc/coffer/wireguard/keys',
      peersFile: '/etc/coffer/wireguard/peers/peers.json',
      listenHost: '0.0.0.0',
      listenPort: 8203,
      wireguardGoBinary: 'wireguard-go',
      wgBinary: 'wg',
      ipBinary: 'ip',
      pollIntervalMs: 2000,
      resolveIntervalMs: 10000,
    });
  });

  it('takes the name from --name, then COFFER_WG_NAME, then VAULT_NODE_ID, then the hostname', () => {
    expect(parseAgentOptions(['--name', 'a'], { COFFER_WG_NAME: 'b', VAULT_NODE_ID: 'c' }, 'd')).toMatchObject({ name: 'a' });
    expect(parseAgentOptions([], { COFFER_WG_NAME: 'b', VAULT_NODE_ID: 'c' }, 'd')).toMatchObject({ name: 'b' });
    expect(parseAgentOptions([], { COFFER_WG_NAME: ' ', VAULT_NODE_ID: 'c' }, 'd')).toMatchObject({ name: 'c' });
    expect(parseAgentOptions([], {}, 'd')).toMatchObject({ name: 'd' });
  });

  it('takes every option in both --flag value and --flag=value forms', () => {
    expect(
      parseAgentOptions(
        ['--interface=wgc1', '--keys-dir', '/k', '--peers-file=/p/peers.json', '--listen', '10.0.0.1:9000', '--wireguard-go', '/bin/wgo', '--wg=/bin/wg', '--ip', '/bin/ip', '--poll-interval-ms', '500', '--resolve-interval-ms=1000'],
        {},
        'h',
      ),
    ).toMatchObject({ iface: 'wgc1', keysDir: '/k', peersFile: '/p/peers.json', listenHost: '10.0.0.1', listenPort: 9000, wireguardGoBinary: '/bin/wgo', wgBinary: '/bin/wg', ipBinary: '/bin/ip', pollIntervalMs: 500, resolveIntervalMs: 1000 });
    expect(parseAgentOptions(['--help'], {}, 'h')).toBe('help');
  });

  it.each([
    [['--bogus'], /bogus/],
    [['stray'], /positional|stray/i],
    [['--name'], /--name/],
    [['--name', 'bad name'], /--name/],
    [['--interface', 'much-too-long-name'], /--interface/],
    [['--interface', 'wg/0'], /--interface/],
    [['--listen', '8203'], /--listen/],
    [['--listen', 'localhost:8203'], /--listen/],
    [['--listen', '0.0.0.0:70000'], /--listen/],
    [['--poll-interval-ms', '2s'], /--poll-interval-ms/],
    [['--poll-interval-ms', '0'], /--poll-interval-ms/],
    [['--resolve-interval-ms', '-5'], /resolve-interval-ms/],
    [['--wg', ''], /--wg/],
  ])('rejects %j with a message naming the option', (argv, message) => {
    expect(() => parseAgentOptions(argv, {}, 'h')).toThrow(OptionsError);
    expect(() => parseAgentOptions(argv, {}, 'h')).toThrow(message);
  });
});
