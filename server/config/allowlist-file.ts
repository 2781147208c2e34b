// VAULT_READ_ALLOWLIST_FILE (DESIGN §3): a file of IPv4 addresses and CIDRs,
// one a line, added to VAULT_READ_ALLOWLIST and re-read when it changes.
//
// File format: one address or CIDR per line; blank lines are skipped; `#`
// starts a comment (a whole line, or after the entry). Leading and trailing
// whitespace (CRLF included) is ignored: it cannot change what an IPv4 entry
// means, and editors and YAML block scalars add it. Anything else on a line
// (two entries, commas, a host name) makes the whole file malformed: guessing
// would widen or narrow who reads secret values.
//
// Kubernetes mounts a ConfigMap key as `file -> ..data/file`, `..data` being a
// symlink the kubelet swaps atomically to a new timestamped folder. The
// folder is watched (fs.watch) and, because fs.watch misses symlink swaps on
// some filesystems, the followed path is also stat'ed on one timer per node.
// A changed stat (inode, size, mtime, ctime) leads to a read; a changed
// content hash to a parse. The new list replaces the old one as one object.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Allowlist, parseCidr, type Cidr } from '../../common/ipv4.js';

/** A ConfigMap holds at most 1 MiB; a bigger file is not an allowlist. */
export const MAX_ALLOWLIST_FILE_BYTES = 1024 * 1024;
export const DEFAULT_POLL_MS = 2_000;

export class AllowlistFileError extends Error {
  override readonly name = 'AllowlistFileError';
  constructor(readonly line: number, readonly problem: string) {
    super(line > 0 ? `line ${line}: ${problem}` : problem);
  }
}

/** Short, quoted view of a bad entry for logs (never the whole file). */
function quote(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

/** Parses the file's text; throws AllowlistFileError naming the first bad line. */
export function parseAllowlistFile(text: string): Cidr[] {
  const entries: Cidr[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i]!.indexOf('#');
    const entry = (hash >= 0 ? lines[i]!.slice(0, hash) : lines[i]!).trim();
    if (entry === '') continue;
    if (/[\s,]/.test(entry)) throw new AllowlistFileError(i + 1, `one address or CIDR per line, got ${quote(entry)}`);
    try {
      entries.push(parseCidr(entry));
    } catch {
      throw new AllowlistFileError(i + 1, `not an IPv4 address or CIDR: ${quote(entry)}`);
    }
  }
  return entries;
}

/** One look at the file: what it holds, or why it could not be used. */
export type AllowlistFileRead =
  | { kind: 'ok'; signature: string; hash: string; entries: Cidr[] }
  | { kind: 'invalid'; signature: string; hash: string; error: AllowlistFileError }
  | { kind: 'missing'; signature: null; hash: null }
  | { kind: 'unreadable'; signature: string | null; hash: null; problem: string };

/** Identity of what the path points at now (symlinks followed), or null when there is nothing. */
export function statSignature(file: string): string | null {
  try {
    const s = fs.statSync(file, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.mode}`;
  } catch {
    return null;
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Reads and parses the file. The signature is taken before the read, so a change racing the read is seen next time. */
export function readAllowlistFile(file: string): AllowlistFileRead {
  const signature = statSignature(file);
  let bytes: Buffer;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_ALLOWLIST_FILE_BYTES) {
      return { kind: 'unreadable', signature, hash: null, problem: `larger than ${MAX_ALLOWLIST_FILE_BYTES} bytes (${size})` };
    }
    bytes = fs.readFileSync(file);
  } catch (err) {
    if (isMissing(err)) return { kind: 'missing', signature: null, hash: null };
    return { kind: 'unreadable', signature, hash: null, problem: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
  const sig = signature ?? 'unknown';
  const hash = createHash('sha256').update(bytes).digest('hex');
  try {
    return { kind: 'ok', signature: sig, hash, entries: parseAllowlistFile(bytes.toString('utf8')) };
  } catch (err) {
    if (err instanceof AllowlistFileError) return { kind: 'invalid', signature: sig, hash, error: err };
    throw err;
  }
}

export type ReloadOutcome = 'ok' | 'invalid' | 'missing' | 'unreadable';
export const RELOAD_OUTCOMES: readonly ReloadOutcome[] = ['ok', 'invalid', 'missing', 'unreadable'];

/** What the watcher logs through (a pino logger fits). */
export interface AllowlistLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ReadAllowlistFileOptions {
  file: string;
  /** VAULT_READ_ALLOWLIST: always in force, whatever the file says. */
  base: Allowlist;
  /** The read loadConfig made at start (a malformed or unreadable file never gets this far). */
  initial: AllowlistFileRead;
  logger: AllowlistLogger;
  /** Called with the new combined list (env + file) each time it changes. */
  onChange: (list: Allowlist) => void;
  /** Called once per re-read that found new content or a new state (not at start). */
  onReload?: (outcome: ReloadOutcome) => void;
  pollMs?: number;
  /** fs.watch on the folder (default on); the poll runs either way. */
  watch?: boolean;
}

/**
 * Keeps the combined read allowlist in step with the file. A malformed,
 * unreadable or missing file keeps the last good list (it is most often a
 * write in progress or a bad edit, and dropping to the env list would cut
 * off every reader at once); `valid` is false until a good file is read.
 * An empty file is a good file with no entries.
 */
export class ReadAllowlistFile {
  private list: Allowlist;
  private fileEntries: Cidr[];
  private lastSignature: string | null;
  private lastHash: string | null;
  private state: ReloadOutcome;
  private timer: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private watcher: fs.FSWatcher | null = null;
  private closed = false;
  readonly file: string;

  constructor(private readonly opts: ReadAllowlistFileOptions) {
    this.file = path.resolve(opts.file);
    const init = opts.initial;
    this.fileEntries = init.kind === 'ok' ? init.entries : [];
    this.list = combine(opts.base, this.fileEntries);
    this.lastSignature = init.signature;
    this.lastHash = init.hash;
    this.state = init.kind;
    if (init.kind === 'missing') {
      // The kubelet may mount or fill the ConfigMap after the container starts: serve the env list and pick the file up when it comes.
      opts.logger.warn({ file: this.file }, 'VAULT_READ_ALLOWLIST_FILE does not exist yet: only VAULT_READ_ALLOWLIST applies until it appears');
    } else if (init.kind === 'ok') {
      opts.logger.info({ file: this.file, entries: this.fileEntries.length }, 'read allowlist file loaded');
    }
  }

  /** The combined list now in force. */
  current(): Allowlist {
    return this.list;
  }

  /** True when the last look found a well-formed file. */
  get valid(): boolean {
    return this.state === 'ok';
  }

  start(): void {
    if (this.closed || this.timer) return;
    this.timer = setInterval(() => this.poll(), this.opts.pollMs ?? DEFAULT_POLL_MS);
    this.timer.unref();
    this.ensureWatch();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.timer = this.debounce = null;
    this.watcher?.close();
    this.watcher = null;
  }

  /** Stat, and re-read when what the path points at changed. */
  poll(): void {
    if (this.closed) return;
    this.ensureWatch();
    const sig = statSignature(this.file);
    if (sig !== null && sig === this.lastSignature) return;
    if (sig === null && this.state === 'missing') return;
    this.reload();
  }

  private ensureWatch(): void {
    if (this.watcher || this.closed || this.opts.watch === false) return;
    try {
      // The folder, not the file: a symlink swap or a rename replaces the file the watch would be bound to.
      this.watcher = fs.watch(path.dirname(this.file), { persistent: false }, () => this.schedule());
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null; // the poll keeps going and tries again
      });
    } catch {
      this.watcher = null;
    }
  }

  /** Several events come with one update (the kubelet writes, links and renames): look once, shortly after. */
  private schedule(): void {
    if (this.debounce || this.closed) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.poll();
    }, 25);
    this.debounce.unref();
  }

  private reload(): void {
    const r = readAllowlistFile(this.file);
    this.lastSignature = r.signature;
    if (r.kind !== 'unreadable' && r.kind !== 'missing' && r.hash === this.lastHash && this.state === r.kind) return; // same bytes
    this.lastHash = r.hash;
    this.state = r.kind;
    const log = this.opts.logger;
    switch (r.kind) {
      case 'ok': {
        const before = new Set(this.fileEntries.map((c) => c.text));
        const after = new Set(r.entries.map((c) => c.text));
        this.fileEntries = r.entries;
        this.list = combine(this.opts.base, r.entries);
        this.opts.onChange(this.list);
        log.info(
          { file: this.file, entries: after.size, added: [...after].filter((e) => !before.has(e)).length, removed: [...before].filter((e) => !after.has(e)).length },
          'read allowlist file reloaded',
        );
        break;
      }
      case 'invalid':
        log.warn({ file: this.file, line: r.error.line, problem: r.error.problem }, 'read allowlist file is malformed: keeping the last good list');
        break;
      case 'missing':
        log.warn({ file: this.file }, 'read allowlist file is gone: keeping the last good list');
        break;
      case 'unreadable':
        log.warn({ file: this.file, problem: r.problem }, 'read allowlist file cannot be read: keeping the last good list');
        break;
    }
    this.opts.onReload?.(r.kind);
  }
}

function combine(base: Allowlist, fileEntries: readonly Cidr[]): Allowlist {
  return new Allowlist([...base.entries, ...fileEntries]);
}
