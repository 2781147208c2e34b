// What the interface actually holds, read back from `wg show <iface> dump` and
// `ip -j addr show dev <iface>`. Pure parsers. The dump's first field is the
// private key (and each peer's second the preshared key): they are overwritten
// in the raw bytes before anything becomes a string.

export interface WgPeerState {
  publicKey: string;
  /** `ip:port`, or null when wg has none. */
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds, or 0 when off. */
  keepalive: number;
}

export interface WgState {
  /** null when the interface has no private key yet. */
  publicKey: string | null;
  listenPort: number;
  peers: WgPeerState[];
}

export class DumpParseError extends Error {
  override readonly name = 'DumpParseError';
}

/** Overwrites the secret fields of a dump with `*` in place (private key; each peer's preshared key). */
export function redactDump(raw: Buffer): void {
  let lineStart = 0;
  let first = true;
  while (lineStart < raw.length) {
    let lineEnd = raw.indexOf(0x0a, lineStart);
    if (lineEnd < 0) lineEnd = raw.length;
    // Field to wipe: the first on the interface line, the second on a peer line.
    let fieldStart = lineStart;
    if (!first) {
      const tab = raw.indexOf(0x09, lineStart);
      fieldStart = tab < 0 || tab > lineEnd ? lineEnd : tab + 1;
    }
    let fieldEnd = raw.indexOf(0x09, fieldStart);
    if (fieldEnd < 0 || fieldEnd > lineEnd) fieldEnd = lineEnd;
    raw.fill(0x2a, fieldStart, fieldEnd);
    first = false;
    lineStart = lineEnd + 1;
  }
}

function key(text: string | undefined): string | null {
  return text === undefined || text === '(none)' ? null : text;
}

function num(text: string | undefined, what: string): number {
  if (text === undefined || !/^\d+$/.test(text)) throw new DumpParseError(`wg dump: bad ${what} ${JSON.stringify(text)}`);
  return Number(text);
}

/** Parses `wg show <iface> dump` output. The buffer is redacted in place first. */
export function parseDump(raw: Buffer): WgState {
  redactDump(raw);
  const lines = raw.toString('utf8').split('\n').filter((l) => l.length > 0);
  const head = lines.shift();
  if (head === undefined) throw new DumpParseError('wg dump: empty output');
  const h = head.split('\t');
  if (h.length !== 4) throw new DumpParseError(`wg dump: interface line has ${h.length} fields, expected 4`);
  const peers = lines.map((line): WgPeerState => {
    const f = line.split('\t');
    if (f.length !== 8) throw new DumpParseError(`wg dump: peer line has ${f.length} fields, expected 8`);
    return {
      publicKey: f[0] as string,
      endpoint: key(f[2]),
      allowedIps: f[3] === '(none)' ? [] : (f[3] as string).split(',').filter(Boolean),
      latestHandshake: num(f[4], 'latest-handshake'),
      rxBytes: num(f[5], 'transfer-rx'),
      txBytes: num(f[6], 'transfer-tx'),
      keepalive: f[7] === 'off' ? 0 : num(f[7], 'persistent-keepalive'),
    };
  });
  return { publicKey: key(h[1]), listenPort: num(h[2], 'listen-port'), peers };
}

export interface LinkState {
  up: boolean;
  mtu: number;
  /** IPv4 addresses as `a.b.c.d/prefix`. */
  addresses: string[];
}

/** Parses `ip -j addr show dev <iface>`; null when the output names no interface. */
export function parseIpAddrJson(text: string): LinkState | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new DumpParseError('ip -j addr: not JSON');
  }
  if (!Array.isArray(doc) || doc.length === 0) return null;
  const link = doc[0] as { flags?: unknown; mtu?: unknown; addr_info?: unknown };
  const flags = Array.isArray(link.flags) ? (link.flags as unknown[]) : [];
  const infos = Array.isArray(link.addr_info) ? (link.addr_info as { family?: unknown; local?: unknown; prefixlen?: unknown }[]) : [];
  return {
    up: flags.includes('UP'),
    mtu: typeof link.mtu === 'number' ? link.mtu : 0,
    addresses: infos.filter((a) => a.family === 'inet' && typeof a.local === 'string').map((a) => `${a.local as string}/${String(a.prefixlen)}`),
  };
}
