// Per-request context: who is calling from where, and what the audit record
// will say. Filled in by hooks and handlers, read by the audit hook.
import type { FastifyRequest } from 'fastify';
import { normalizeClientIp, type Allowlist } from '../../common/ipv4.js';
import type { Principal } from '../auth/tokens.js';

export interface RequestContext {
  /** Route template (`/v1/secrets/*`), or `unmatched`: the metrics label. */
  route: string;
  ts: string;
  /** performance.now() when the request arrived, ms. */
  startedAt: number;
  /** The client's IPv4 address (what the read allowlist is checked against), or null when it has none. */
  clientIp: string | null;
  /** The client's address as the audit record names it (never empty). */
  clientAddr: string;
  /** The socket peer as the audit record names it: differs from clientAddr behind a trusted proxy. */
  peerAddr: string;
  principal: Principal | null;
  action: string;
  target: string | null;
  version: number | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
  interface FastifyContextConfig {
    /** Audit action name for the route, e.g. `secret.read`. */
    action?: string;
  }
}

/** What is known about a connection's peer; keep-alive clients send many requests over one socket. */
export interface Peer {
  /** Normalized IPv4, or null. */
  ip: string | null;
  /** Audit text: the IPv4, else the raw socket address, else `unknown`. */
  addr: string;
  /** Whether its X-Forwarded-For is read (VAULT_TRUST_PROXY with the peer inside VAULT_TRUSTED_PROXIES). */
  trusted: boolean;
}

const peers = new WeakMap<object, Peer>();

/** The longest X-Forwarded-For entry kept in an audit record when it is not an address. */
const MAX_XFF_ENTRY = 64;

/** The connection's peer; `trustedProxies` is null unless VAULT_TRUST_PROXY is on. */
export function peerOf(socket: { remoteAddress?: string | undefined }, trustedProxies: Allowlist | null): Peer {
  let p = peers.get(socket);
  if (p === undefined) {
    const raw = socket.remoteAddress;
    const ip = normalizeClientIp(raw);
    p = { ip, addr: ip ?? raw ?? 'unknown', trusted: trustedProxies !== null && trustedProxies.allows(ip) };
    // Only a connected socket has its address for good.
    if (raw !== undefined) peers.set(socket, p);
  }
  return p;
}

/**
 * For a request from a trusted proxy (`peerOf(...).trusted`): takes the client
 * from X-Forwarded-For into ctx.clientIp and clientAddr. The list is walked
 * from the right: every proxy appends the address it was reached from, so the
 * right-most entry that is not itself one of our trusted proxies is the client
 * (entries further left were written by the client and prove nothing). An
 * entry that is not an IPv4 address in that position is nobody: no allowlist
 * match, and the audit record says what it was. Without the header the peer
 * is the client.
 */
export function applyForwardedFor(req: FastifyRequest, ctx: RequestContext, trustedProxies: Allowlist): void {
  const xff = req.headers['x-forwarded-for'];
  const joined = Array.isArray(xff) ? xff.join(',') : xff;
  if (!joined) return;
  const entries = joined.split(',');
  let seen: string | null = null;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i]!.trim();
    if (entry === '') continue;
    const ip = normalizeClientIp(entry);
    if (ip === null) {
      ctx.clientIp = null;
      ctx.clientAddr = entry.slice(0, MAX_XFF_ENTRY);
      return;
    }
    seen = ip;
    if (!trustedProxies.allows(ip)) break;
  }
  // Every entry a trusted proxy: the left-most one is as far as the chain can be followed.
  if (seen !== null) {
    ctx.clientIp = seen;
    ctx.clientAddr = seen;
  }
}
