// The sync controller's view of a Coffer API: the blocking metadata query and
// value reads, over keep-alive HTTP(S). Every failure becomes a VaultError
// whose reason is the CofferSecret condition it causes; messages name the
// problem, never a value or a token.
import http from 'node:http';
import https from 'node:https';

export type VaultFailure = 'VaultUnavailable' | 'Forbidden' | 'SecretNotFound';

export class VaultError extends Error {
  override readonly name = 'VaultError';
  constructor(readonly reason: VaultFailure, message: string) {
    super(message);
  }
}

export interface WatchAnswer {
  /** The answering node's change index. */
  index: number;
  /** Current version of each name that exists (and that the token may see). */
  versions: Record<string, number>;
  /** Names that do not exist (names= queries). */
  missing: string[];
}

export interface SecretValue {
  version: number;
  value: string;
  createdAt: string;
}

export interface WatchRequest {
  names: readonly string[];
  /** 0: answer at once. */
  index: number;
  waitMs: number;
  token: string;
  signal?: AbortSignal;
}

/** What the controller needs from a Coffer API (an interface so unit tests can fake it). */
export interface VaultApi {
  watch(req: WatchRequest): Promise<WatchAnswer>;
  read(name: string, version: number, token: string, signal?: AbortSignal): Promise<SecretValue>;
}

export interface CofferClientOptions {
  /** Extra CA (PEM) for https. */
  ca?: string | Buffer;
  /** Per-request time limit on top of a blocking query's wait (default 10 s). */
  timeoutMs?: number;
}

interface Answer {
  status: number;
  body: unknown;
}

/** The error body's code, or undefined. */
function errorCode(body: unknown): string | undefined {
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' ? code : undefined;
}

function errorMessage(body: unknown): string {
  const message = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === 'string' ? message.slice(0, 300) : '';
}

export class CofferClient implements VaultApi {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly timeoutMs: number;

  constructor(address: string, opts: CofferClientOptions = {}) {
    this.base = new URL(address);
    const agentOptions = { keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' as const };
    this.agent = this.base.protocol === 'https:' ? new https.Agent({ ...agentOptions, ...(opts.ca ? { ca: opts.ca } : {}) }) : new http.Agent(agentOptions);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  get address(): string {
    return this.base.origin;
  }

  async watch(req: WatchRequest): Promise<WatchAnswer> {
    const query = new URLSearchParams({ names: [...req.names].join(','), index: String(req.index) });
    if (req.index > 0) query.set('wait', `${Math.max(1, Math.round(req.waitMs / 1000))}s`);
    const answer = await this.get(`/v1/watch?${query}`, req.token, req.index > 0 ? req.waitMs : 0, req.signal);
    if (answer.status !== 200) throw this.failure(answer, 'watch', req.names);
    const body = answer.body as { index?: unknown; versions?: unknown; missing?: unknown };
    if (typeof body.index !== 'number' || typeof body.versions !== 'object' || body.versions === null) {
      throw new VaultError('VaultUnavailable', `${this.address} answered the blocking query with an unexpected body`);
    }
    return {
      index: body.index,
      versions: body.versions as Record<string, number>,
      missing: Array.isArray(body.missing) ? (body.missing as string[]) : [],
    };
  }

  async read(name: string, version: number, token: string, signal?: AbortSignal): Promise<SecretValue> {
    const path = `/v1/secrets/${name.split('/').map(encodeURIComponent).join('/')}?version=${version}`;
    const answer = await this.get(path, token, 0, signal);
    if (answer.status !== 200) throw this.failure(answer, 'read', [name], version);
    const body = answer.body as { version?: unknown; value?: unknown; created_at?: unknown };
    if (typeof body.value !== 'string' || typeof body.version !== 'number') {
      throw new VaultError('VaultUnavailable', `${this.address} answered a read of ${name} with an unexpected body`);
    }
    return { version: body.version, value: body.value, createdAt: typeof body.created_at === 'string' ? body.created_at : '' };
  }

  close(): void {
    this.agent.destroy();
  }

  private failure(answer: Answer, what: 'watch' | 'read', names: readonly string[], version?: number): VaultError {
    const code = errorCode(answer.body);
    const detail = errorMessage(answer.body);
    const subject = what === 'read' ? `${names[0]}${version ? ` version ${version}` : ''}` : names.join(', ');
    if (answer.status === 401) return new VaultError('Forbidden', 'the token was refused (unknown, expired or revoked)');
    if (code === 'ip_not_allowed') {
      return new VaultError('Forbidden', "this controller's address is not in the vault's read allowlist (yet): add it, e.g. with the VaultCluster's readAllowlistFrom");
    }
    if (answer.status === 403) return new VaultError('Forbidden', `the token lacks read_metadata on ${subject}`);
    if (answer.status === 404) return new VaultError('SecretNotFound', `${subject} does not exist in Coffer`);
    if (answer.status === 503 || answer.status === 429 || answer.status >= 500) {
      return new VaultError('VaultUnavailable', `${this.address} answered ${answer.status}${code ? ` ${code}` : ''}${detail ? `: ${detail}` : ''}`);
    }
    return new VaultError('VaultUnavailable', `${this.address} answered ${answer.status}${code ? ` ${code}` : ''} to a ${what} of ${subject}`);
  }

  private get(path: string, token: string, waitMs: number, signal?: AbortSignal): Promise<Answer> {
    const url = new URL(path, this.base);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, {
        method: 'GET',
        agent: this.agent,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        timeout: waitMs + this.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.name === 'AbortError') reject(err);
        else reject(new VaultError('VaultUnavailable', `${this.address} unreachable: ${err.code ?? err.message}`));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', () => reject(new VaultError('VaultUnavailable', `${this.address} closed the connection mid-answer`)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = null;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.end();
    });
  }
}
