// A configuration file that is re-read when it changes (VAULT_READ_ALLOWLIST_FILE,
// VAULT_MEMBERS_FILE). Each user gives a parser; this file owns the watching.
//
// Kubernetes mounts a ConfigMap key as `file -> ..data/file`, `..data` being a
// symlink the kubelet swaps atomically to a new timestamped folder. The
// folder is watched (fs.watch) and, because fs.watch misses symlink swaps on
// some filesystems, the followed path is also stat'ed on one timer per file.
// A changed stat (inode, size, mtime, ctime) leads to a read; a changed
// content hash to a parse. A malformed, unreadable or missing file keeps the
// last good value: it is most often a write in progress or a bad edit.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** A ConfigMap holds at most 1 MiB; a bigger file is not configuration. */
export const MAX_WATCHED_FILE_BYTES = 1024 * 1024;
export const DEFAULT_POLL_MS = 2_000;

/** Why a file's text is malformed, naming the first bad line (0: the file as a whole). */
export class FileLineError extends Error {
  override name = 'FileLineError';
  constructor(readonly line: number, readonly problem: string) {
    super(line > 0 ? `line ${line}: ${problem}` : problem);
  }
}

/** Short, quoted view of a bad entry for logs (never the whole file). */
export function quoteEntry(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

/** The file's lines with comments (`#` to the end of the line), surrounding whitespace and blank lines removed. */
export function meaningfulLines(text: string): Array<{ line: number; entry: string }> {
  const out: Array<{ line: number; entry: string }> = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i]!.indexOf('#');
    const entry = (hash >= 0 ? lines[i]!.slice(0, hash) : lines[i]!).trim();
    if (entry !== '') out.push({ line: i + 1, entry });
  }
  return out;
}

/** One look at the file: what it holds, or why it could not be used. */
export type WatchedFileRead<T> =
  | { kind: 'ok'; signature: string; hash: string; value: T }
  | { kind: 'invalid'; signature: string; hash: string; error: FileLineError }
  | { kind: 'missing'; signature: null; hash: null }
  | { kind: 'unreadable'; signature: string | null; hash: null; problem: string };

export type ReloadOutcome = 'ok' | 'invalid' | 'missing' | 'unreadable';
export const RELOAD_OUTCOMES: readonly ReloadOutcome[] = ['ok', 'invalid', 'missing', 'unreadable'];

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
export function readWatchedFile<T>(file: string, parse: (text: string) => T): WatchedFileRead<T> {
  const signature = statSignature(file);
  let bytes: Buffer;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_WATCHED_FILE_BYTES) {
      return { kind: 'unreadable', signature, hash: null, problem: `larger than ${MAX_WATCHED_FILE_BYTES} bytes (${size})` };
    }
    bytes = fs.readFileSync(file);
  } catch (err) {
    if (isMissing(err)) return { kind: 'missing', signature: null, hash: null };
    return { kind: 'unreadable', signature, hash: null, problem: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
  const sig = signature ?? 'unknown';
  const hash = createHash('sha256').update(bytes).digest('hex');
  try {
    return { kind: 'ok', signature: sig, hash, value: parse(bytes.toString('utf8')) };
  } catch (err) {
    if (err instanceof FileLineError) return { kind: 'invalid', signature: sig, hash, error: err };
    throw err;
  }
}

/** What the watcher logs through (a pino logger fits). */
export interface WatchedFileLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface WatchedFileOptions<T> {
  file: string;
  /** What the file is, in log lines: e.g. 'read allowlist file'. */
  label: string;
  parse: (text: string) => T;
  /** The read loadConfig made at start. */
  initial: WatchedFileRead<T>;
  logger: WatchedFileLogger;
  /** Called with the new value each time a good file with new content is read. */
  onChange: (value: T, before: T | null) => void;
  /** Called once per re-read that found new content or a new state (not at start). */
  onReload?: (outcome: ReloadOutcome) => void;
  /** Extra fields for the 'reloaded' log line (counts, never contents that could be sensitive). */
  describe?: (value: T, before: T | null) => object;
  pollMs?: number;
  /** fs.watch on the folder (default on); the poll runs either way. */
  watch?: boolean;
}

/** Keeps a parsed value in step with a file; `valid` is false until a good file is read. */
export class WatchedFile<T> {
  private value: T | null;
  private lastSignature: string | null;
  private lastHash: string | null;
  private state: ReloadOutcome;
  private timer: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private watcher: fs.FSWatcher | null = null;
  private closed = false;
  readonly file: string;

  constructor(private readonly opts: WatchedFileOptions<T>) {
    this.file = path.resolve(opts.file);
    const init = opts.initial;
    this.value = init.kind === 'ok' ? init.value : null;
    this.lastSignature = init.signature;
    this.lastHash = init.hash;
    this.state = init.kind;
  }

  /** The last good value, or null when no good file was read yet. */
  current(): T | null {
    return this.value;
  }

  /** True when the last look found a well-formed file. */
  get valid(): boolean {
    return this.state === 'ok';
  }

  get outcome(): ReloadOutcome {
    return this.state;
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
    const r = readWatchedFile(this.file, this.opts.parse);
    this.lastSignature = r.signature;
    if (r.kind !== 'unreadable' && r.kind !== 'missing' && r.hash === this.lastHash && this.state === r.kind) return; // same bytes
    this.lastHash = r.hash;
    this.state = r.kind;
    const { logger: log, label } = this.opts;
    switch (r.kind) {
      case 'ok': {
        const before = this.value;
        this.value = r.value;
        this.opts.onChange(r.value, before);
        log.info({ file: this.file, ...this.opts.describe?.(r.value, before) }, `${label} reloaded`);
        break;
      }
      case 'invalid':
        log.warn({ file: this.file, line: r.error.line, problem: r.error.problem }, `${label} is malformed: keeping the last good list`);
        break;
      case 'missing':
        log.warn({ file: this.file }, `${label} is gone: keeping the last good list`);
        break;
      case 'unreadable':
        log.warn({ file: this.file, problem: r.problem }, `${label} cannot be read: keeping the last good list`);
        break;
    }
    this.opts.onReload?.(r.kind);
  }
}
