// The overlay addresses spec.wireguard.cidr stands for: which tunnel address
// each ordinal gets, and whether the range is large enough.
//
// Ordinal i gets the network address + i + 1 (10.77.0.0/24: vault-0 is
// 10.77.0.1, vault-1 10.77.0.2, …). The network and broadcast addresses are
// never handed out, so a /30 holds two pods and a /29 six.

import { formatIPv4, parseCidr, type Cidr } from '../../common/ipv4.js';

/** Pod addresses a CIDR holds: every address but the network and broadcast ones. */
export function podCapacity(cidr: Cidr): number {
  return Math.max(0, 2 ** (32 - cidr.prefix) - 2);
}

/** Overlay address of one ordinal (no range check: see overlayCidrProblem). */
export function overlayAddress(cidr: string | Cidr, ordinal: number): string {
  const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
  return formatIPv4(c.network + ordinal + 1);
}

/** Smallest prefix length whose range holds `replicas` pods. */
export function prefixFor(replicas: number): number {
  let prefix = 30;
  while (prefix > 0 && 2 ** (32 - prefix) - 2 < replicas) prefix--;
  return prefix;
}

/**
 * Why `cidr` cannot carry `replicas` pods, or undefined when it can. The
 * message is written for `status.conditions` (Degraded, InvalidSpec) and
 * `coffer operator render`.
 */
export function overlayCidrProblem(cidr: string, replicas: number): string | undefined {
  let c: Cidr;
  try {
    c = parseCidr(cidr);
  } catch (err) {
    return (err as Error).message;
  }
  if (c.prefix === 0) return `${cidr} is every IPv4 address; the overlay needs a range of its own (a /1 to /30)`;
  if (c.address !== c.network) {
    return `${cidr} is not a network address (host bits are set); use ${formatIPv4(c.network)}/${c.prefix}`;
  }
  const room = podCapacity(c);
  if (room < replicas) {
    return `${cidr} has room for ${room} pod address${room === 1 ? '' : 'es'} (the network and broadcast addresses are not used) but replicas is ${replicas}; use a /${prefixFor(replicas)} or larger`;
  }
  return undefined;
}
