// Desired interface state from peers.json, and the smallest set of `ip` and
// `wg set` changes that brings the actual state there. Pure.
import type { PeersFile } from './peers.js';
import type { LinkState, WgState } from './wg-state.js';

export const MTU = 1420;
export const KEEPALIVE_SECS = 25;

export interface DesiredPeer {
  name: string;
  publicKey: string;
  allowedIps: string[];
  /** The configured `host:port`. */
  endpointName: string;
  /** Resolved `ip:port`, or null while the name does not resolve (the peer is configured without one). */
  endpoint: string | null;
}

export interface Desired {
  /** Own public key, derived from the private key. */
  publicKey: string;
  listenPort: number;
  /** `address/prefix` for the interface. */
  address: string;
  peers: DesiredPeer[];
}

/**
 * Every entry but this pod's own becomes a peer. `resolve` maps a configured
 * `host:port` to the `ip:port` to use, or null when it is not known yet.
 */
export function desiredState(file: PeersFile, selfName: string, publicKey: string, resolve: (endpoint: string) => string | null): Desired {
  const self = file.peers.find((p) => p.name === selfName);
  if (!self) throw new Error(`${selfName} is not in peers.json`);
  return {
    publicKey,
    listenPort: file.listenPort,
    address: `${self.address}/${file.prefix}`,
    peers: file.peers
      .filter((p) => p.name !== selfName)
      .map((p) => ({ name: p.name, publicKey: p.publicKey, allowedIps: [`${p.address}/32`], endpointName: p.endpoint, endpoint: resolve(p.endpoint) })),
  };
}

/** `ip` argument lists (without the binary) that give the link its address, MTU and UP state. */
export function planLink(iface: string, address: string, link: LinkState): string[][] {
  const steps: string[][] = [];
  for (const a of link.addresses) if (a !== address) steps.push(['address', 'del', a, 'dev', iface]);
  if (!link.addresses.includes(address)) steps.push(['address', 'add', address, 'dev', iface]);
  if (link.mtu !== MTU || !link.up) steps.push(['link', 'set', 'dev', iface, 'mtu', String(MTU), 'up']);
  return steps;
}

export interface PeerUpdate {
  publicKey: string;
  allowedIps?: string[];
  endpoint?: string;
  keepalive?: number;
}

export interface WgPlan {
  /** Send the private key (on stdin): the interface's public key is not ours. */
  setPrivateKey: boolean;
  listenPort: number | null;
  remove: string[];
  upsert: PeerUpdate[];
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

/**
 * The difference between desired and actual. Endpoints: a resolved endpoint is
 * set when the peer has none, or when resolution gave something other than what
 * this agent last set (`appliedEndpoints`, by public key). An endpoint WireGuard
 * learned by roaming is left alone while DNS still says what it said.
 */
export function planWg(desired: Desired, actual: WgState, appliedEndpoints: ReadonlyMap<string, string>): WgPlan {
  const plan: WgPlan = {
    setPrivateKey: actual.publicKey !== desired.publicKey,
    listenPort: actual.listenPort !== desired.listenPort ? desired.listenPort : null,
    remove: [],
    upsert: [],
  };
  const wanted = new Set(desired.peers.map((p) => p.publicKey));
  for (const p of actual.peers) if (!wanted.has(p.publicKey)) plan.remove.push(p.publicKey);
  for (const d of desired.peers) {
    const a = actual.peers.find((p) => p.publicKey === d.publicKey);
    const u: PeerUpdate = { publicKey: d.publicKey };
    if (!a || !sameSet(a.allowedIps, d.allowedIps)) u.allowedIps = d.allowedIps;
    if (d.endpoint !== null && (!a || a.endpoint === null || appliedEndpoints.get(d.publicKey) !== d.endpoint)) u.endpoint = d.endpoint;
    if (!a || a.keepalive !== KEEPALIVE_SECS) u.keepalive = KEEPALIVE_SECS;
    if (Object.keys(u).length > 1) plan.upsert.push(u);
  }
  return plan;
}

export function isEmptyPlan(p: WgPlan): boolean {
  return !p.setPrivateKey && p.listenPort === null && p.remove.length === 0 && p.upsert.length === 0;
}

/**
 * Arguments for one `wg set` (one UAPI transaction). The private key is never
 * an argument: it is read from `/dev/stdin`.
 */
export function wgSetArgs(iface: string, plan: WgPlan): string[] {
  const args = ['set', iface];
  if (plan.setPrivateKey) args.push('private-key', '/dev/stdin');
  if (plan.listenPort !== null) args.push('listen-port', String(plan.listenPort));
  for (const pk of plan.remove) args.push('peer', pk, 'remove');
  for (const u of plan.upsert) {
    args.push('peer', u.publicKey);
    if (u.allowedIps) args.push('allowed-ips', u.allowedIps.join(','));
    if (u.endpoint !== undefined) args.push('endpoint', u.endpoint);
    if (u.keepalive !== undefined) args.push('persistent-keepalive', String(u.keepalive));
  }
  return args;
}

/** One line per change, for logs (public keys shortened; no secrets exist in a plan). */
export function describePlan(plan: WgPlan, names: ReadonlyMap<string, string>): string[] {
  const who = (pk: string) => names.get(pk) ?? `${pk.slice(0, 8)}…`;
  const out: string[] = [];
  if (plan.setPrivateKey) out.push('private key');
  if (plan.listenPort !== null) out.push(`listen-port ${plan.listenPort}`);
  for (const pk of plan.remove) out.push(`remove peer ${who(pk)}`);
  for (const u of plan.upsert) {
    const parts = [u.allowedIps ? `allowed-ips ${u.allowedIps.join(',')}` : '', u.endpoint ? `endpoint ${u.endpoint}` : '', u.keepalive ? `keepalive ${u.keepalive}` : ''].filter(Boolean);
    out.push(`peer ${who(u.publicKey)}: ${parts.join(', ')}`);
  }
  return out;
}
