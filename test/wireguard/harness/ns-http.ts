// HTTP from inside a node's namespace, where the overlay addresses are: one
// long-lived `ip netns exec <ns> node` per namespace that takes requests as
// JSON lines on stdin and answers on stdout. Used for management routes
// (VAULT_MGMT_ADDR is on the overlay) and for probing Raft from a namespace.
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';

const CLIENT = `
import http from 'node:http';
import readline from 'node:readline';
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const q = JSON.parse(line);
  const done = (r) => process.stdout.write(JSON.stringify({ id: q.id, ...r }) + '\\n');
  const u = new URL(q.url);
  const headers = { ...(q.headers || {}) };
  if (q.body !== undefined) headers['content-type'] = 'application/json';
  const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: q.method, headers, agent: false }, (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c) => (text += c));
    res.on('end', () => done({ status: res.statusCode, text }));
    res.on('error', (e) => done({ error: e.message }));
  });
  const t = setTimeout(() => req.destroy(new Error('client timeout')), q.timeoutMs);
  req.on('close', () => clearTimeout(t));
  req.on('error', (e) => done({ error: e.code || e.message }));
  if (q.body !== undefined) req.write(JSON.stringify(q.body));
  req.end();
});
rl.on('close', () => process.exit(0));
`;

export interface NsResponse {
  status: number;
  body: any;
  text: string;
}

export class NsHttpError extends Error {
  override readonly name = 'NsHttpError';
}

export class NsHttp {
  private readonly proc: ChildProcess;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: NsResponse) => void; reject: (e: Error) => void }>();

  constructor(ns: string) {
    this.proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CLIENT], { stdio: ['pipe', 'pipe', 'inherit'] });
    readline.createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const r = JSON.parse(line) as { id: number; status?: number; text?: string; error?: string };
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.error !== undefined) p.reject(new NsHttpError(r.error));
      else {
        let body: unknown = null;
        try {
          body = r.text ? JSON.parse(r.text) : null;
        } catch {
          body = r.text;
        }
        p.resolve({ status: r.status ?? 0, body, text: r.text ?? '' });
      }
    });
    this.proc.once('exit', () => {
      for (const p of this.pending.values()) p.reject(new NsHttpError('namespace client exited'));
      this.pending.clear();
    });
  }

  /** Resolves with the response; rejects with NsHttpError (ECONNREFUSED, 'client timeout', …). */
  request(url: string, method: string, opts: { token?: string; body?: unknown; timeoutMs?: number } = {}): Promise<NsResponse> {
    const id = ++this.seq;
    const headers: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc.stdin!.write(JSON.stringify({ id, url, method, headers, body: opts.body, timeoutMs: opts.timeoutMs ?? 10_000 }) + '\n');
    });
  }

  close(): void {
    this.proc.stdin!.end();
    if (this.proc.exitCode === null) setTimeout(() => this.proc.kill('SIGKILL'), 2_000).unref();
  }
}
