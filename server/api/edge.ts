// Edge hygiene (DESIGN §1): no browser can use the API, and the API answers
// only to Host names it knows, so a web page cannot reach it through DNS
// rebinding (a name the attacker controls, re-pointed at this address) nor
// read a response across origins.
//
// - `Origin` (any value), `Sec-Fetch-Site`, `Sec-Fetch-Dest` or
//   `Sec-Fetch-User`: a browser, or a client dressed as one. Refused with 403
//   forbidden. Programs (curl, SDKs, kubelet probes, Prometheus) send none of
//   them. `Sec-Fetch-Mode` alone is not a browser: Node's fetch() (undici,
//   which the coffer CLI uses) sends `Sec-Fetch-Mode: cors` on every request,
//   and a browser that sends Sec-Fetch-Mode always sends Sec-Fetch-Site with it.
// - `Host`: an IPv4 or IPv6 literal, `localhost`, or a name in
//   VAULT_API_HOSTNAMES (case-insensitive, any port, one trailing dot
//   allowed); anything else is 403 forbidden. An absolute-form request target
//   (`GET http://name/...`) names a host too and is held to the same rule.
//   HTTP/1.1 requires Host (400 bad_request without one); HTTP/1.0 and
//   earlier have none to send (curl -0 does not), so their requests pass.
//
// It runs on every request, value reads included, so it is a few property
// reads and, for Host, one Map lookup: the verdict for each Host value seen
// is kept (bounded), as Host can change from one keep-alive request to the
// next and so cannot be cached per socket.
import type { FastifyRequest } from 'fastify';
import { isIPv4, isIPv6 } from 'node:net';
import { ApiError } from './errors.js';

/** Host values whose verdict is kept; past this the memo starts over (random Hosts must not grow it). */
const HOST_MEMO_MAX = 1024;

const PORT = /^\d{1,5}$/;

/** The Host checks' configuration: the names of VAULT_API_HOSTNAMES, lower case. */
export interface EdgeOptions {
  apiHostnames: readonly string[];
}

/** Returns the check for one request: the refusal to answer with, or undefined to go on. */
export function createEdgeCheck(opts: EdgeOptions): (req: FastifyRequest) => ApiError | undefined {
  const names = new Set(opts.apiHostnames.map((n) => n.toLowerCase()));
  const memo = new Map<string, boolean>();
  const hostAllowed = (host: string): boolean => {
    let ok = memo.get(host);
    if (ok === undefined) {
      ok = judgeHost(host, names);
      if (memo.size >= HOST_MEMO_MAX) memo.clear();
      memo.set(host, ok);
    }
    return ok;
  };

  return (req) => {
    const h = req.headers;
    if (
      h.origin !== undefined ||
      h['sec-fetch-site'] !== undefined ||
      h['sec-fetch-dest'] !== undefined ||
      h['sec-fetch-user'] !== undefined
    ) {
      return new ApiError('forbidden', 'requests from browsers are not served');
    }
    const host = h.host;
    if (host === undefined) {
      const raw = req.raw;
      if (raw.httpVersionMajor > 1 || (raw.httpVersionMajor === 1 && raw.httpVersionMinor >= 1)) {
        return new ApiError('bad_request', 'HTTP/1.1 requests must carry a Host header');
      }
    } else if (!hostAllowed(host)) {
      return new ApiError('forbidden', 'unknown Host');
    }
    const url = req.raw.url;
    // Origin-form (`/path`) is what clients send; anything else is rare and checked here.
    if (url !== undefined && url.charCodeAt(0) !== 47 /* '/' */ && url !== '*') {
      const authority = absoluteFormAuthority(url);
      if (authority !== null && !hostAllowed(authority)) return new ApiError('forbidden', 'unknown Host');
    }
    return undefined;
  };
}

/** Whether a Host value names this API: an IP literal, localhost or a configured name, with an optional port. */
export function judgeHost(value: string, names: ReadonlySet<string>): boolean {
  if (value.length === 0 || value.length > 300) return false;
  if (value.charCodeAt(0) === 91 /* '[' */) {
    const close = value.indexOf(']');
    if (close < 0) return false;
    const rest = value.slice(close + 1);
    if (rest !== '' && !(rest.startsWith(':') && PORT.test(rest.slice(1)))) return false;
    return isIPv6(value.slice(1, close));
  }
  let name = value;
  const colon = value.lastIndexOf(':');
  if (colon >= 0) {
    if (!PORT.test(value.slice(colon + 1))) return false;
    name = value.slice(0, colon);
  }
  name = name.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === 'localhost' || names.has(name)) return true;
  return isIPv4(name);
}

/** The authority of an absolute-form request target (`http://host:port/path`), or null when the target is not one. */
function absoluteFormAuthority(url: string): string | null {
  const m = /^https?:\/\/([^/?#]*)/i.exec(url);
  if (m === null) return null;
  const authority = m[1]!;
  // Credentials in the target are never ours to accept: '' matches no host.
  return authority.includes('@') ? '' : authority;
}
