// Per-request context: who is calling from where, and what the audit record
// will say. Filled in by hooks and handlers, read by the audit hook.
import type { FastifyRequest } from 'fastify';
import { normalizeClientIp } from '../config/ipv4.js';
import type { Principal } from '../auth/tokens.js';

export interface RequestContext {
  /** Route template (`/v1/secrets/*`), or `unmatched`: the metrics label. */
  route: string;
  ts: string;
  /** performance.now() when the request arrived, ms. */
  startedAt: number;
  clientIp: string | null;
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

/** Normalized peer address per connection: keep-alive clients send many requests over one socket. */
const socketIps = new WeakMap<object, string | null>();

/** Socket address, or with trust-proxy the right-most X-Forwarded-For entry (the one our proxy appended). */
export function clientIpOf(req: FastifyRequest, trustProxy: boolean): string | null {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for'];
    const joined = Array.isArray(xff) ? xff.join(',') : xff;
    if (joined) {
      const last = joined.split(',').map((s) => s.trim()).filter(Boolean).at(-1);
      return normalizeClientIp(last);
    }
  }
  const socket = req.socket;
  let ip = socketIps.get(socket);
  if (ip === undefined) {
    ip = normalizeClientIp(socket.remoteAddress);
    // Only a connected socket has its address for good.
    if (socket.remoteAddress !== undefined) socketIps.set(socket, ip);
  }
  return ip;
}

/** What the audit log calls a request's client when the address is not IPv4. */
export function auditIp(req: FastifyRequest): string {
  return req.ctx.clientIp ?? req.socket.remoteAddress ?? 'unknown';
}
