// IPv4 addresses, CIDRs and allowlists: the vault node's read allowlist,
// trusted proxies and overlay checks, the wg-agent's peers.json and the
// operator's overlay addresses all read them here. Only IPv4 is accepted by
// design (DESIGN §1); IPv4-mapped IPv6 client addresses (::ffff:a.b.c.d) are
// unwrapped, any other IPv6 client is never on a list.

/** An IPv4 CIDR as numbers (unsigned 32-bit ints). */
export interface Cidr {
  /** The CIDR as written. */
  text: string;
  /** The address as written (host bits may be set). */
  address: number;
  /** `address` with the host bits cleared. */
  network: number;
  prefix: number;
}

const OCTETS = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The address as an unsigned 32-bit int, or null when it is not dotted IPv4. */
export function parseIPv4(text: string): number | null {
  const m = OCTETS.exec(text);
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part.startsWith('0')) return null; // no octal-looking octets
    const o = Number(part);
    if (o > 255) return null;
    n = n * 256 + o;
  }
  return n;
}

/** Dotted text of an unsigned 32-bit address. */
export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** `a.b.c.d/p`, or a bare address as a /32; throws on anything else. */
export function parseCidr(text: string): Cidr {
  const [addr, prefixText, extra] = text.split('/');
  if (extra !== undefined || addr === undefined) throw new Error(`not an IPv4 address or CIDR: ${JSON.stringify(text)}`);
  const address = parseIPv4(addr);
  if (address === null) throw new Error(`not an IPv4 address or CIDR: ${JSON.stringify(text)}`);
  let prefix = 32;
  if (prefixText !== undefined) {
    if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) {
      throw new Error(`bad CIDR prefix in ${JSON.stringify(text)}`);
    }
    prefix = Number(prefixText);
  }
  return { text, address, network: (address & netmask(prefix)) >>> 0, prefix };
}

function netmask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** True when the address (as parseIPv4 returns it) is inside the CIDR. */
export function cidrContains(cidr: Cidr, address: number): boolean {
  return ((address & netmask(cidr.prefix)) >>> 0) === cidr.network;
}

/** Normalizes a socket/proxy address to dotted IPv4, or null when it is not IPv4. */
export function normalizeClientIp(raw: string | undefined): string | null {
  if (!raw) return null;
  let s = raw.trim();
  if (s.toLowerCase().startsWith('::ffff:')) s = s.slice(7);
  return parseIPv4(s) === null ? null : s;
}

export class Allowlist {
  constructor(readonly entries: readonly Cidr[]) {}

  static parse(list: string): Allowlist {
    const items = list.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    return new Allowlist(items.map(parseCidr));
  }

  /** Fail-closed: an empty list or a non-IPv4 address allows nobody. */
  allows(ip: string | null): boolean {
    if (ip === null) return false;
    const n = parseIPv4(ip);
    if (n === null) return false;
    return this.entries.some((c) => cidrContains(c, n));
  }
}
