// HTTP client for the people-facing commands. Errors print the server's code
// and message; the token is read from COFFER_TOKEN (or --token) and never echoed.
export interface ClientOptions {
  addr: string;
  token: string | undefined;
}

export class ClientError extends Error {
  override readonly name = 'ClientError';
  constructor(readonly status: number, readonly code: string, message: string) {
    super(`${code} (${status}): ${message}`);
  }
}

export async function call(opts: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(new URL(path, opts.addr), { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch (err) {
    throw new ClientError(0, 'unreachable', `cannot reach ${opts.addr}: ${(err as Error).message}`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    if (res.ok) return text;
  }
  if (!res.ok) {
    const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ClientError(res.status, e?.code ?? 'http_error', e?.message ?? res.statusText);
  }
  return json;
}

export function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}
