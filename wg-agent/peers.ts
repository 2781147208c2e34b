// peers.json, the operator's ConfigMap `<vc>-wireguard-peers` (WIREGUARD.md):
// strict validation into a typed value. Pure: no I/O. Every error names the
// field, e.g. `peers[2].publicKey: …`, so /ready can say exactly what is wrong.
import { formatIPv4, parseCidr, parseIPv4 } from '../common/ipv4.js';
import { isWgKey } from '../common/wireguard-key.js';

export interface PeerEntry {
  name: string;
  publicKey: string;
  /** Overlay IPv4 address, inside `cidr`. */
  address: string;
  /** `host:port` as written; host is a DNS name or an IPv4 literal. */
  endpoint: string;
}

export interface PeersFile {
  version: 1;
  listenPort: number;
  /** Canonical network CIDR, e.g. 10.77.0.0/24. */
  cidr: string;
  prefix: number;
  peers: PeerEntry[];
}

export interface Endpoint {
  host: string;
  port: number;
}

export class PeersFileError extends Error {
  override readonly name = 'PeersFileError';
  constructor(readonly field: string, problem: string) {
    super(`${field}: ${problem}`);
  }
}

/** A pod name, as VAULT_NODE_ID accepts it. */
export const PEER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

const TOP_FIELDS = ['version', 'listenPort', 'cidr', 'peers'];
const PEER_FIELDS = ['name', 'publicKey', 'address', 'endpoint'];

/** `host:port` with host a DNS name or an IPv4 literal; null when malformed. */
export function parseEndpoint(text: string): Endpoint | null {
  const i = text.lastIndexOf(':');
  if (i <= 0) return null;
  const host = text.slice(0, i);
  const portText = text.slice(i + 1);
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  if (/^[\d.]+$/.test(host)) return parseIPv4(host) === null ? null : { host, port };
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => DNS_LABEL.test(l))) return null;
  return { host, port };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkFields(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new PeersFileError(where ? `${where}.${k}` : k, 'unknown field');
  }
  for (const k of allowed) {
    if (!(k in obj)) throw new PeersFileError(where ? `${where}.${k}` : k, 'missing');
  }
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new PeersFileError(field, `expected a string, got ${JSON.stringify(v)}`);
  return v;
}

/** Parses and validates the text of peers.json. Throws PeersFileError. */
export function parsePeersFile(text: string): PeersFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new PeersFileError('peers.json', `not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw new PeersFileError('peers.json', 'expected a JSON object');
  checkFields(doc, TOP_FIELDS, '');

  if (doc.version !== 1) throw new PeersFileError('version', `unsupported version ${JSON.stringify(doc.version)} (this agent reads version 1)`);

  const lp = doc.listenPort;
  if (typeof lp !== 'number' || !Number.isInteger(lp) || lp < 1 || lp > 65535) {
    throw new PeersFileError('listenPort', `expected a port number 1-65535, got ${JSON.stringify(lp)}`);
  }

  const cidrText = str(doc.cidr, 'cidr');
  if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidrText)) throw new PeersFileError('cidr', `expected an IPv4 CIDR like 10.77.0.0/24, got ${JSON.stringify(cidrText)}`);
  let cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (err) {
    throw new PeersFileError('cidr', (err as Error).message);
  }
  if (cidr.prefix < 1 || cidr.prefix > 30) throw new PeersFileError('cidr', `prefix must be between /1 and /30, got /${cidr.prefix}`);
  if (cidr.address !== cidr.network) throw new PeersFileError('cidr', `${cidrText} has host bits set; the network is ${formatIPv4(cidr.network)}/${cidr.prefix}`);
  const size = 2 ** (32 - cidr.prefix);
  const broadcast = cidr.network + size - 1;

  if (!Array.isArray(doc.peers)) throw new PeersFileError('peers', 'expected an array');
  if (doc.peers.length === 0) throw new PeersFileError('peers', 'empty: at least this pod must be listed');
  const names = new Set<string>();
  const keys = new Set<string>();
  const addresses = new Set<string>();
  const peers: PeerEntry[] = doc.peers.map((raw: unknown, i: number) => {
    const at = `peers[${i}]`;
    if (!isObject(raw)) throw new PeersFileError(at, 'expected an object');
    checkFields(raw, PEER_FIELDS, at);
    const name = str(raw.name, `${at}.name`);
    if (!PEER_NAME.test(name)) throw new PeersFileError(`${at}.name`, `bad pod name ${JSON.stringify(name)}`);
    if (names.has(name)) throw new PeersFileError(`${at}.name`, `${name} is listed twice`);
    names.add(name);

    const publicKey = str(raw.publicKey, `${at}.publicKey`);
    if (!isWgKey(publicKey)) throw new PeersFileError(`${at}.publicKey`, 'not a WireGuard public key (44 characters of base64 for 32 bytes)');
    if (keys.has(publicKey)) throw new PeersFileError(`${at}.publicKey`, `the same key is listed for two peers`);
    keys.add(publicKey);

    const address = str(raw.address, `${at}.address`);
    const n = parseIPv4(address);
    if (n === null) throw new PeersFileError(`${at}.address`, `not an IPv4 address: ${JSON.stringify(address)}`);
    if (n < cidr.network || n > broadcast) throw new PeersFileError(`${at}.address`, `${address} is outside ${cidrText}`);
    if (n === cidr.network || n === broadcast) throw new PeersFileError(`${at}.address`, `${address} is the network or broadcast address of ${cidrText}`);
    if (addresses.has(address)) throw new PeersFileError(`${at}.address`, `${address} is listed twice`);
    addresses.add(address);

    const endpoint = str(raw.endpoint, `${at}.endpoint`);
    if (parseEndpoint(endpoint) === null) {
      throw new PeersFileError(`${at}.endpoint`, `expected host:port (a DNS name or IPv4 address and a port 1-65535), got ${JSON.stringify(endpoint)}`);
    }
    return { name, publicKey, address, endpoint };
  });
  return { version: 1, listenPort: lp, cidr: `${formatIPv4(cidr.network)}/${cidr.prefix}`, prefix: cidr.prefix, peers };
}

/** This pod's own entry, found by name; throws PeersFileError when it is not listed. */
export function selfEntry(file: PeersFile, name: string): PeerEntry {
  const self = file.peers.find((p) => p.name === name);
  if (!self) throw new PeersFileError('peers', `no entry named ${JSON.stringify(name)} (this pod); listed: ${file.peers.map((p) => p.name).join(', ')}`);
  return self;
}
