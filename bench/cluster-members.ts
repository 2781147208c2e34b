// A member of either benchmarked cluster, and the HTTP calls that find out
// whether the cluster is up and who leads it.
import type { ChildProcess } from 'node:child_process';

export interface Member {
  id: string;
  /** Base URL of the client API. */
  url: string;
  /** The process whose CPU counts (etcd itself, not its wrapper). */
  pid: number;
  child: ChildProcess;
}

/** A started cluster: its members, and a look-up of the leader all of them agree on. */
export interface Cluster {
  members: Member[];
  leader: () => Promise<string>;
}

/** Calls `fn` until it returns non-null; throws `what` (with the last error) after `timeoutMs`. */
export async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function fetchJson(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  let r: Response;
  let text: string;
  try {
    r = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    text = await r.text();
  } catch (err) {
    throw new Error(`${init.method ?? 'GET'} ${url}: ${(err as Error).message}`);
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, body };
}
