// Peer endpoints: `host:port` names resolved to IPv4 `ip:port`. Names go
// through the system resolver (getaddrinfo: /etc/hosts, then cluster DNS), so
// a pod's name through the headless Service follows the pod to its new IP.
// A name that stops resolving keeps its last address; one never resolved has
// none, and is retried.
import dns from 'node:dns';
import { parseIPv4 } from '../common/ipv4.js';
import { parseEndpoint } from './peers.js';

export type LookupIPv4 = (host: string) => Promise<string>;

export const systemLookup: LookupIPv4 = async (host) => (await dns.promises.lookup(host, { family: 4 })).address;

export interface Resolution {
  /** `ip:port`, the latest successful answer; null when never resolved. */
  address: string | null;
  /** The latest failure, cleared by a success. */
  error: string | null;
  /** When the latest attempt finished (ms since epoch). */
  at: number;
}

export interface ResolveChange {
  endpoint: string;
  from: string | null;
  to: string;
}

export class EndpointResolver {
  private readonly table = new Map<string, Resolution>();

  constructor(
    private readonly lookup: LookupIPv4,
    private readonly timeoutMs = 5_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The resolved `ip:port` for a configured endpoint, or null. */
  get(endpoint: string): string | null {
    return this.table.get(endpoint)?.address ?? null;
  }

  info(endpoint: string): Resolution | undefined {
    return this.table.get(endpoint);
  }

  /** Forgets endpoints that are no longer configured. */
  retain(endpoints: Iterable<string>): void {
    const keep = new Set(endpoints);
    for (const k of [...this.table.keys()]) if (!keep.has(k)) this.table.delete(k);
  }

  /** Endpoints configured but never resolved. */
  unresolved(endpoints: Iterable<string>): string[] {
    return [...endpoints].filter((e) => this.get(e) === null);
  }

  /** Resolves each endpoint once; returns those whose address changed. */
  async resolve(endpoints: Iterable<string>): Promise<ResolveChange[]> {
    const changes: (ResolveChange | null)[] = await Promise.all(
      [...new Set(endpoints)].map(async (endpoint): Promise<ResolveChange | null> => {
        const prev = this.table.get(endpoint);
        const from = prev?.address ?? null;
        try {
          const ep = parseEndpoint(endpoint);
          if (!ep) throw new Error('not host:port');
          const ip = parseIPv4(ep.host) !== null ? ep.host : await this.withTimeout(this.lookup(ep.host));
          if (parseIPv4(ip) === null) throw new Error(`resolved to ${ip}, not IPv4`);
          const address = `${ip}:${ep.port}`;
          this.table.set(endpoint, { address, error: null, at: this.now() });
          return address !== from ? { endpoint, from, to: address } : null;
        } catch (err) {
          this.table.set(endpoint, { address: from, error: (err as Error).message, at: this.now() });
          return null;
        }
      }),
    );
    return changes.filter((c): c is ResolveChange => c !== null);
  }

  private withTimeout<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }
}
