// `coffer wg-agent` options: parsed and checked here, pure (env and hostname are passed in).
import { parseArgs } from 'node:util';
import { parseIPv4 } from '../common/ipv4.js';
import type { AgentSettings } from './agent.js';
import { PEER_NAME } from './peers.js';

export interface AgentOptions extends AgentSettings {
  wireguardGoBinary: string;
  listenHost: string;
  listenPort: number;
}

export class OptionsError extends Error {
  override readonly name = 'OptionsError';
}

export const DEFAULTS = {
  interface: 'wg0',
  keysDir: '/etc/coffer/wireguard/keys',
  peersFile: '/etc/coffer/wireguard/peers/peers.json',
  listen: '0.0.0.0:8203',
  wireguardGo: 'wireguard-go',
  wg: 'wg',
  ip: 'ip',
  pollIntervalMs: 2000,
  resolveIntervalMs: 10000,
} as const;

// Linux interface names: 1-15 bytes, no '/', ':' or whitespace; kept to a safe set.
const IFACE = /^[A-Za-z0-9_.-]{1,15}$/;

function intOption(name: string, text: string | undefined, dflt: number, min: number, max: number): number {
  if (text === undefined) return dflt;
  if (!/^\d+$/.test(text)) throw new OptionsError(`--${name} must be a whole number of milliseconds, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < min || n > max) throw new OptionsError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function nonEmpty(name: string, text: string | undefined, dflt: string): string {
  if (text === undefined) return dflt;
  if (text.trim() === '') throw new OptionsError(`--${name} must not be empty`);
  return text;
}

/** Returns the options, or 'help' for --help. Throws OptionsError on anything wrong. */
export function parseAgentOptions(argv: readonly string[], env: Record<string, string | undefined>, hostname: string): AgentOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        name: { type: 'string' },
        interface: { type: 'string' },
        'keys-dir': { type: 'string' },
        'peers-file': { type: 'string' },
        listen: { type: 'string' },
        'wireguard-go': { type: 'string' },
        wg: { type: 'string' },
        ip: { type: 'string' },
        'poll-interval-ms': { type: 'string' },
        'resolve-interval-ms': { type: 'string' },
      },
    });
  } catch (err) {
    throw new OptionsError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';

  const name = v.name ?? (env.COFFER_WG_NAME?.trim() || env.VAULT_NODE_ID?.trim() || hostname);
  if (!PEER_NAME.test(name)) throw new OptionsError(`--name: bad pod name ${JSON.stringify(name)} (from ${v.name !== undefined ? '--name' : env.COFFER_WG_NAME?.trim() ? 'COFFER_WG_NAME' : env.VAULT_NODE_ID?.trim() ? 'VAULT_NODE_ID' : 'the hostname'})`);

  const iface = v.interface ?? DEFAULTS.interface;
  if (!IFACE.test(iface)) throw new OptionsError(`--interface: ${JSON.stringify(iface)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`);

  const listen = v.listen ?? DEFAULTS.listen;
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon);
  const portText = listen.slice(colon + 1);
  if (colon <= 0 || parseIPv4(host) === null || !/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new OptionsError(`--listen: expected IPv4:port like 0.0.0.0:8203, got ${JSON.stringify(listen)}`);
  }

  return {
    name,
    iface,
    keysDir: nonEmpty('keys-dir', v['keys-dir'], DEFAULTS.keysDir),
    peersFile: nonEmpty('peers-file', v['peers-file'], DEFAULTS.peersFile),
    listenHost: host,
    listenPort: Number(portText),
    wireguardGoBinary: nonEmpty('wireguard-go', v['wireguard-go'], DEFAULTS.wireguardGo),
    wgBinary: nonEmpty('wg', v.wg, DEFAULTS.wg),
    ipBinary: nonEmpty('ip', v.ip, DEFAULTS.ip),
    pollIntervalMs: intOption('poll-interval-ms', v['poll-interval-ms'], DEFAULTS.pollIntervalMs, 50, 3_600_000),
    resolveIntervalMs: intOption('resolve-interval-ms', v['resolve-interval-ms'], DEFAULTS.resolveIntervalMs, 100, 3_600_000),
  };
}
