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
// Watching (the kubelet's `..data` swap included) is watched-file.ts's job.
import { Allowlist, parseCidr, type Cidr } from '../../common/ipv4.js';
import {
  FileLineError,
  meaningfulLines,
  quoteEntry,
  readWatchedFile,
  WatchedFile,
  type ReloadOutcome,
  type WatchedFileLogger,
  type WatchedFileRead,
} from './watched-file.js';

export { MAX_WATCHED_FILE_BYTES as MAX_ALLOWLIST_FILE_BYTES, DEFAULT_POLL_MS, RELOAD_OUTCOMES, statSignature, type ReloadOutcome } from './watched-file.js';

export class AllowlistFileError extends FileLineError {
  override name = 'AllowlistFileError';
}

/** Parses the file's text; throws AllowlistFileError naming the first bad line. */
export function parseAllowlistFile(text: string): Cidr[] {
  const entries: Cidr[] = [];
  for (const { line, entry } of meaningfulLines(text)) {
    if (/[\s,]/.test(entry)) throw new AllowlistFileError(line, `one address or CIDR per line, got ${quoteEntry(entry)}`);
    try {
      entries.push(parseCidr(entry));
    } catch {
      throw new AllowlistFileError(line, `not an IPv4 address or CIDR: ${quoteEntry(entry)}`);
    }
  }
  return entries;
}

/** One look at the file: what it holds, or why it could not be used. */
export type AllowlistFileRead = WatchedFileRead<Cidr[]>;

/** Reads and parses the file. */
export function readAllowlistFile(file: string): AllowlistFileRead {
  return readWatchedFile(file, parseAllowlistFile);
}

export type AllowlistLogger = WatchedFileLogger;

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
 * unreadable or missing file keeps the last good list (dropping to the env
 * list would cut off every reader at once). An empty file is a good file
 * with no entries.
 */
export class ReadAllowlistFile {
  private list: Allowlist;
  private readonly watched: WatchedFile<Cidr[]>;
  readonly file: string;

  constructor(opts: ReadAllowlistFileOptions) {
    const init = opts.initial;
    this.list = combine(opts.base, init.kind === 'ok' ? init.value : []);
    this.watched = new WatchedFile({
      ...opts,
      label: 'read allowlist file',
      parse: parseAllowlistFile,
      onChange: (entries) => {
        this.list = combine(opts.base, entries);
        opts.onChange(this.list);
      },
      describe: (after, before) => {
        const was = new Set((before ?? []).map((c) => c.text));
        const now = new Set(after.map((c) => c.text));
        return { entries: now.size, added: [...now].filter((e) => !was.has(e)).length, removed: [...was].filter((e) => !now.has(e)).length };
      },
    });
    this.file = this.watched.file;
    if (init.kind === 'missing') {
      // The kubelet may mount or fill the ConfigMap after the container starts: serve the env list and pick the file up when it comes.
      opts.logger.warn({ file: this.file }, 'VAULT_READ_ALLOWLIST_FILE does not exist yet: only VAULT_READ_ALLOWLIST applies until it appears');
    } else if (init.kind === 'ok') {
      opts.logger.info({ file: this.file, entries: init.value.length }, 'read allowlist file loaded');
    }
  }

  /** The combined list now in force. */
  current(): Allowlist {
    return this.list;
  }

  /** True when the last look found a well-formed file. */
  get valid(): boolean {
    return this.watched.valid;
  }

  start(): void {
    this.watched.start();
  }

  close(): void {
    this.watched.close();
  }

  poll(): void {
    this.watched.poll();
  }
}

function combine(base: Allowlist, fileEntries: readonly Cidr[]): Allowlist {
  return new Allowlist([...base.entries, ...fileEntries]);
}
