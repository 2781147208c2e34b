// HTTP client for the people-facing commands. Errors print the server's code
// and message; the token (resolveToken in token-file.ts) is never echoed.
import { UsageError } from './args.js';

export interface ClientOptions {
  addr: string;
  token: string | undefined;
}

/** Exit codes (documented in TOP_HELP): 1 the server refused, 2 usage, 3 the server is unreachable. */
export const EXIT_REFUSED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/** How long one request may wait for an answer before the server counts as unreachable. */
const REQUEST_TIMEOUT_MS = 60_000;

/** The server answered with an error (status 4xx/5xx), or did not answer at all (status 0). */
export class ClientError extends Error {
  override readonly name = 'ClientError';
  constructor(readonly status: number, readonly code: string, message: string) {
    super(status === 0 ? message : `${code} (${status}): ${message}`);
  }

  get exitCode(): number {
    return this.status === 0 ? EXIT_UNREACHABLE : EXIT_REFUSED;
  }
}

/** Sends one request; a Buffer body goes as application/octet-stream, anything else as JSON. */
async function send(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let payload: string | Uint8Array | undefined;
  if (Buffer.isBuffer(body)) {
    headers['content-type'] = 'application/octet-stream';
    payload = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let url: URL;
  try {
    url = new URL(path, opts.addr);
  } catch {
    throw new UsageError(`not an address: ${JSON.stringify(opts.addr)} (COFFER_ADDR or --addr, e.g. http://127.0.0.1:8200)`);
  }
  try {
    return await fetch(url, {
      method,
      headers,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      ...(payload !== undefined ? { body: payload } : {}),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError') {
      throw new ClientError(0, 'unreachable', `no answer from ${opts.addr} within ${REQUEST_TIMEOUT_MS / 1000} s (a write may or may not have been applied)`);
    }
    throw new ClientError(0, 'unreachable', `cannot reach ${opts.addr}: ${e.cause?.code ?? e.cause?.message ?? e.message}`);
  }
}

async function refusal(res: Response): Promise<ClientError> {
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: the status text says it */
  }
  const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
  return new ClientError(res.status, e?.code ?? 'http_error', e?.message ?? res.statusText);
}

export async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await send(opts, method, path, body);
  if (!res.ok) throw await refusal(res);
  if (res.status === 204) return null;
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/** A request whose answer is bytes (a snapshot): the response, its body unread; a refusal throws. */
export async function callBytes(opts: ClientOptions, method: string, path: string): Promise<Response> {
  const res = await send(opts, method, path);
  if (!res.ok) throw await refusal(res);
  return res;
}

export function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}
