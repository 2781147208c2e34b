// Minimal HTTP client for tests, able to pick the source address (127.0.0.x)
// so allowlist tests really come from another address.
import http from 'node:http';

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
  text: string;
}

export interface RequestOptions {
  token?: string;
  body?: unknown;
  rawBody?: string | Buffer;
  /** Header values; an array sends the header once per item (e.g. two X-Forwarded-For lines). */
  headers?: Record<string, string | string[]>;
  localAddress?: string;
  /** Abandon the request (reject) after this long; no limit by default. */
  timeoutMs?: number;
}

export function request(base: string, method: string, path: string, opts: RequestOptions = {}): Promise<HttpResponse> {
  // The path is sent exactly as given (no WHATWG URL normalization), so tests can send
  // `..`, `.`, `//` and percent-escapes the way an attacker would.
  if (!path.startsWith('/')) throw new Error(`path must start with /: ${path}`);
  const url = new URL(base);
  const headers: Record<string, string | string[]> = { ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let payload: string | Buffer | undefined = opts.rawBody;
  if (opts.body !== undefined) payload = JSON.stringify(opts.body);
  if (payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: url.hostname, port: url.port, path, method, headers, localAddress: opts.localAddress, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown = null;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            body = text;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
        });
      },
    );
    if (opts.timeoutMs !== undefined) {
      const timer = setTimeout(() => req.destroy(new Error('client timeout')), opts.timeoutMs);
      req.on('close', () => clearTimeout(timer));
    }
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Bound helpers for one node. */
export function client(base: string, token?: string) {
  const t = token ? { token } : {};
  return {
    get: (p: string, o: RequestOptions = {}) => request(base, 'GET', p, { ...t, ...o }),
    put: (p: string, body: unknown, o: RequestOptions = {}) => request(base, 'PUT', p, { ...t, body, ...o }),
    post: (p: string, body?: unknown, o: RequestOptions = {}) => request(base, 'POST', p, { ...t, ...(body === undefined ? {} : { body }), ...o }),
    del: (p: string, o: RequestOptions = {}) => request(base, 'DELETE', p, { ...t, ...o }),
  };
}
